"""The whole road on YouTube, leave-one-file-out: each of the five files is test once.

For each held-out file, ``train`` runs on the other four with their gold labels (the label
model is fitted and temperature-calibrated with them; the end model is cross-fitted on them
to calibrate it and choose the blend) and the held-out file is scored once. The spec is
``specs/youtube_spam.mt`` with the held-out file's artist names taken out of the ``artist``
rule (an expert who only saw the training files could not have named them). Held out file
05 with the spec as shipped (it names no file-05 artist) is the bundled example
(``data/youtube/train.csv`` = files 01-04, ``test.csv`` = file 05).

Per split: accuracy, F1 of SPAM and ECE of majority vote (random ties and rows with no vote,
mean of 10 seeds), label model, end model, combined, and the plain recipe (CountVectorizer
1-2-grams min_df 2 + LogisticRegression) trained on the label model's labels of the covered
train rows; the blend beta chosen; whether combined is within 0.5 points of the better of
label model and end model. Then mean and spread (min-max) over the five files.

    python bench/youtube_road.py [--files 1 2 3 4 5] [--data /work/shared/data/youtube]
"""
import argparse
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from label_model_wrench import end_model_baseline  # noqa: E402

from mteach.cli.learn import evaluate  # noqa: E402
from mteach.compiler.checker import load_spec  # noqa: E402
from mteach.engine.calibration import ece, f1_score  # noqa: E402
from mteach.engine.gold import gold_from_column  # noqa: E402
from mteach.engine.train import train  # noqa: E402
from mteach.settings import Settings  # noqa: E402

FILES = {1: ("Youtube01-Psy.csv", ["psy", "gangnam"]), 2: ("Youtube02-KatyPerry.csv", ["katy", "perry"]),
         3: ("Youtube03-LMFAO.csv", ["lmfao"]), 4: ("Youtube04-Eminem.csv", ["eminem", "rihanna"]),
         5: ("Youtube05-Shakira.csv", ["shakira"])}
STRING = pa.string()


def read(path) -> pa.Table:
    opts = pacsv.ConvertOptions(column_types={"COMMENT_ID": STRING, "AUTHOR": STRING, "DATE": STRING,
                                              "CONTENT": STRING, "CLASS": pa.int64()})
    return pacsv.read_csv(path, convert_options=opts)


def spec_without(names, folder: Path) -> Path:
    """A copy of the bundled spec (and its lexicons) whose artist rule does not name ``names``."""
    shutil.copytree(ROOT / "specs", folder, dirs_exist_ok=True)
    path = folder / "youtube_spam.mt"
    text = path.read_text(encoding="utf-8")
    rule = re.search(r"^rule artist .*$", text, re.M).group(0)
    kept = rule
    for name in names:
        kept = kept.replace(f'"{name}", ', "").replace(f', "{name}"', "")
    path.write_text(text.replace(rule, kept), encoding="utf-8")
    return path


def run_split(held: int, data: Path, tmp: Path, mv_seeds: int) -> dict:
    train_table = pa.concat_tables([read(data / FILES[i][0]) for i in FILES if i != held])
    test_table = read(data / FILES[held][0])
    spec = load_spec(spec_without(FILES[held][1], tmp / f"spec{held}"), train_table.schema)
    labels = list(spec.labels)
    mapping = {"1": "SPAM", "0": "HAM"}
    gold_tr = gold_from_column(train_table, "CLASS", mapping, labels, "train")
    gold = gold_from_column(test_table, "CLASS", mapping, labels, FILES[held][0])
    t0 = time.perf_counter()
    model, report = train(spec, train_table, Settings(), gold_tr)
    seconds = time.perf_counter() - t0
    votes = model.votes(test_table)
    result = model.predict(test_table, votes)
    out = {}
    for seed in range(mv_seeds):
        ev = evaluate(result, votes, gold, labels, seed=seed)
        for key in ("accuracy", "f1", "ece"):
            out.setdefault(f"majority vote {key}", []).append(ev["majority_vote"]["all"][key])
    out = {key: float(np.mean(v)) for key, v in out.items()}
    for method in ("label_model", "end_model", "combined"):
        for key in ("accuracy", "f1", "ece"):
            out[f"{method.replace('_', ' ')} {key}"] = ev[method]["all"][key]
    covered_tr = (model.votes(train_table) != -1).any(axis=1)
    lm_labels = model.label_model.predict(model.votes(train_table)[covered_tr])
    text_tr = np.array(train_table.column("CONTENT").to_pylist(), dtype=object)[covered_tr].tolist()
    pred, proba = end_model_baseline(text_tr, lm_labels, test_table.column("CONTENT").to_pylist())
    out["LR on mteach labels accuracy"] = float((pred == gold).mean())
    out["LR on mteach labels f1"] = f1_score(pred, gold, 2, positive=0)
    out["LR on mteach labels ece"] = ece(proba, gold)
    out["coverage"] = float(result["covered"].mean())
    out["blend beta"] = report["blend"]["beta"]
    beta_u = report["blend"]["beta_uncovered"]
    out["uncovered beta (nan: end model)"] = float("nan") if beta_u is None else beta_u
    out["train seconds"] = seconds
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, nargs="*", default=list(FILES))
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data/youtube"))
    ap.add_argument("--mv-seeds", type=int, default=10)
    args = ap.parse_args()
    cols = {}
    with tempfile.TemporaryDirectory() as tmp:
        for held in args.files:
            cols[f"held out {held:02d}"] = run_split(held, args.data, Path(tmp), args.mv_seeds)
            print(f"  held out {FILES[held][0]}: done", file=sys.stderr, flush=True)
    names = list(next(iter(cols.values())))
    width = max(map(len, names))
    heads = list(cols) + (["mean", "min", "max"] if len(cols) > 1 else [])
    print(f"| {'':{width}} | " + " | ".join(f"{h:>11}" for h in heads) + " |")
    print(f"|{'-' * (width + 2)}|" + "|".join("-" * 13 for _ in heads) + "|")
    for name in names:
        vals = [c[name] for c in cols.values()]
        if len(cols) > 1:
            vals += [float(np.nanmean(vals)), float(np.nanmin(vals)), float(np.nanmax(vals))] if not np.all(
                np.isnan(vals)) else [float("nan")] * 3
        print(f"| {name:{width}} | " + " | ".join(f"{v:11.3f}" for v in vals) + " |")
    print("\ncombined vs the better of label model and end model (accuracy, F1 of SPAM; goal: within 0.5 points):")
    for split, c in cols.items():
        for key in ("accuracy", "f1"):
            best = max(c[f"label model {key}"], c[f"end model {key}"])
            gap = 100 * (c[f"combined {key}"] - best)
            print(f"  {split} {key}: {gap:+.1f} points {'ok' if gap >= -0.5 else 'BELOW'}")


if __name__ == "__main__":
    main()
