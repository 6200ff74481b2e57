"""Choosing the featurizer's defaults: hashed vs vocabulary n-grams, hash width, n-gram ranges.

    python bench/features_choice.py            # valid split only: the choice
    python bench/features_choice.py --test     # then the test split, once, for the chosen and the old default

On the WRENCH YouTube and SMS splits: the end model (default settings, fast path) trained on the
majority vote of the weak labels (one-hot; ties and uncovered rows dropped) of the train rows,
scored on the valid split's gold labels (accuracy and F1 of class 1) for each featurizer setting,
with the CPU seconds of fit + transform over train and valid. ``--test`` scores the chosen
default (``Settings()``: hashed, 2^20 buckets, char 2-4) and the vocabulary featurizer with
char 2-5 n-grams (the default before hashing) on the test split.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import pyarrow as pa

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))
from label_model_wrench import load  # noqa: E402

from mteach.engine.calibration import f1_score  # noqa: E402
from mteach.engine.end_model import EndModel  # noqa: E402
from mteach.engine.features import Featurizer  # noqa: E402
from mteach.settings import Settings  # noqa: E402

BEFORE = {"hashed": False, "char_ngram_range": (2, 5)}  # the default before hashing
CANDIDATES = {
    "vocabulary, char 2-5 (before)": BEFORE,
    "vocabulary, char 2-4": {"hashed": False, "char_ngram_range": (2, 4)},
    "hashed 2^18, char 2-5": {"hash_bits": 18, "char_ngram_range": (2, 5)},
    "hashed 2^20, char 2-5": {"hash_bits": 20, "char_ngram_range": (2, 5)},
    "hashed 2^22, char 2-5": {"hash_bits": 22, "char_ngram_range": (2, 5)},
    "hashed 2^20, char 3-5": {"hash_bits": 20, "char_ngram_range": (3, 5)},
    "hashed 2^20, char 2-4": {"hash_bits": 20, "char_ngram_range": (2, 4)},
    "hashed 2^18, char 2-4": {"hash_bits": 18, "char_ngram_range": (2, 4)},
    "hashed 2^20, words 1-3": {"hash_bits": 20, "ngram_range": (1, 3), "char_ngram_range": (2, 4)},
}


def majority(L: np.ndarray, k: int) -> np.ndarray:
    counts = np.stack([(L == c).sum(axis=1) for c in range(k)], axis=1)
    top = counts.max(axis=1)
    unique_top = (counts == top[:, None]).sum(axis=1) == 1
    return np.where((top > 0) & unique_top, counts.argmax(axis=1), -1)


def score(kw: dict, train: pa.Table, labels: np.ndarray, evaluate: pa.Table, gold: np.ndarray, k: int) -> tuple:
    settings = Settings()
    t = time.process_time()
    feat = Featurizer(["text"], **{**settings.featurizer_params(), **kw}).fit(train)
    X, Xe = feat.transform(train), feat.transform(evaluate)
    secs = time.process_time() - t
    rows = labels >= 0
    pred = EndModel(**settings.end_model_params()).fit(X[rows], labels[rows]).predict(Xe)
    f1 = f1_score(pred, gold, k, positive=1)
    return float((pred == gold).mean()), f1, X.shape[1], secs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("MTEACH_DATA", "/work/shared/data"))
    ap.add_argument("--test", action="store_true", help="also score the chosen default on the test split")
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} at start")
    for name in ("youtube", "sms"):
        splits, k = load(args.data, name)
        (Ltr, _, ttr), (_, yva, tva), (_, yte, tte) = splits["train"], splits["valid"], splits["test"]
        train, labels = pa.table({"text": ttr}), majority(Ltr, k)
        print(f"\n{name}: {len(ttr)} train rows ({int((labels >= 0).sum())} with a majority), "
              f"valid {len(tva)}, test {len(tte)}")
        print(f"  {'featurizer':<30} {'split':<6} {'accuracy':>8} {'F1':>7} {'features':>9} {'CPU-s':>6}")
        for label, kw in CANDIDATES.items():
            acc, f1, dim, secs = score(kw, train, labels, pa.table({"text": tva}), yva, k)
            print(f"  {label:<30} {'valid':<6} {acc:8.4f} {f1:7.4f} {dim:9,} {secs:6.1f}", flush=True)
        if args.test:
            for label, kw in (("vocabulary, char 2-5 (before)", BEFORE), ("default", {})):
                acc, f1, dim, secs = score(kw, train, labels, pa.table({"text": tte}), yte, k)
                print(f"  {label:<30} {'test':<6} {acc:8.4f} {f1:7.4f} {dim:9,} {secs:6.1f}", flush=True)
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
