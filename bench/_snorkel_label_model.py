"""Run Snorkel 0.10's LabelModel on .npy vote matrices (helper for the label-model benches).

Runs inside bench/.venv-snorkel (see bench/setup_snorkel_env.sh), never imports mteach.

    python bench/_snorkel_label_model.py --train L_train.npy --k K [--test L_test.npy ...]
        --out-dir DIR [--epochs 500] [--seed 123]

Writes DIR/fit_seconds.txt (wall time of LabelModel.fit) and, for each --test file
NAME.npy, DIR/NAME.pred.npy (predict with tie_break_policy="random") and
DIR/NAME.proba.npy.
"""
import argparse
import os
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", required=True)
    ap.add_argument("--k", type=int, required=True)
    ap.add_argument("--test", nargs="*", default=[])
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--epochs", type=int, default=500)
    ap.add_argument("--seed", type=int, default=123)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    from snorkel.labeling.model import LabelModel

    L = np.load(args.train)
    lm = LabelModel(cardinality=args.k, verbose=False)
    t0 = time.perf_counter()
    lm.fit(L_train=L, n_epochs=args.epochs, seed=args.seed, log_freq=10**9, progress_bar=False)
    dt = time.perf_counter() - t0
    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, "fit_seconds.txt"), "w") as f:
        f.write(f"{dt:.6f}\n")
    for path in args.test:
        Lt = np.load(path)
        name = os.path.splitext(os.path.basename(path))[0]
        proba = lm.predict_proba(Lt)
        pred = lm.predict(Lt, tie_break_policy="random")
        np.save(os.path.join(args.out_dir, f"{name}.proba.npy"), proba)
        np.save(os.path.join(args.out_dir, f"{name}.pred.npy"), pred)


if __name__ == "__main__":
    main()
