"""train and predict."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..engine.io import DEFAULT_BATCH_ROWS
from ..engine.report import fmt_number
from ..errors import DataError
from ..settings import SettingsError, load_settings
from .common import (Loaded, add_data_argument, add_data_options, add_engine_options, add_run_options,
                     add_spec_data_arguments, dump_json, engine_for, gold_asked, gold_request, load, print_table,
                     progress_bar, votes_and_gold, writes_parts)


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
                                   "the spec. The data is read in two passes and never held whole: the label model "
                                   "fits on the counts of distinct vote rows, then only the end model's training "
                                   "rows ([end_model] max_rows caps them), the gold rows and as many rows no rule "
                                   "covers (a seeded sample) are kept; the report says how many and how chosen.")
    add_spec_data_arguments(p)
    p.add_argument("-o", "--output", required=True, metavar="MODEL_DIR")
    p.add_argument("--config", metavar="mteach.toml",
                   help="model settings (default: ./mteach.toml when present, else built-in defaults)")
    add_data_options(p)
    p.add_argument("--format", choices=("table", "json"), default="table",
                   help="format of the training report (json: the report.json written in MODEL_DIR)")
    add_run_options(p, quiet="no progress lines or report")
    add_engine_options(p, "the rules' votes for the label model are computed there")
    p.set_defaults(run=cmd_train, output_kind="model")

    p = sub.add_parser("predict", help="label rows with a trained model",
                       description="Per row: the label, the class probabilities, and who decided — 'rules' "
                                   "where any rule voted (the label model's posterior blended with the end "
                                   "model), 'end_model' where no rule did (or 'rules' there too when training chose "
                                   "the class prior for those rows). With gold labels, prints majority "
                                   "vote, label model, end model and combined side by side: accuracy with its "
                                   "95% Wilson interval, F1 (of the spec's first label when there are two, else "
                                   "macro), ECE and rows, on all gold rows, on those a rule covers and on those none "
                                   "covers; then each hint's effect on this data: satisfaction with and without it, "
                                   "rows whose end-model label it flips, end-model accuracy with and without it "
                                   "(against the end model trained without that hint in the same run, same seed). "
                                   "--format json: an object keyed by method, then 'all' / 'covered' / "
                                   "'uncovered', beside 'hints'. Without gold labels, predictions are streamed "
                                   "batch by batch (memory bounded by the batch, not the file).")
    p.add_argument("model", metavar="MODEL_DIR")
    add_data_argument(p)
    p.add_argument("-o", "--output", metavar="OUT.parquet", help="write predictions here")
    p.add_argument("--spec", metavar="SPEC", help="refuse the model unless it was trained on this spec version")
    add_data_options(p)
    p.add_argument("--format", choices=("table", "json"), default="table",
                   help="format of the evaluation (json: {\"accuracy\": [...], \"hints\": [...]})")
    add_engine_options(p, "OUT is then a folder: a Parquet part per partition and _manifest.json, written last")
    p.set_defaults(run=cmd_predict, output_kind="file")


def settings_from(args):
    path = args.config
    if path is None and Path("mteach.toml").is_file():
        path = "mteach.toml"
    try:
        return load_settings(path)
    except SettingsError as err:
        raise DataError(str(err)) from None


def cmd_train(args) -> int:
    from ..engine.end_model import resolve_device
    from ..engine.train import save_model, train_streamed
    settings = settings_from(args)
    resolve_device(settings.end_model.device)  # a device this machine lacks: said before any work
    loaded = load(args.spec, args.data, args.id_column)
    log = (lambda m: None) if args.quiet else (lambda m: print(f"  {m}", file=sys.stderr))
    rows = loaded.source.num_rows
    with progress_bar(rows * 2 if rows is not None else None, "reading the data (2 passes)", not args.quiet) as advance, \
            engine_for(args) as engine:
        model, report = train_streamed(loaded.spec, loaded.source, loaded.id_column, settings, gold_request(args),
                                       engine=engine, read_progress=advance, log=log,
                                       progress=lambda what, total: progress_bar(total, what, not args.quiet))
    save_model(model, args.output, report, data=loaded.source.path)
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
    used = report["end_model"].get("training_rows")
    if used:
        print(f"end model trained on {used['chosen']}", file=out)
    if report["end_model"].get("gathered"):
        print(f"rows kept in memory: {report['end_model']['gathered']}", file=out)
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
    b = report["blend"]
    print(f"blend on covered rows: beta={b['beta']} ({b['chosen_on']})", file=out)
    if "beta_uncovered" in b:
        bu = b["beta_uncovered"]
        how = ("the end model alone" if bu is None else "the label model's class prior (the rules' silence)"
               if bu == 0 else f"the end model, beta={bu} with the class prior")
        print(f"rows no rule covers: {how}"
              f" ({b['uncovered_chosen_on']})", file=out)
    for part, c in report.get("calibration", {}).items():
        figure = "" if c["ece"] is None else f", ECE {c['ece']:.3f} on gold rows"
        print(f"{part.replace('_', ' ')} calibration: temperature {c['temperature']:.3f} ({c['fitted_on']}{figure})",
              file=out)


METHODS = ("majority_vote", "label_model", "end_model", "combined")
SCOPES = ("all", "covered", "uncovered")


def evaluate(result, votes, gold, labels, positive: int = 0, seed: int = 0) -> dict:
    """Each way to label, scored on the gold rows: ``{method: {scope: figures}}`` for the
    scopes all, covered (a rule votes) and uncovered, with ``accuracy`` and its 95% Wilson
    interval (``low``, ``high``: a spot check of few rows is only known to an interval), ``f1``
    (of label index ``positive`` when there are two labels — by default the spec's first, the
    concept's own label, e.g. SPAM — else macro), ``ece`` (10 bins) and ``rows``. Majority vote
    breaks ties and labels rows with no vote at random (``seed``); its probabilities are the
    softmax of the vote counts (``engine.label_model.MajorityVote``; uniform where no rule votes)."""
    from ..engine.analysis import wilson_interval
    from ..engine.calibration import ece, f1_score
    from ..engine.label_model import MajorityVote
    k = len(labels)
    mv = MajorityVote(n_classes=k, tie_break="random", seed=seed).fit(votes[:1])
    probas = {"majority_vote": mv.predict_proba(votes), "label_model": result["lm_proba"],
              "end_model": result["em_proba"], "combined": result["proba"]}
    preds = {"majority_vote": mv.predict(votes), "label_model": result["lm_proba"].argmax(1),
             "end_model": result["em_proba"].argmax(1), "combined": result["label"]}
    covered = result["covered"]
    masks = {"all": np.ones_like(covered), "covered": covered, "uncovered": ~covered}
    out = {}
    for method in METHODS:
        out[method] = {}
        for scope in SCOPES:
            g = np.where(masks[scope], gold, -1)
            known = g != -1
            n = int(known.sum())
            correct = int((preds[method][known] == g[known]).sum())
            low, high = wilson_interval(correct, n)
            out[method][scope] = {
                "accuracy": correct / n if n else None, "low": low if n else None, "high": high if n else None,
                "f1": f1_score(preds[method], g, k, positive=positive) if n else None,
                "ece": ece(probas[method], g) if n else None, "rows": n}
    return out


def print_evaluation(evaluation: dict, labels, positive: int = 0, out=None):
    """The evaluation as a text table: one line per method and scope (all / covered / uncovered rows)."""
    rows = [{"method": method.replace("_", " "), "rows on": scope, **figures,
             "95% interval": "-" if not figures["rows"] else f"{figures['low']:.3f}–{figures['high']:.3f}"}
            for method, scopes in evaluation.items() for scope, figures in scopes.items()]
    print_table(rows, ["method", "rows on", "accuracy", "95% interval", "f1", "ece", "rows"],
                right={"accuracy", "f1", "ece", "rows"}, out=out)
    print(f"f1: {'of ' + labels[positive] if len(labels) == 2 else 'macro'}; 95% interval: Wilson, of the accuracy; "
          "ece: expected calibration error (10 bins); majority vote: random for ties and rows with no vote",
          file=out or sys.stdout)


def prediction_table(ids, result: dict, labels) -> pa.Table:
    """predict's output columns: id, label, p_<label> per label, decided_by."""
    cols = {"id": ids, "label": pa.array(np.asarray(labels)[result["label"]])}
    for k, lab in enumerate(labels):
        cols[f"p_{lab}"] = pa.array(result["proba"][:, k])
    cols["decided_by"] = pa.array(result["decided_by"])
    return pa.table(cols)


def predict_streaming(model, loaded, output, quiet: bool = False, batch_rows: int = DEFAULT_BATCH_ROWS) -> tuple:
    """Predict batch by batch into ``output`` (written atomically): one record batch's
    votes, features and predictions are held at a time. Returns (rows, rows covered)."""
    from ..engine.io import atomic_path
    from ..engine.votes import vote_batches
    labels = list(model.spec.labels)
    rows = covered = 0
    with atomic_path(output) as tmp, progress_bar(loaded.source.num_rows, "predicting", not quiet) as advance:
        writer = None
        try:
            for batch in vote_batches(model.spec, loaded.source, loaded.id_column, batch_rows=batch_rows,
                                      progress=advance):
                result = model.predict(batch.table, batch.votes)
                table = prediction_table(batch.ids, result, labels)
                writer = writer or pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
                rows += table.num_rows
                covered += int(result["covered"].sum())
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            raise DataError(f"{loaded.source.path}: the file has a header but no rows")
    return rows, covered


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
    if not gold_asked(args) and not writes_parts(args):  # predictions only: stream them
        rows, covered = predict_streaming(model, loaded, args.output)
        print(f"wrote {args.output}: {rows:,} rows ({covered:,} decided by the rules, "
              f"{rows - covered:,} by the end model)", file=sys.stderr)
        return 0
    # With gold labels the evaluation (and each hint's effect) needs every row at once.
    batch, gold = votes_and_gold(args, loaded, quiet=True)
    table, votes, ids = batch.table, batch.votes, batch.ids
    result = model.predict(table, votes)
    labels = list(model.spec.labels)
    if args.output:
        out = prediction_table(ids, result, labels)
        if writes_parts(args):
            from ..engine.dask_engine import partition_rows
            write_dataset(args.output, out, partition_rows(source))
        else:
            with atomic_path(args.output) as tmp:
                pq.write_table(out, tmp)
        print(f"wrote {args.output}: {out.num_rows:,} rows ({int(result['covered'].sum()):,} decided by the rules, "
              f"{int((~result['covered']).sum()):,} by the end model)", file=sys.stderr)
    if gold is not None:
        from ..engine.train import _feature_table, hint_effects
        evaluation = evaluate(result, votes, gold, labels)
        effects = hint_effects(model, _feature_table(model.spec, table), result["covered"], gold)
        for e in effects:
            del e["flipped_rows"]
        if args.format == "json":
            dump_json({**evaluation, "hints": effects})
        else:
            print_evaluation(evaluation, labels)
            if effects:
                print()
                print_hint_effects(effects)
    return 0

