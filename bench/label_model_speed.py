"""Label-model fit speed, memory and synthetic recovery.

    python bench/label_model_speed.py [--rows 1000000] [--skip-snorkel] [--skip-big]

Prints:
  1. fit time on N rows x 50 rules (synthetic, known accuracies 0.55-0.95, coverage 20-50%),
     recovered vs true rule accuracies, and test accuracy vs majority vote;
  2. fit time on the WRENCH semeval train matrix (164 rules x 9 classes), next to Snorkel 0.10's
     LabelModel.fit (default 100 epochs, run in bench/.venv-snorkel; skipped if absent) and the ratio;
  3. 1,000 rules x 50 classes (20,000 rows): fit time and peak RSS of this process.
"""
import argparse
import os
import resource
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))
from label_model_wrench import load, run_snorkel, snorkel_available  # noqa: E402
from mteach.engine.label_model import LabelModel, MajorityVote  # noqa: E402


def synth(n, m, k, seed=0):
    rng = np.random.default_rng(seed)
    acc = rng.uniform(0.55, 0.95, size=m)
    cov = rng.uniform(0.2, 0.5, size=m)
    y = rng.integers(0, k, size=n)
    L = np.empty((n, m), dtype=np.int8 if k < 127 else np.int16)
    for j in range(m):  # column-wise to keep temporaries small
        right = rng.random(n) < acc[j]
        wrong = (y + rng.integers(1, k, size=n)) % k
        col = np.where(right, y, wrong)
        col[rng.random(n) >= cov[j]] = -1
        L[:, j] = col
    return L, y, acc


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--data", default=os.environ.get("MTEACH_DATA", "/work/shared/data"))
    ap.add_argument("--skip-snorkel", action="store_true")
    ap.add_argument("--skip-big", action="store_true")
    args = ap.parse_args()

    # 1. synthetic rows x 50 rules
    n, m = args.rows, 50
    L, y, acc = synth(n, m, 2)  # int8, as mteach's vote_matrix produces
    LabelModel().fit(L[:2000])  # warm-up (imports, allocator)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        lm = LabelModel().fit(L)
        times.append(time.perf_counter() - t0)
    dt = float(np.median(times))
    print(f"[synthetic] {n:,} rows x {m} rules, binary, int8 votes: fit median {dt:.3f} s of 5 "
          f"(min {min(times):.3f}, max {max(times):.3f}; {lm.n_patterns_:,} distinct patterns, "
          f"{lm.n_iter_} EM iterations)  target < 1 s")
    L64 = L.astype(np.int64)
    t0 = time.perf_counter()
    LabelModel().fit(L64)
    print(f"[synthetic] same votes as int64 (validation + conversion included): fit {time.perf_counter() - t0:.3f} s")
    del L64
    vote = L >= 0
    emp = np.array([(L[vote[:, j], j] == y[vote[:, j]]).mean() for j in range(m)])
    err = np.abs(lm.accuracy_ - emp)
    print(f"[synthetic] rule accuracy recovery: mean |err| {err.mean():.4f}, max |err| {err.max():.4f}")
    for j in range(0, m, 10):
        print(f"    rule {j:>2}: true {emp[j]:.3f}  recovered {lm.accuracy_[j]:.3f}")
    acc_lm = (lm.predict(L) == y).mean()
    acc_mv = (MajorityVote(tie_break="random", seed=0).fit(L).predict(L) == y).mean()
    print(f"[synthetic] label accuracy: mteach {acc_lm:.4f}  majority vote {acc_mv:.4f}")
    del L, y

    # 2. semeval vs Snorkel
    Ltr, Lte, yte, k, _ = load(args.data, "semeval")
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        LabelModel(n_classes=k).fit(Ltr)
        times.append(time.perf_counter() - t0)
    t_lm = min(times)
    print(f"[semeval] {Ltr.shape[0]} rows x {Ltr.shape[1]} rules x {k} classes: mteach fit {t_lm:.4f} s (best of 5)")
    if args.skip_snorkel or not snorkel_available():
        print("[semeval] snorkel skipped (bench/.venv-snorkel absent or --skip-snorkel)")
    else:
        r = run_snorkel(Ltr, Lte, k, epochs=100)
        if r is not None:
            print(f"[semeval] snorkel LabelModel.fit {r[1]:.2f} s -> mteach is {r[1] / t_lm:,.0f}x faster  target >= 50x")

    # 3. 1,000 rules x 50 classes
    if not args.skip_big:
        L, y, _ = synth(20_000, 1000, 50, seed=1)
        L = L.astype(np.int64)
        t0 = time.perf_counter()
        lm = LabelModel(n_classes=50).fit(L)
        dt = time.perf_counter() - t0
        acc_lm = (lm.predict(L) == y).mean()
        print(f"[big] 20,000 rows x 1,000 rules x 50 classes: fit {dt:.2f} s, accuracy {acc_lm:.4f}, "
              f"peak RSS {peak_rss_mb():,.0f} MiB (whole process)")


if __name__ == "__main__":
    main()
