"""train and predict."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..engine.report import fmt_number
from ..errors import DataError
from ..settings import SettingsError, load_settings
from .common import (Loaded, add_data_argument, add_data_options, add_engine_options, add_run_options,
                     add_spec_data_arguments, dump_json, load, print_table, votes_and_gold, writes_parts)


def register(sub):
    p = sub.add_parser("train", help="fit the label model and the end model; write a model folder",
                       description="Apply the rules, fit the label model on their votes (confidence values are "
                                   "priors; gold rows sharpen it), train the end model on its soft labels with the "
                                   "spec's direction hints as loss penalties, and write MODEL_DIR (model.json, "
                                   "a copy of the spec, the rules table, end-model weights, report.json). Model "
                                   "settings come from mteach.toml (--config), not from the spec.")
    add_spec_data_arguments(p)
    p.add_argument("-o", "--output", required=True, metavar="MODEL_DIR")
    p.add_argument("--config", metavar="mteach.toml",
                   help="model settings (default: ./mteach.toml when present, else built-in defaults)")
    add_data_options(p)
    p.add_argument("--format", choices=("table", "json"), default="table",
                   help="format of the training report (json: the report.json written in MODEL_DIR)")
    add_run_options(p, quiet="no progress lines or report")
    add_engine_options(p, "the rules' votes for the label model are computed there")
    p.set_defaults(run=cmd_train)

    p = sub.add_parser("predict", help="label rows with a trained model",
                       description="Per row: the label, the class probabilities, and who decided — 'rules' "
                                   "where any rule voted (the label model's posterior blended with the end "
                                   "model), 'end_model' where no rule did. With gold labels, prints majority "
                                   "vote, label model, end model and combined accuracy side by side, each with its "
                                   "95% Wilson interval, and each hint's effect on this data: satisfaction with and "
                                   "without it, rows whose end-model label it flips, end-model accuracy with and "
                                   "without it (against the end model trained without that hint in the same run, "
                                   "same seed).")
    p.add_argument("model", metavar="MODEL_DIR")
    add_data_argument(p)
    p.add_argument("-o", "--output", metavar="OUT.parquet", help="write predictions here")
    p.add_argument("--spec", metavar="SPEC", help="refuse the model unless it was trained on this spec version")
    add_data_options(p)
    p.add_argument("--format", choices=("table", "json"), default="table",
                   help="format of the evaluation (json: {\"accuracy\": [...], \"hints\": [...]})")
    add_engine_options(p, "OUT is then a folder: a Parquet part per partition and _manifest.json, written last")
    p.set_defaults(run=cmd_predict)


def settings_from(args):
    path = args.config
    if path is None and Path("mteach.toml").is_file():
        path = "mteach.toml"
    try:
        return load_settings(path)
    except SettingsError as err:
        raise DataError(str(err)) from None


def cmd_train(args) -> int:
    from ..engine.train import save_model, train
    settings = settings_from(args)
    loaded = load(args.spec, args.data, args.id_column)
    batch, gold = votes_and_gold(args, loaded, quiet=True)
    log = (lambda m: None) if args.quiet else (lambda m: print(f"  {m}", file=sys.stderr))
    model, report = train(loaded.spec, batch.table, settings, gold, log=log, votes=batch.votes)
    save_model(model, args.output, report)
    if args.format == "json":
        dump_json(report)
    elif not args.quiet:
        print_report(report, args.output)
    return 0


HINT_COLUMNS = ["hint", "label", "satisfied", "satisfied_without", "flipped", "accuracy", "accuracy_without"]


def print_hint_effects(effects, out=None) -> None:
    """Each hint against the end model trained without it (same rows, same seed)."""
    out = out or sys.stdout
    rows = effects[0]["rows"]
    print(f"hints: the end model with each hint vs the one trained without it (same rows, same seed); "
          f"satisfied = share of {rows:,} rows no rule covers that move the hinted way; flipped = rows "
          "whose end-model label the hint changes; accuracy = end model on the gold rows", file=out)
    columns = [c for c in HINT_COLUMNS if c in effects[0]]
    print_table(effects, columns, out=out, right=set(columns) - {"hint", "label"})


def print_report(report, folder, out=None):
    out = out or sys.stdout
    print(f"wrote {folder}: {report['rows']:,} rows, {report['covered']:,} covered by rules", file=out)
    hist = report["end_model"]["history"]
    if hist:
        first, last = hist[0], hist[-1]
        print(f"end model loss: epoch 1 {first['loss']:.4f} → epoch {last['epoch']} {last['loss']:.4f} "
              f"(cross-entropy {last['ce']:.4f})", file=out)
    if report["hints"]:
        print_hint_effects(report["hints"], out)
    if "gold" in report:
        g = report["gold"]
        print(f"on {g['rows']:,} gold rows ({g['note']}):", file=out)
        for key in ("majority_vote_on_covered", "label_model_on_covered", "end_model_all_rows", "combined_all_rows"):
            print(f"  {key.replace('_', ' ')}: {fmt_number(g[key])}", file=out)
    print(f"blend: beta={report['blend']['beta']} ({report['blend']['chosen_on']})", file=out)


def evaluate(result, votes, gold, labels, positive=None) -> list:
    """Accuracy of each way to label, on the gold rows; with ``positive`` (a label) also its F1
    (under "f1"), the figure to read beside accuracy when classes are unbalanced."""
    from ..engine.analysis import majority_vote, wilson_interval
    known = gold != -1
    mv = majority_vote(votes, len(labels))
    covered = result["covered"]

    def acc(pred, mask):
        m = mask & known
        correct = int((pred[m] == gold[m]).sum())
        return (correct / int(m.sum()) if m.any() else float("nan")), int(m.sum()), wilson_interval(correct, int(m.sum()))

    def f1(pred, mask):
        m = mask & known
        p = labels.index(positive)
        tp = int(((pred[m] == p) & (gold[m] == p)).sum())
        predicted, actual = int((pred[m] == p).sum()), int((gold[m] == p).sum())
        return 2 * tp / (predicted + actual) if predicted + actual else float("nan")

    rows = []
    for name, pred, mask in (
            ("majority vote (covered rows, ties excluded)", mv, mv != -1),
            ("label model (covered rows)", result["lm_proba"].argmax(1), covered),
            ("label model (all rows)", result["lm_proba"].argmax(1),
             np.ones_like(covered)),
            ("end model alone (covered rows)", result["em_proba"].argmax(1), covered),
            ("combined (covered rows)", result["label"], covered),
            ("end model (uncovered rows)", result["em_proba"].argmax(1), ~covered),
            ("end model alone (all rows)", result["em_proba"].argmax(1), np.ones_like(covered)),
            ("combined (all rows)", result["label"], np.ones_like(covered))):
        a, n, (low, high) = acc(pred, mask)
        rows.append({"method": name, "accuracy": a, "low": low, "high": high, "rows": n}
                    | ({"f1": f1(pred, mask)} if positive else {}))
    # majority vote with random tie-breaks and the class prior for uncovered rows: the plain baseline
    rng = np.random.default_rng(0)
    filled = mv.copy()
    ties = filled == -1
    filled[ties] = rng.integers(0, len(labels), ties.sum())
    a, n, (low, high) = acc(filled, np.ones_like(covered))
    rows.insert(1, {"method": "majority vote (all rows, random for ties and uncovered)", "accuracy": a,
                    "low": low, "high": high, "rows": n}
                | ({"f1": f1(filled, np.ones_like(covered))} if positive else {}))
    return rows


def cmd_predict(args) -> int:
    from ..engine.apply import resolve_id_column
    from ..engine.datasets import open_source, write_dataset
    from ..engine.io import atomic_path
    from ..engine.train import load_model
    if not (args.output or args.gold or args.gold_column):
        raise DataError("nothing to do: give -o OUT.parquet for predictions and/or gold labels to evaluate")
    source = open_source(args.data)
    model = load_model(args.model, args.spec, source.schema)
    loaded = Loaded(model.spec, source, resolve_id_column(source, args.id_column))
    batch, gold = votes_and_gold(args, loaded, quiet=True)
    table, votes, ids = batch.table, batch.votes, batch.ids
    result = model.predict(table, votes)
    labels = list(model.spec.labels)
    if args.output:
        cols = {"id": ids, "label": pa.array(np.array(labels)[result["label"]])}
        for k, lab in enumerate(labels):
            cols[f"p_{lab}"] = pa.array(result["proba"][:, k])
        cols["decided_by"] = pa.array(result["decided_by"])
        if writes_parts(args):
            from ..engine.dask_engine import partition_rows
            write_dataset(args.output, pa.table(cols), partition_rows(source))
        else:
            with atomic_path(args.output) as tmp:
                pq.write_table(pa.table(cols), tmp)
        print(f"wrote {args.output}: {table.num_rows:,} rows ({int(result['covered'].sum()):,} decided by the rules, "
              f"{int((~result['covered']).sum()):,} by the end model)", file=sys.stderr)
    if gold is not None:
        from ..engine.train import _feature_table, hint_effects
        rows = evaluate(result, votes, gold, labels)
        effects = hint_effects(model, _feature_table(model.spec, table), result["covered"], gold)
        for e in effects:
            del e["flipped_rows"]
        if args.format == "json":
            dump_json({"accuracy": rows, "hints": effects})
        else:
            for row in rows:  # the accuracy on few labelled rows (a spot check) is only known to an interval
                row["95% Wilson interval"] = "-" if row["rows"] == 0 else f"{row['low']:.3f}–{row['high']:.3f}"
            print_table(rows, ["method", "accuracy", "95% Wilson interval", "rows"], right={"accuracy", "rows"})
            if effects:
                print()
                print_hint_effects(effects)
    return 0

