"""The whole road on the bundled YouTube split: train on files 01-04, evaluate on file 05.

Prints, per seed, majority vote, label model, end model and combined accuracy on the
held-out file, and checks the product bars: label model >= majority vote and >= 86.0%
(Snorkel's LabelModel on its tutorial's ten rules), end model >= 94.4% (the tutorial's
logistic regression on its rules' labels).

    python bench/youtube_road.py [--seeds 3]
"""
import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

from mteach.cli.learn import evaluate
from mteach.compiler.checker import load_spec
from mteach.engine.gold import gold_from_column
from mteach.engine.io import open_data
from mteach.engine.train import train
from mteach.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    train_table = open_data(ROOT / "data/youtube/train.csv").read_all()
    test_table = open_data(ROOT / "data/youtube/test.csv").read_all()
    spec = load_spec(ROOT / "specs/youtube_spam.mt", train_table.schema)
    gold = gold_from_column(test_table, "CLASS", {"1": "SPAM", "0": "HAM"}, list(spec.labels), "test.csv")
    table_rows = {}
    for seed in range(args.seeds):
        base = Settings()
        settings = dataclasses.replace(base, end_model=dataclasses.replace(base.end_model, seed=seed),
                                       label_model=dataclasses.replace(base.label_model, seed=seed))
        t0 = time.perf_counter()
        model, _ = train(spec, train_table, settings)
        fit_s = time.perf_counter() - t0
        votes = model.votes(test_table)
        for row in evaluate(model.predict(test_table, votes), votes, gold, list(spec.labels)):
            table_rows.setdefault(row["method"], []).append(row["accuracy"])
        table_rows.setdefault("train seconds", []).append(fit_s)
    width = max(map(len, table_rows))
    print(f"{'':{width}}  " + "  ".join(f"seed {s}" for s in range(args.seeds)) + "    mean")
    for name, values in table_rows.items():
        print(f"{name:{width}}  " + "  ".join(f"{v:6.3f}" for v in values) + f"  {np.mean(values):6.3f}")
    mv = np.mean(table_rows["majority vote (all rows, random for ties and uncovered)"])
    lm = np.mean(table_rows["label model (all rows)"])
    em = min(table_rows["end model alone (all rows)"])
    print(f"\nlabel model {lm:.3f} vs majority vote {mv:.3f} and 0.860: {'PASS' if lm >= max(mv, 0.86) else 'BELOW'}")
    print(f"end model alone, worst seed {em:.3f} vs 0.944: {'PASS' if em >= 0.944 else 'BELOW'}")


if __name__ == "__main__":
    main()
