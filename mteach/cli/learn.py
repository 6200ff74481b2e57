"""train and predict."""
from __future__ import annotations

import contextlib
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
                     add_spec_data_arguments, dump_json, engine_for, gold_asked, gold_request, load, load_model,
                     print_table, progress_bar, writes_parts)


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
    add_engine_options(p, "both passes run on the workers: only the vote counts, 2 bytes a row and the chosen "
                          "training rows come back")
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
                                   "'uncovered', beside 'hints'. The data is streamed batch by batch, with or without "
                                   "gold labels: predictions are written as they come and the scores are summed "
                                   "from each batch's counts (memory bounded by the batch, not the file).")
    p.add_argument("model", metavar="MODEL_DIR")
    add_data_argument(p)
    p.add_argument("-o", "--output", metavar="OUT.parquet", help="write predictions here")
    p.add_argument("--spec", metavar="SPEC", help="refuse the model unless it was trained on this spec version")
    add_data_options(p)
    p.add_argument("--format", choices=("table", "json"), default="table",
                   help="format of the evaluation (json: {\"accuracy\": [...], \"hints\": [...]})")
    add_engine_options(p, "each partition is predicted, written and (with gold labels) scored on a worker: OUT is "
                          "then a folder, a Parquet part per partition and _manifest.json, written last, and only "
                          "the scores' counts come back")
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
    softmax of the vote counts (``engine.label_model.MajorityVote``; uniform where no rule votes).
    ``Evaluation`` gives the same batch by batch."""
    evaluation = Evaluation(labels, positive, seed)
    evaluation.add(result, votes, gold)
    return evaluation.figures()


class Evaluation:
    """``evaluate`` accumulated over batches of rows (in data order), so ``predict`` with gold
    labels scores data of any length: per method and scope, the gold rows, those right, the
    per-class counts F1 needs and ECE's 10 bins (counts, and the sums of confidence minus
    correctness, continued row after row as ``calibration.ece`` sums them). Majority vote's
    random tie-breaks come from one generator passed from batch to batch."""

    BINS = 10

    def __init__(self, labels, positive: int = 0, seed: int = 0):
        self.k, self.positive, self.seed = len(labels), positive, seed
        self.rng = np.random.default_rng(seed)
        self.majority = None
        self.counts = {(method, scope): {"rows": 0, "right": 0, "true_positive": np.zeros(self.k, np.int64),
                                         "predicted": np.zeros(self.k, np.int64),
                                         "gold": np.zeros(self.k, np.int64),
                                         "in_bin": np.zeros(self.BINS, np.int64), "gap": np.zeros(self.BINS)}
                       for method in METHODS for scope in SCOPES}

    def add(self, result, votes, gold) -> None:
        from ..engine.label_model import MajorityVote
        if self.majority is None:
            self.majority = MajorityVote(n_classes=self.k, tie_break="random", seed=self.seed).fit(
                np.full((1, votes.shape[1]), -1, np.int8))
        mv = self.majority
        probas = {"majority_vote": mv.predict_proba(votes), "label_model": result["lm_proba"],
                  "end_model": result["em_proba"], "combined": result["proba"]}
        preds = {"majority_vote": mv.predict(votes, rng=self.rng), "label_model": result["lm_proba"].argmax(1),
                 "end_model": result["em_proba"].argmax(1), "combined": result["label"]}
        gold = np.asarray(gold)
        covered = result["covered"]
        masks = {"all": np.ones_like(covered), "covered": covered, "uncovered": ~covered}
        for method in METHODS:
            proba = np.asarray(probas[method], dtype=np.float64)
            for scope in SCOPES:
                known = masks[scope] & (gold != -1)
                c, pred, g = self.counts[method, scope], preds[method][known], gold[known]
                c["rows"] += int(known.sum())
                c["right"] += int((pred == g).sum())
                c["true_positive"] += np.bincount(g[pred == g], minlength=self.k)
                c["predicted"] += np.bincount(pred, minlength=self.k)
                c["gold"] += np.bincount(g, minlength=self.k)
                p = proba[known]
                conf = p.max(axis=1)
                which = np.minimum((conf * self.BINS).astype(np.int64), self.BINS - 1)
                c["in_bin"] += np.bincount(which, minlength=self.BINS)
                # the running sums go first, so the rows are added to them one by one in order
                c["gap"] = np.bincount(np.concatenate([np.arange(self.BINS), which]),
                                       weights=np.concatenate([c["gap"], conf - (p.argmax(axis=1) == g).astype(np.float64)]),
                                       minlength=self.BINS)

    def starting_at(self, row: int) -> "Evaluation":
        """An empty copy for the rows from ``row`` on (a partition's, scored on a worker): its
        tie-break generator advanced past the draws the rows before it take (``MajorityVote.predict``
        draws one number per row and label), so ties break as in one pass over all rows."""
        other = Evaluation([None] * self.k, self.positive, self.seed)
        other.rng.bit_generator.advance(row * self.k)
        return other

    def merge(self, other: "Evaluation") -> None:
        """Add the counts of the rows that follow these (``starting_at``'s, scored apart). The
        counts are exact; ECE's sums of confidence minus correctness are added per bin, so ECE
        can differ from one pass's in the last digits."""
        for key, c in self.counts.items():
            for name, value in other.counts[key].items():
                c[name] = c[name] + value

    def figures(self) -> dict:
        """``evaluate``'s figures over the rows added so far."""
        from ..engine.analysis import wilson_interval
        from ..engine.calibration import f1_from_counts
        out = {}
        for method in METHODS:
            out[method] = {}
            for scope in SCOPES:
                c = self.counts[method, scope]
                n = c["rows"]
                low, high = wilson_interval(c["right"], n)
                out[method][scope] = {
                    "accuracy": c["right"] / n if n else None, "low": low if n else None, "high": high if n else None,
                    "f1": f1_from_counts(c["true_positive"], c["predicted"], c["gold"], self.positive) if n else None,
                    "ece": float(np.abs(c["gap"]).sum() / c["in_bin"].sum()) if n else None, "rows": n}
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


def say_predicted(output, rows: int, covered: int) -> None:
    print(f"wrote {output}: {rows:,} rows ({covered:,} decided by the rules, {rows - covered:,} by the end model)",
          file=sys.stderr)


def cmd_predict(args) -> int:
    from ..engine.apply import resolve_id_column
    from ..engine.datasets import open_source
    if not (args.output or args.gold or args.gold_column):
        raise DataError("nothing to do: give -o OUT.parquet for predictions and/or gold labels to evaluate")
    source = open_source(args.data)
    model = load_model(args.model, args.spec, source.schema)
    loaded = Loaded(model.spec, source, resolve_id_column(source, args.id_column))
    evaluation = effects = None
    if writes_parts(args):  # --engine dask: predicted, written and scored on the workers
        from ..engine.dask_engine import predict_partitioned
        gold = gold_request(args) if gold_asked(args) else None
        with progress_bar(source.num_rows, "predicting", True) as advance, engine_for(args) as engine:
            rows, covered, evaluation, effects = predict_partitioned(
                engine, model, source, args.output, prediction_table, loaded.id_column, gold=gold,
                evaluation=Evaluation(list(model.spec.labels)) if gold else None, progress=advance)
        if gold:
            evaluation, effects = evaluation.figures(), effects.result()
    elif not gold_asked(args):  # streamed, batch by batch
        rows, covered = predict_streaming(model, loaded, args.output)
    else:
        rows, covered, evaluation, effects = predict_with_gold(model, loaded, gold_request(args), args.output)
    if args.output:
        say_predicted(args.output, rows, covered)
    if evaluation is not None:
        print_scores(evaluation, effects, list(model.spec.labels), args.format)
    return 0


def predict_with_gold(model, loaded, gold, output=None, quiet: bool = False,
                      batch_rows: int = DEFAULT_BATCH_ROWS) -> tuple:
    """``predict`` with gold labels (``engine.gold.GoldRequest``), batch by batch: each batch's
    predictions are written to ``output`` (when given; atomically) as they come, and the
    evaluation (``Evaluation``) and each hint's effect (``engine.train.HintEffects``) are
    accumulated from the batch's counts. Returns (rows, rows covered, the evaluation, the
    hint effects) — the same as ``evaluate`` and ``hint_effects`` on all rows at once."""
    from ..engine.io import atomic_path
    from ..engine.ledger import batch_gold
    from ..engine.train import HintEffects, _feature_table
    from ..engine.votes import vote_batches
    spec, source = model.spec, loaded.source
    labels = list(spec.labels)
    gold.check(source.schema, loaded.id_column, source.path)
    gold_of = batch_gold(gold, labels, source.path, loaded.id_column)
    evaluation, effects = Evaluation(labels), HintEffects(model)
    rows = covered = 0
    with (atomic_path(output) if output else contextlib.nullcontext()) as tmp, \
            progress_bar(source.num_rows, "predicting and scoring", not quiet) as advance:
        writer = None
        try:
            for batch in vote_batches(spec, source, loaded.id_column, columns=gold.columns, batch_rows=batch_rows,
                                      progress=advance):
                result = model.predict(batch.table, batch.votes)
                if tmp is not None:
                    table = prediction_table(batch.ids, result, labels)
                    writer = writer or pq.ParquetWriter(tmp, table.schema)
                    writer.write_table(table)
                known = gold_of(batch)
                evaluation.add(result, batch.votes, known)
                effects.add(_feature_table(spec, batch.table), result["covered"], known)
                rows += batch.num_rows
                covered += int(result["covered"].sum())
        finally:
            if writer is not None:
                writer.close()
        if not rows:
            raise DataError(f"{source.path}: the file has a header but no rows")
        gold_of.check(evaluation.counts["combined", "all"]["rows"])
    return rows, covered, evaluation.figures(), effects.result()


def print_scores(evaluation: dict, effects: list, labels, format: str) -> None:
    """predict's evaluation and hint effects, as a table or JSON on stdout."""
    for e in effects:
        e.pop("flipped_rows", None)
    if format == "json":
        dump_json({**evaluation, "hints": effects})
        return
    print_evaluation(evaluation, labels)
    if effects:
        print()
        print_hint_effects(effects)
