"""train and predict."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import DataError
from ..settings import SettingsError, load_settings
from .common import (Loaded, add_data_argument, add_data_options, add_run_options, add_spec_data_arguments,
                     dump_json, fmt_number, gold_for, load, print_table)


def register(sub):
    p = sub.add_parser("train", help="fit the label model and the end model; write a model folder",
                       description="Apply the rules, fit the label model on their votes (confidence values are "
                                   "priors; gold rows sharpen it), train the end model on its soft labels with the "
                                   "spec's direction hints as loss penalties, and write MODEL_DIR (model.json, "
                                   "a copy of the spec, the rules table, end-model weights, report.json). With gold "
                                   "labels, both models are calibrated by a temperature (the end model's on "
                                   "out-of-fold predictions from 3-fold cross-fitting) and the blend of the two on "
                                   "covered rows is chosen on those out-of-fold predictions; the report gives "
                                   "temperatures and ECE. Model settings come from mteach.toml (--config), not from "
                                   "the spec.")
    add_spec_data_arguments(p)
    p.add_argument("-o", "--output", required=True, metavar="MODEL_DIR")
    p.add_argument("--config", metavar="mteach.toml",
                   help="model settings (default: ./mteach.toml when present, else built-in defaults)")
    add_data_options(p)
    add_run_options(p, quiet="no progress lines or report")
    p.set_defaults(run=cmd_train)

    p = sub.add_parser("predict", help="label rows with a trained model",
                       description="Per row: the label, the class probabilities, and who decided — 'rules' "
                                   "where any rule voted (the label model's posterior blended with the end "
                                   "model), 'end_model' where no rule did. With gold labels, prints majority "
                                   "vote, label model, end model and combined side by side: accuracy, F1 (of "
                                   "the spec's first label when there are two, else macro), ECE and rows, on all gold rows "
                                   "and on those a rule covers (--format json: an object keyed by method, then "
                                   "'all' / 'covered').")
    p.add_argument("model", metavar="MODEL_DIR")
    add_data_argument(p)
    p.add_argument("-o", "--output", metavar="OUT.parquet", help="write predictions here")
    p.add_argument("--spec", metavar="SPEC", help="refuse the model unless it was trained on this spec version")
    add_data_options(p)
    p.add_argument("--format", choices=("table", "json"), default="table", help="format of the evaluation")
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
    table = loaded.source.read_all()
    gold = gold_for(args, loaded, row_ids(table, loaded.id_column))
    log = (lambda m: None) if args.quiet else (lambda m: print(f"  {m}", file=sys.stderr))
    model, report = train(loaded.spec, table, settings, gold, log=log)
    save_model(model, args.output, report)
    if not args.quiet:
        print_report(report, args.output)
    return 0


def print_report(report, folder, out=None):
    out = out or sys.stdout
    print(f"wrote {folder}: {report['rows']:,} rows, {report['covered']:,} covered by rules", file=out)
    hist = report["end_model"]["history"]
    if hist:
        first, last = hist[0], hist[-1]
        print(f"end model loss: epoch 1 {first['loss']:.4f} → epoch {last['epoch']} {last['loss']:.4f} "
              f"(cross-entropy {last['ce']:.4f})", file=out)
    if report["hints"]:
        print("hints (satisfaction on rows no rule covers, which the end model did not train on):", file=out)
        print_table(report["hints"], ["hint", "label", "satisfied", "mean_change", "final_penalty", "rows"], out=out,
                    right={"satisfied", "mean_change", "final_penalty", "rows"})
    if "gold" in report:
        g = report["gold"]
        print(f"on {g['rows']:,} gold rows ({g['note']}):", file=out)
        for key in ("majority_vote_on_covered", "label_model_on_covered", "end_model_all_rows", "combined_all_rows"):
            print(f"  {key.replace('_', ' ')}: {fmt_number(g[key])}", file=out)
    b = report["blend"]
    print(f"blend on covered rows: beta={b['beta']} ({b['chosen_on']})", file=out)
    if "beta_uncovered" in b:
        print(f"rows no rule covers: {'the end model alone' if b['beta_uncovered'] is None else 'beta=%s with the class prior' % b['beta_uncovered']}"
              f" ({b['uncovered_chosen_on']})", file=out)
    for part, c in report.get("calibration", {}).items():
        figure = "" if c["ece"] is None else f", ECE {c['ece']:.3f} on gold rows"
        print(f"{part.replace('_', ' ')} calibration: temperature {c['temperature']:.3f} ({c['fitted_on']}{figure})",
              file=out)


METHODS = ("majority_vote", "label_model", "end_model", "combined")


def evaluate(result, votes, gold, labels, seed: int = 0) -> dict:
    """Each way to label, scored on the gold rows: ``{method: {"all": {...}, "covered": {...}}}``
    with ``accuracy``, ``f1`` (of the spec's first label when there are two — the concept's own
    label, e.g. SPAM — else macro), ``ece`` (10 bins) and
    ``rows``; "covered" = rows where a rule votes. Majority vote breaks ties and labels rows
    with no vote at random (``seed``); its probabilities are the vote shares (uniform where
    no rule votes)."""
    from ..engine.calibration import ece, f1_score
    from ..engine.label_model import MajorityVote
    k = len(labels)
    mv = MajorityVote(n_classes=k, tie_break="random", seed=seed).fit(votes[:1])
    probas = {"majority_vote": mv.predict_proba(votes), "label_model": result["lm_proba"],
              "end_model": result["em_proba"], "combined": result["proba"]}
    preds = {"majority_vote": mv.predict(votes), "label_model": result["lm_proba"].argmax(1),
             "end_model": result["em_proba"].argmax(1), "combined": result["label"]}
    out = {}
    for method in METHODS:
        out[method] = {}
        for scope, mask in (("all", np.ones_like(result["covered"])), ("covered", result["covered"])):
            g = np.where(mask, gold, -1)
            known = g != -1
            out[method][scope] = {
                "accuracy": float((preds[method][known] == g[known]).mean()) if known.any() else None,
                "f1": f1_score(preds[method], g, k, positive=0) if known.any() else None,
                "ece": ece(probas[method], g) if known.any() else None, "rows": int(known.sum())}
    return out


def print_evaluation(evaluation: dict, labels, out=None):
    """The evaluation as a text table: one line per method and scope (all / covered rows)."""
    rows = [{"method": method.replace("_", " "), "rows on": scope, **figures}
            for method, scopes in evaluation.items() for scope, figures in scopes.items()]
    print_table(rows, ["method", "rows on", "accuracy", "f1", "ece", "rows"],
                right={"accuracy", "f1", "ece", "rows"}, out=out)
    print(f"f1: {'of ' + labels[0] if len(labels) == 2 else 'macro'}; ece: expected calibration error "
          "(10 bins); majority vote: random for ties and rows with no vote", file=out or sys.stdout)


def cmd_predict(args) -> int:
    from ..engine.apply import resolve_id_column
    from ..engine.io import atomic_path, open_data
    from ..engine.train import load_model
    if not (args.output or args.gold or args.gold_column):
        raise DataError("nothing to do: give -o OUT.parquet for predictions and/or gold labels to evaluate")
    source = open_data(args.data)
    model = load_model(args.model, args.spec, source.schema)
    loaded = Loaded(model.spec, source, resolve_id_column(source, args.id_column))
    table = source.read_all()
    votes = model.votes(table)
    result = model.predict(table, votes)
    labels = list(model.spec.labels)
    ids = row_ids(table, loaded.id_column)
    if args.output:
        cols = {"id": ids, "label": pa.array(np.array(labels)[result["label"]])}
        for k, lab in enumerate(labels):
            cols[f"p_{lab}"] = pa.array(result["proba"][:, k])
        cols["decided_by"] = pa.array(result["decided_by"])
        with atomic_path(args.output) as tmp:
            pq.write_table(pa.table(cols), tmp)
        print(f"wrote {args.output}: {table.num_rows:,} rows ({int(result['covered'].sum()):,} decided by the rules, "
              f"{int((~result['covered']).sum()):,} by the end model)", file=sys.stderr)
    gold = gold_for(args, loaded, ids)
    if gold is not None:
        evaluation = evaluate(result, votes, gold, labels)
        if args.format == "json":
            dump_json(evaluation)
        else:
            print_evaluation(evaluation, labels)
    return 0


def row_ids(table: pa.Table, id_column) -> pa.Array:
    """The id column, or row numbers from 0 when there is none (as `apply` writes them)."""
    return table.column(id_column) if id_column else pa.array(np.arange(table.num_rows))
