"""The whole road (`mteach train` + `predict`) on WRENCH vote matrices: does the blend lose?

    python bench/blend_wrench.py [--datasets sms youtube] [--data /work/shared/data]

WRENCH's votes come precomputed (its labeling functions are Python, not mteach rules), so
the bench writes a spec with one placeholder rule per labeling function (its name and
label) and hands ``train`` (and ``predict``) the WRENCH votes in place of applying the rules --
the only departure from `mteach train`. Train = WRENCH train rows without labels + valid rows with
their gold labels (so the label model is calibrated, and the end model cross-fitted and the
blend chosen, on valid gold, per docs/evaluation.md); test is scored once with
`predict`'s evaluation: accuracy, F1 (the positive class: WRENCH class 1) and ECE of majority
vote, label model, end model and combined, on all, covered and uncovered test rows, beside
the plain recipe of docs/evaluation.md (CountVectorizer word 1-2-grams, min_df 2 +
LogisticRegression) trained on the label model's labels of the covered train rows.
"""
import argparse
import os
import sys
import time

import numpy as np
import pyarrow as pa

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))
from label_model_wrench import end_model_baseline, load  # noqa: E402

from mteach.cli.learn import evaluate  # noqa: E402
from mteach.compiler.checker import load_spec  # noqa: E402
from mteach.engine.calibration import ece, f1_score  # noqa: E402
from mteach.engine import train as train_module  # noqa: E402
from mteach.settings import Settings  # noqa: E402


def spec_for(L, k, folder):
    """Labels c0..c(k-1) with the positive class (WRENCH 1) first for two classes; one
    placeholder rule per labeling function, voting the label it votes most."""
    order = [1, 0] if k == 2 else list(range(k))
    names = [f"c{c}" for c in order]
    lines = ['concept wrench "a WRENCH task"', "labels " + ", ".join(names), 'field text = "text"']
    for j in range(L.shape[1]):
        votes = L[:, j][L[:, j] >= 0]
        lab = int(np.bincount(votes, minlength=k).argmax()) if votes.size else 0
        lines.append(f'rule lf{j} : text has "lf{j}placeholder" => c{lab}')
    path = os.path.join(folder, "wrench.mt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path, np.array([order.index(c) for c in range(k)])  # WRENCH class -> spec index


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("MTEACH_DATA", "/work/shared/data"))
    ap.add_argument("--datasets", nargs="*", default=["sms"])
    args = ap.parse_args()
    import tempfile
    for name in args.datasets:
        splits, k = load(args.data, name)
        (Ltr, _, ttr), (Lva, yva, tva), (Lte, yte, tte) = splits["train"], splits["valid"], splits["test"]
        with tempfile.TemporaryDirectory() as tmp:
            path, to_spec = spec_for(np.vstack([Ltr, Lva]), k, tmp)
            remap = lambda L: np.where(L >= 0, to_spec[np.maximum(L, 0)], -1).astype(np.int8)  # noqa: E731
            table = pa.table({"text": ttr + tva})
            spec = load_spec(path, table.schema)
            gold = np.r_[np.full(len(ttr), -1), to_spec[yva]]
            votes_tr, votes_te = remap(np.vstack([Ltr, Lva])), remap(Lte)
            t0 = time.perf_counter()
            model, report = train_module.train(spec, table, Settings(), gold, votes=votes_tr)
            secs = time.perf_counter() - t0
            result = model.predict(pa.table({"text": tte}), votes_te)
            ev = evaluate(result, votes_te, to_spec[yte], list(spec.labels))
            covered_tr = (votes_tr != -1).any(axis=1)
            text_tr = [t for t, c in zip(ttr + tva, covered_tr) if c]
            pred, proba = end_model_baseline(text_tr, model.label_model.predict(votes_tr[covered_tr]), tte)
            lr = {"accuracy": float((pred == to_spec[yte]).mean()), "f1": f1_score(pred, to_spec[yte], k, positive=0),
                  "ece": ece(proba, to_spec[yte])}
        print(f"\n{name}: test {len(tte)} rows, coverage {result['covered'].mean():.3f}; blend beta "
              f"{report['blend']['beta']} ({report['blend']['chosen_on']}); calibration "
              + ", ".join(f"{p} T={c['temperature']:.2f}" for p, c in report["calibration"].items())
              + f"; train {secs:.0f} s")
        print(f"  on rows no rule covers: {report['blend']['beta_uncovered']} "
              f"({report['blend']['uncovered_chosen_on']}); scores on valid gold (mean of accuracy and F1) "
              f"per covered beta {report['blend']['scores']}, per uncovered choice {report['blend']['uncovered_scores']}")
        print(f"| {'method':<14}| rows on   | accuracy |     f1 |    ece |")
        print(f"|{'-' * 15}|-----------|----------|--------|--------|")
        for method, scopes in ev.items():
            for scope, f in scopes.items():
                if f["rows"]:
                    print(f"| {method:<14}| {scope:<9} | {f['accuracy']:8.4f} | {f['f1']:.4f} | {f['ece']:.4f} |")
        print(f"| {'LR on mteach':<14}| {'all':<9} | {lr['accuracy']:8.4f} | {lr['f1']:.4f} | {lr['ece']:.4f} |")
        for key in ("accuracy", "f1"):
            best = max(ev["label_model"]["all"][key], ev["end_model"]["all"][key])
            gap = 100 * (ev["combined"]["all"][key] - best)
            print(f"  combined {key} vs the better of label model and end model: {gap:+.1f} points "
                  f"{'ok' if gap >= -0.5 else 'BELOW'}; vs LR on mteach labels: "
                  f"{100 * (ev['combined']['all'][key] - lr[key]):+.1f} points", flush=True)


if __name__ == "__main__":
    main()
