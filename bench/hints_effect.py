"""Proof that direction hints move the end model the way they say, against the data.

    python bench/hints_effect.py [--seeds 3] [--rows 1000]

Synthetic reviews where the rows teach the OPPOSITE of every hint:
- token:   "refund" occurs in 80% of NEG rows and 5% of POS rows;   hint more "refund" => POS
- measure: more "!" in NEG rows;                                    hint more excl(text) => POS
- pair:    "great item" -> "great item refund";                     hint pair => POS

For each hint, three end models with the same seed and settings: with the hint,
without it, and with a random-direction control of the same kind, norm and
support. Reported on held-out rows: satisfaction share (rows whose P(POS) rises
when moving along d: the token appended / the measure nudged up one standard
deviation / the row moved by features(B) - features(A)), mean change of P(POS),
held-out accuracy, and for pairs P(POS | B) - P(POS | A).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mteach.engine.end_model import EndModel  # noqa: E402
from mteach.engine.features import Featurizer  # noqa: E402
from mteach.engine.hints import compile_hints, hint_effect, random_control  # noqa: E402
from mteach.grammar.ast import Hint, Measure, Ref  # noqa: E402
from mteach.settings import Settings  # noqa: E402

POS = ["great", "love", "thanks", "perfect", "happy", "works", "fast", "nice", "recommend", "solid"]
NEG = ["broken", "late", "angry", "awful", "slow", "bad", "never", "worst", "cracked", "missing"]
FILL = ["the", "item", "order", "it", "was", "my", "we", "this", "and", "so", "box", "seller"]
LABELS = ["NEG", "POS"]


def make(n: int, seed: int, noise: float = 0.1):
    r = np.random.default_rng(seed)
    texts, y = [], r.integers(0, 2, n)
    for c in y:
        words = list(r.choice(FILL, 5)) + list(r.choice(POS if c else NEG, 2))
        words += list(r.choice(NEG if c else POS, 1)) if r.random() < 0.3 else []
        if r.random() < (0.8 if c == 0 else 0.05):
            words.append("refund")
        words += ["!"] * int(r.integers(1, 4) if c == 0 else r.integers(0, 2))
        r.shuffle(words)
        texts.append(" ".join(words))
    # soft labels as a label model would give them: right but noisy
    conf = np.clip(r.normal(0.8, 0.1, n), 0.55, 0.99)
    flip = r.random(n) < noise
    p1 = np.where(y == 1, conf, 1 - conf)
    p1 = np.where(flip, 1 - p1, p1)
    return pa.table({"text": texts}), y, np.stack([1 - p1, p1], axis=1)


def excl(t: pa.Table) -> np.ndarray:
    return np.array([s.count("!") for s in t.column("text").to_pylist()], dtype=float)


HINTS = [
    Hint(kind="token", label="POS", token="refund", text='hint more "refund" => POS'),
    Hint(kind="measure", label="POS", measure=Measure("excl", Ref("text")), text="hint more excl(text) => POS"),
    Hint(kind="pair", label="POS", text_a="great item", text_b="great item refund",
         text='hint "great item" -> "great item refund" => POS'),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--rows", type=int, default=1000)
    a = ap.parse_args()
    s = Settings()
    train, _, soft = make(a.rows, 0)
    test, y_test, _ = make(a.rows // 2, 1)
    f = Featurizer(["text"], numeric={"excl(text)": excl}, **s.featurizer_params()).fit(train)
    X, X_test = f.transform(train), f.transform(test)
    compiled = compile_hints(HINTS, f, LABELS, lambda m: f"{m.func}({m.source.name})", margin=s.hints.margin)
    params = s.end_model_params()
    print(f"{a.rows} train rows / {a.rows // 2} held-out rows, {X.shape[1]} features; "
          f"end model {params}; seeds 0..{a.seeds - 1} (mean over seeds)\n")
    header = f"{'hint':44} {'run':8} {'satisfied':>9} {'mean dP':>8} {'accuracy':>8} {'pair gap':>8} {'fit s':>6}"
    print(header)
    print("-" * len(header))
    for h in compiled:
        for run in ("with", "without", "random"):
            rows = []
            for seed in range(a.seeds):
                hs = {"with": [h], "without": [], "random": [random_control(h, seed=seed)]}[run]
                t0 = time.perf_counter()
                m = EndModel(**{**params, "seed": seed}).fit(X, soft, hints=hs)
                dt = time.perf_counter() - t0
                e = hint_effect(m, f, test, h)
                acc = float((m.predict(X_test) == y_test).mean())
                rows.append((e.share, e.mean_delta, acc, e.pair_gap if e.pair_gap is not None else np.nan, dt))
            arr = np.array(rows, dtype=float)
            r = arr.mean(axis=0)
            gap = "" if h.kind != "pair" else f"{r[3]:+.3f}"
            name = h.name if len(h.name) <= 44 else h.name[:41] + "..."
            print(f"{name:44} {run:8} {r[0]:9.1%} {r[1]:+8.3f} {r[2]:8.1%} {gap:>8} {r[4]:6.2f}")
        print()


if __name__ == "__main__":
    main()
