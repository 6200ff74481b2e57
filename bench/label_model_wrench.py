"""Label-model accuracy on WRENCH vote matrices: mteach LabelModel vs majority vote vs Snorkel 0.10.

    python bench/label_model_wrench.py [--data /work/shared/data] [--snorkel-epochs 100] [--abstain-shrinkage 0.5]

Fits on train (trec: ids < 4965, WRENCH's split; chemprot has no train split here: fits
on valid) and prints test accuracy per dataset.  Majority vote breaks ties (and rows where
every rule abstained) uniformly at random with a fixed seed, as WRENCH and Snorkel do.
Snorkel runs in bench/.venv-snorkel through bench/_snorkel_label_model.py (default
LabelModel.fit settings, 100 epochs, seed 123, predict tie_break_policy="random"); it is
skipped with a message when that venv is absent (create it with bench/setup_snorkel_env.sh).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from mteach.engine.label_model import LabelModel, MajorityVote  # noqa: E402

SNORKEL_PY = os.path.join(ROOT, "bench", ".venv-snorkel", "bin", "python")
SNORKEL_HELPER = os.path.join(ROOT, "bench", "_snorkel_label_model.py")
DATASETS = ["youtube", "sms", "trec", "semeval", "chemprot"]


def load_split(data_dir, name, split):
    with open(os.path.join(data_dir, f"wrench_{name}", f"{split}.json")) as f:
        d = json.load(f)
    ids = sorted(d, key=int)
    if name == "trec" and split == "train":
        ids = [i for i in ids if int(i) < 4965]  # ids >= 4965 are DyGen's duplicated additions
    L = np.array([d[i]["weak_labels"] for i in ids], dtype=np.int64)
    y = np.array([d[i]["label"] for i in ids], dtype=np.int64)
    return L, y


def load(data_dir, name):
    train = "valid" if name == "chemprot" else "train"
    Ltr, _ = load_split(data_dir, name, train)
    Lte, yte = load_split(data_dir, name, "test")
    with open(os.path.join(data_dir, f"wrench_{name}", "label.json")) as f:
        k = len(json.load(f))
    return Ltr, Lte, yte, k, train


def snorkel_available():
    return os.path.exists(SNORKEL_PY)


def run_snorkel(Ltr, Lte, k, epochs, seed=123):
    """Returns (test predictions, fit seconds) or None on failure."""
    with tempfile.TemporaryDirectory() as tmp:
        tr, te = os.path.join(tmp, "train.npy"), os.path.join(tmp, "test.npy")
        np.save(tr, Ltr)
        np.save(te, Lte)
        out = os.path.join(tmp, "out")
        cmd = [SNORKEL_PY, SNORKEL_HELPER, "--train", tr, "--k", str(k), "--test", te,
               "--out-dir", out, "--epochs", str(epochs), "--seed", str(seed)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            print(f"  snorkel failed: {res.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            return None
        with open(os.path.join(out, "fit_seconds.txt")) as f:
            secs = float(f.read())
        return np.load(os.path.join(out, "test.pred.npy")), secs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("MTEACH_DATA", "/work/shared/data"))
    ap.add_argument("--snorkel-epochs", type=int, default=100)
    ap.add_argument("--datasets", nargs="*", default=DATASETS)
    ap.add_argument("--abstain-shrinkage", type=float, default=None,
                    help="LabelModel(abstain_shrinkage=...); default: the model's default (1 = abstentions carry no evidence)")
    args = ap.parse_args()

    use_snorkel = snorkel_available()
    if not use_snorkel:
        print(f"[snorkel skipped: {SNORKEL_PY} not found; run bench/setup_snorkel_env.sh]")
    print("test accuracy (fit on train; chemprot: fit on valid)")
    print(f"{'dataset':<10}{'rows':>7}{'rules':>6}{'k':>4}   {'MV':>7}{'Snorkel':>9}{'mteach':>8}"
          f"   {'mteach fit s':>12}{'snorkel fit s':>14}")
    for name in args.datasets:
        Ltr, Lte, yte, k, _ = load(args.data, name)
        mv = MajorityVote(n_classes=k, tie_break="random", seed=0).fit(Ltr)
        acc_mv = float((mv.predict(Lte) == yte).mean())
        t0 = time.perf_counter()
        extra = {} if args.abstain_shrinkage is None else {"abstain_shrinkage": args.abstain_shrinkage}
        lm = LabelModel(n_classes=k, **extra).fit(Ltr)
        t_lm = time.perf_counter() - t0
        acc_lm = float((lm.predict(Lte) == yte).mean())
        acc_sn, t_sn = float("nan"), float("nan")
        if use_snorkel:
            r = run_snorkel(Ltr, Lte, k, args.snorkel_epochs)
            if r is not None:
                acc_sn, t_sn = float((r[0] == yte).mean()), r[1]
        best = max(acc_mv, acc_sn if acc_sn == acc_sn else 0.0)
        flag = "" if acc_lm >= best else "  <- below best baseline"
        print(f"{name:<10}{Ltr.shape[0]:>7}{Ltr.shape[1]:>6}{k:>4}   {acc_mv:>7.4f}{acc_sn:>9.4f}{acc_lm:>8.4f}"
              f"   {t_lm:>12.3f}{t_sn:>14.2f}{flag}", flush=True)


if __name__ == "__main__":
    main()
