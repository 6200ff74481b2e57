"""Label models on the WRENCH vote matrices, under the protocol of docs/evaluation.md.

    python bench/label_model_wrench.py [--data /work/shared/data] [--datasets sms trec ...]
        [--mv-seeds 10] [--snorkel-epochs 100] [--skip-snorkel] [--end-models]

Per dataset, fit on train (trec: ids < 4965; chemprot has no train split here: fit on valid,
whose votes the label model sees without labels), choose settings on valid gold, score test
once.  Methods:

* ``MV``        majority vote, ties (and rows with no votes) broken at random; figures are the
                mean over ``--mv-seeds`` seeds.
* ``Snorkel``   Snorkel 0.10 ``LabelModel`` (100 epochs, seed 123, random tie-break), through
                bench/.venv-snorkel; skipped with a message when that venv is absent.
* ``DS-abst``   Dawid--Skene with "abstain" as one more vote value (WRENCH's variant), numpy EM
                started from majority vote.
* ``mteach``    ``LabelModel()`` at its defaults.
* ``mteach-v``  ``LabelModel`` with the grid setting of best valid metric (ties: best valid
                accuracy, then the setting nearest the defaults), temperature fitted on valid gold.

Columns: accuracy and the WRENCH metric on all test rows (binary: F1 of class 1; else
macro-F1), coverage, accuracy on covered test rows (at least one vote: the rows the label
model learns from; the rest is tie-breaking or the class prior), the metric on covered test
rows, and ECE (10 bins).
With ``--end-models``: also the baseline of docs/evaluation.md (CountVectorizer 1-2-grams,
min_df 2 + LogisticRegression) trained on mteach-v's labels of the covered train rows
(``LR(mteach-v)``), and ``mteach-v+LR``: mteach-v on covered rows, that end model on the rows
no rule covers (where a label model can only say its class prior).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import scipy.sparse as sp
from sklearn.metrics import f1_score

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from mteach.engine.calibration import ece  # noqa: E402
from mteach.engine.label_model import LabelModel, MajorityVote  # noqa: E402

SNORKEL_PY = os.path.join(ROOT, "bench", ".venv-snorkel", "bin", "python")
SNORKEL_HELPER = os.path.join(ROOT, "bench", "_snorkel_label_model.py")
DATASETS = ["youtube", "sms", "trec", "semeval", "chemprot"]
DEFAULTS = {"abstain_shrinkage": 0.5, "class_balance_shrinkage": 0.5}
GRID = [{"abstain_shrinkage": a, "class_balance_shrinkage": b}
        for a in (0.25, 0.5, 0.75, 1.0) for b in (0.0, 0.25, 0.5, 0.75, 1.0)]


# -- data -------------------------------------------------------------------------------------
def load_split(data_dir, name, split):
    with open(os.path.join(data_dir, f"wrench_{name}", f"{split}.json")) as f:
        d = json.load(f)
    ids = sorted(d, key=int)
    if name == "trec" and split == "train":
        ids = [i for i in ids if int(i) < 4965]  # ids >= 4965 are DyGen's duplicated additions
    L = np.array([d[i]["weak_labels"] for i in ids], dtype=np.int64)
    y = np.array([d[i]["label"] for i in ids], dtype=np.int64)
    text = [d[i]["data"]["text"] for i in ids]
    return L, y, text


def load(data_dir, name):
    """{"train", "valid", "test"}: (L, y, text) each, and k. chemprot: train is valid."""
    splits = {s: load_split(data_dir, name, s) for s in ("valid", "test")}
    splits["train"] = splits["valid"] if name == "chemprot" else load_split(data_dir, name, "train")
    with open(os.path.join(data_dir, f"wrench_{name}", "label.json")) as f:
        k = len(json.load(f))
    return splits, k


# -- metrics ----------------------------------------------------------------------------------
def metric(pred, y, k):
    """WRENCH's metric: F1 of class 1 for two classes, macro-F1 otherwise."""
    if k == 2:
        return float(f1_score(y, pred, pos_label=1, average="binary", zero_division=0))
    return float(f1_score(y, pred, labels=np.arange(k), average="macro", zero_division=0))


def scores(pred, y, k, covered, proba=None):
    return {"acc": float((pred == y).mean()), "metric": metric(pred, y, k),
            "cov": float(covered.mean()),
            "acc_cov": float((pred[covered] == y[covered]).mean()) if covered.any() else float("nan"),
            "metric_cov": metric(pred[covered], y[covered], k) if covered.any() else float("nan"),
            "ece": float("nan") if proba is None else ece(proba, y)}


def mean_scores(runs):
    return {key: float(np.mean([r[key] for r in runs])) for key in runs[0]}


# -- peers ------------------------------------------------------------------------------------
def dawid_skene_abstain(Ltr, Lte, k, max_iter=100, smoothing=0.01):
    """Dawid--Skene where abstaining is a vote value like any other (k + 1 per rule): EM from
    majority vote; returns (test predictions, test probabilities)."""
    def design(L):
        n, m = L.shape
        cols = (np.arange(m)[None, :] * (k + 1) + L + 1).ravel()
        return sp.csr_matrix((np.ones(n * m), cols, np.arange(0, n * m + 1, m)), shape=(n, m * (k + 1)))

    m = Ltr.shape[1]
    D, Dte = design(Ltr), design(Lte)
    counts = np.stack([(Ltr == c).sum(axis=1) for c in range(k)], axis=1).astype(float)
    Q = np.where(counts.sum(1, keepdims=True) > 0, counts + 1e-3, 1.0)
    Q /= Q.sum(axis=1, keepdims=True)
    log_theta = log_pi = None
    for _ in range(max_iter):
        pi = (Q.sum(axis=0) + smoothing) / (Q.shape[0] + k * smoothing)
        C = np.asarray(D.T @ Q).reshape(m, k + 1, k) + smoothing  # (rule, vote value, class)
        log_theta = np.log(C / C.sum(axis=1, keepdims=True)).reshape(m * (k + 1), k)
        log_pi = np.log(pi)
        S = D @ log_theta + log_pi
        Q_new = np.exp(S - S.max(axis=1, keepdims=True))
        Q_new /= Q_new.sum(axis=1, keepdims=True)
        done = np.abs(Q_new - Q).sum(axis=1).mean() < 1e-6
        Q = Q_new
        if done:
            break
    S = Dte @ log_theta + log_pi
    P = np.exp(S - S.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    return P.argmax(axis=1), P


def snorkel_available():
    return os.path.exists(SNORKEL_PY)


def run_snorkel(Ltr, Lte, k, epochs, seed=123):
    """(test predictions, test probabilities, fit seconds), or None on failure."""
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
        return np.load(os.path.join(out, "test.pred.npy")), np.load(os.path.join(out, "test.proba.npy")), secs


# -- mteach -----------------------------------------------------------------------------------
def choose_on_valid(Ltr, Lva, yva, k):
    """The grid setting with the best valid mean of accuracy and metric (both count: the metric
    alone buys minority-class F1 with accuracy on rows no rule covers), ties to the one nearest
    the defaults; returns (settings, fitted model, valid scores)."""
    best = None
    for params in GRID:
        lm = LabelModel(n_classes=k, **params).fit(Ltr)
        pred = lm.predict(Lva)
        dist = sum(abs(params[p] - DEFAULTS[p]) for p in params)
        f1, acc = metric(pred, yva, k), float((pred == yva).mean())
        key = (round((f1 + acc) / 2, 6), -dist)
        if best is None or key > best[0]:
            best = (key, params, lm, {"metric": f1, "acc": acc})
    return best[1], best[2], best[3]


def covered_of(L):
    return (L != -1).any(axis=1)


def end_model_baseline(text_tr, labels_tr, text_te):
    """CountVectorizer(word 1-2-grams, min_df 2) + LogisticRegression, trained on given labels."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    vec = CountVectorizer(ngram_range=(1, 2), min_df=2)
    Xtr = vec.fit_transform(text_tr)
    clf = LogisticRegression(max_iter=2000).fit(Xtr, labels_tr)
    proba = np.zeros((len(text_te), int(labels_tr.max()) + 1))
    proba[:, clf.classes_] = clf.predict_proba(vec.transform(text_te))
    return proba.argmax(axis=1), proba


def run_dataset(name, splits, k, args, use_snorkel):
    (Ltr, _, text_tr), (Lva, yva, _), (Lte, yte, text_te) = splits["train"], splits["valid"], splits["test"]
    cov = covered_of(Lte)
    rows = {}
    mv_runs = []
    for seed in range(args.mv_seeds):
        mv = MajorityVote(n_classes=k, tie_break="random", seed=seed).fit(Ltr)
        mv_runs.append(scores(mv.predict(Lte), yte, k, cov, mv.predict_proba(Lte)))
    rows["MV"] = mean_scores(mv_runs)
    if use_snorkel:
        r = run_snorkel(Ltr, Lte, k, args.snorkel_epochs)
        if r is not None:
            rows["Snorkel"] = scores(r[0], yte, k, cov, r[1])
    pred, proba = dawid_skene_abstain(Ltr, Lte, k)
    rows["DS-abst"] = scores(pred, yte, k, cov, proba)
    t0 = time.perf_counter()
    lm = LabelModel(n_classes=k).fit(Ltr)
    fit_s = time.perf_counter() - t0
    rows["mteach"] = scores(lm.predict(Lte), yte, k, cov, lm.predict_proba(Lte))
    params, lmv, valid = choose_on_valid(Ltr, Lva, yva, k)
    uncal_ece = ece(lmv.predict_proba(Lte), yte)
    lmv.calibrate(Lva, yva)
    rows["mteach-v"] = scores(lmv.predict(Lte), yte, k, cov, lmv.predict_proba(Lte))
    notes = [f"mteach fit {fit_s:.3f} s; chosen on valid: " + ", ".join(f"{p}={v}" for p, v in params.items())
             + f" (valid metric {valid['metric']:.4f}, acc {valid['acc']:.4f}); temperature on valid gold "
             f"T={lmv.temperature_:.3f}, test ECE {uncal_ece:.4f} before"]
    if args.end_models:
        covered_tr = covered_of(Ltr)
        labels = lmv.predict(Ltr[covered_tr])
        text = [t for t, c in zip(text_tr, covered_tr) if c]
        pred, proba = end_model_baseline(text, labels, text_te)
        rows["LR(mteach-v)"] = scores(pred, yte, k, cov, proba)
        # the label model has no evidence on rows no rule covers (it can only say its class
        # prior): those rows go to the end model, as `predict` does
        rows["mteach-v+LR"] = scores(np.where(cov, lmv.predict(Lte), pred), yte, k, cov,
                                     np.where(cov[:, None], lmv.predict_proba(Lte), proba))
    return rows, notes


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("MTEACH_DATA", "/work/shared/data"))
    ap.add_argument("--datasets", nargs="*", default=DATASETS)
    ap.add_argument("--mv-seeds", type=int, default=10)
    ap.add_argument("--snorkel-epochs", type=int, default=100)
    ap.add_argument("--end-models", action="store_true",
                    help="add the CountVectorizer + LogisticRegression baseline trained on mteach-v's labels")
    ap.add_argument("--skip-snorkel", action="store_true")
    args = ap.parse_args()
    use_snorkel = snorkel_available() and not args.skip_snorkel
    if not use_snorkel:
        print(f"[Snorkel skipped: {SNORKEL_PY} not found; run bench/setup_snorkel_env.sh]")
    print("test split; metric = F1 of class 1 (binary) or macro-F1; acc_cov = accuracy on rows with a vote")
    for name in args.datasets:
        splits, k = load(args.data, name)
        rows, notes = run_dataset(name, splits, k, args, use_snorkel)
        Ltr = splits["train"][0]
        print(f"\n{name}: fit on {'valid' if name == 'chemprot' else 'train'} ({Ltr.shape[0]} rows x {Ltr.shape[1]} rules,"
              f" k={k}); test {splits['test'][0].shape[0]} rows, coverage {rows['MV']['cov']:.3f}")
        print(f"| {'method':<13}| {'acc':>6} | {'metric':>6} | {'acc_cov':>7} | {'met_cov':>7} | {'ECE':>6} |")
        print(f"|{'-' * 14}|{'-' * 8}|{'-' * 8}|{'-' * 9}|{'-' * 9}|{'-' * 8}|")
        for method, r in rows.items():
            print(f"| {method:<13}| {r['acc']:.4f} | {r['metric']:.4f} | {r['acc_cov']:.4f}  "
                  f"| {r['metric_cov']:.4f}  | {r['ece']:.4f} |")
        peers = [r for m, r in rows.items() if m in ("MV", "Snorkel", "DS-abst")]
        for key in ("acc", "metric"):
            best = max(r[key] for r in peers)
            if rows["mteach-v"][key] < best:
                print(f"  mteach-v {key} {rows['mteach-v'][key]:.4f} < best peer {best:.4f}")
        for note in notes:
            print("  " + note, flush=True)


if __name__ == "__main__":
    main()
