"""check, apply, stats, rows and demo."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..compiler.checker import load_spec
from ..engine.analysis import StatsCounts, majority_vote, select_rows, wilson_interval
from ..engine.apply import apply_file
from ..engine.examples import run_examples
from ..engine.gold import gold_from_column, parse_mapping
from ..engine.io import open_data
from ..engine.votes import vote_batches
from ..errors import DataError, SpecError, did_you_mean
from ..examples import EXAMPLES, copy_example
from .common import (add_data_options, add_engine_options, add_format_option, add_run_options,
                     add_spec_data_arguments, clip, dump_json, engine_for, flow, gold_request, load,
                     print_table, progress_bar, terminal_width, writes_parts)


def register(sub):
    p = sub.add_parser("check", help="check specs for errors and run their examples",
                       description="Parse and check each spec (names, labels, regexes, lexicon files, and with "
                                   "--data the fields against the data's columns and types), then run its "
                                   "example lines. Every problem is reported as file:line:col. Exit 0 when "
                                   "clean, 1 on spec errors or failing examples, 2 on usage or data errors. "
                                   "Fit to run as a pre-commit hook: mteach check specs/*.mt")
    p.add_argument("specs", nargs="*", metavar="SPEC", help="spec files (.mt); default: [project] spec in mteach.toml")
    p.set_defaults(from_project=("specs",))
    p.add_argument("--data", metavar="FILE", help="check fields against this data file's schema")
    add_format_option(p)
    p.set_defaults(run=cmd_check)

    p = sub.add_parser("apply", help="apply a spec's rules to data and write the vote matrix",
                       description="Apply the rules to a Parquet, CSV or JSONL file, streamed in batches, and write "
                                   "the vote matrix (one int8 column per rule, -1 = abstain, else the label's "
                                   "index in the spec's labels line) with the row id to a Parquet file. The file's "
                                   "metadata holds the rules table (name, label, file, line, column, source text, "
                                   "description) and the spec's content hash.")
    add_spec_data_arguments(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT.parquet", help="where to write the votes")
    add_data_options(p, gold=False)
    p.add_argument("--batch-rows", type=int, default=65_536, metavar="N", help="rows per batch (default 65536)")
    add_run_options(p, threads=True)
    add_engine_options(p, "OUT is then a folder: a Parquet part per partition and _manifest.json, written last")
    p.set_defaults(run=cmd_apply, output_kind="file")

    p = sub.add_parser("stats", help="what each rule does: coverage, overlaps, conflicts, accuracy",
                       description="Per-rule polarity, coverage, overlaps and conflicts (Snorkel's definitions; "
                                   "denominators are all rows) and, with gold labels, correct / incorrect / "
                                   "accuracy and recall; then totals for the whole spec. The table fits the terminal "
                                   "($COLUMNS, else its width, else 80 columns): short headers, then clipped rule "
                                   "names, never a cut number; --format json has everything.")
    add_spec_data_arguments(p)
    add_data_options(p)
    add_format_option(p)
    add_run_options(p, quiet="no progress bar")
    add_engine_options(p)
    p.set_defaults(run=cmd_stats)

    p = sub.add_parser("rows", help="list rows by what the rules do: uncovered, conflicted, a rule's, wrong",
                       description="The rows an expert looks at next: those no rule covers, those where rules "
                                   "conflict, those a rule votes on, those the rules' majority vote gives a label, "
                                   "or (with gold labels) those the rules get wrong. Each row shows its id, the "
                                   "rules' verdict, the rules that fired and the text of the spec's first text field, "
                                   "clipped with … to fit the terminal ($COLUMNS, else its width, else 80 "
                                   "columns); ids are never cut. Without gold labels the data is streamed and only "
                                   "the rows shown are kept.")
    add_spec_data_arguments(p)
    add_data_options(p)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--uncovered", dest="mode", action="store_const", const="uncovered", help="no rule votes")
    which.add_argument("--conflicted", dest="mode", action="store_const", const="conflicted",
                       help="rules vote different labels")
    which.add_argument("--rule", metavar="NAME", help="the rows this rule votes on")
    which.add_argument("--label", metavar="LABEL", help="the rows the rules' majority vote gives LABEL")
    which.add_argument("--wrong", dest="mode", action="store_const", const="wrong",
                       help="the rows whose majority vote disagrees with gold (needs gold labels)")
    p.add_argument("--limit", type=int, default=20, metavar="N", help="rows shown (default 20; 0 = all)")
    add_format_option(p)
    add_run_options(p, quiet="no progress bar")
    p.set_defaults(run=cmd_rows, mode="all")

    p = sub.add_parser("demo", help="run a bundled example end to end in a project folder of its own",
                       description="Write a bundled example's project folder (mteach.toml, the spec, its lexicons, "
                                   "the data) and run it: check → apply → stats on the training data and on the "
                                   "held-out file → train → evaluate on the held-out file (accuracy and F1 of "
                                   "label model, end model and both, next to majority vote). Every verb then works "
                                   "inside the folder with no paths (`cd DIR && mteach stats`). Files already in "
                                   "the folder are kept, so your edits survive a re-run. Examples: youtube "
                                   "(comment spam: text rules) and cancer (breast-cancer biopsies: numeric "
                                   "thresholds on tabular data).")
    p.add_argument("--example", choices=tuple(EXAMPLES), default="youtube",
                   help="which example (default youtube)")
    p.add_argument("--out", metavar="DIR",
                   help="the project folder (default ./mteach-demo, or ./mteach-demo-EXAMPLE for the others)")
    p.set_defaults(run=cmd_demo)


# -- check -------------------------------------------------------------------------------
def cmd_check(args) -> int:
    schema = open_data(args.data).schema if args.data else None
    worst, report = 0, []
    for path in args.specs:
        try:
            spec = load_spec(path, schema)
        except SpecError as err:
            report.append({"spec": path, "ok": False, "diagnostics": [d.to_dict() for d in err.diagnostics]})
            if args.format == "table":
                print(err.format(), file=sys.stderr)
            worst = max(worst, 1)
            continue
        passed, failures = run_examples(spec)
        diagnostics = spec.warnings + failures
        report.append({"spec": path, "ok": not failures, "rules": len(spec.rules), "hints": len(spec.hints),
                       "examples": len(spec.examples), "examples_passed": passed, "spec_hash": spec.content_hash,
                       "diagnostics": [d.to_dict() for d in diagnostics]})
        if args.format == "table":
            for d in diagnostics:
                print(d.format(spec.sources), file=sys.stderr)
            verdict = "ok" if not failures else f"{len(failures)} example(s) fail"
            print(f"{path}: {verdict} — {len(spec.rules)} rules, {len(spec.hints)} hints, "
                  f"{passed}/{len(spec.examples)} examples pass")
        if failures:
            worst = max(worst, 1)
    if args.format == "json":
        dump_json(report)
    return worst


# -- apply -------------------------------------------------------------------------------
def cmd_apply(args) -> int:
    loaded = load(args.spec, args.data, args.id_column)
    if args.batch_rows < 1 or args.threads < 1:
        raise DataError("--batch-rows and --threads must be 1 or more")
    with progress_bar(loaded.source.num_rows, "applying rules", not args.quiet) as advance, \
            engine_for(args, args.threads) as engine:
        result = apply_file(loaded.spec, loaded.source, args.output, loaded.id_column,
                            batch_rows=args.batch_rows, threads=args.threads, progress=advance, engine=engine,
                            partitioned=writes_parts(args))
    if not args.quiet:
        covered = ", ".join(f"{n} {c:,}" for n, c in zip(result.rules, result.coverage))
        print(f"wrote {result.output}: {result.rows:,} rows × {len(result.rules)} rules ({covered})", file=sys.stderr)
    return 0


# -- stats -------------------------------------------------------------------------------
def compute_stats(args):
    """The spec, its per-rule table and summary, counted batch by batch (``StatsCounts``):
    memory follows a batch, not the data, with or without gold."""
    from ..engine.ledger import batch_gold
    loaded = load(args.spec, args.data, args.id_column)
    spec = loaded.spec
    request = gold_request(args)
    request.check(loaded.source.schema, loaded.id_column, loaded.source.path)
    gold_of = batch_gold(request, spec.labels, loaded.source.path, loaded.id_column)
    counts = StatsCounts(len(spec.rules), list(spec.labels), bool(request))
    with progress_bar(loaded.source.num_rows, "applying rules", not getattr(args, "quiet", False)) as advance, \
            engine_for(args) as engine:
        for batch in vote_batches(spec, loaded.source, loaded.id_column, columns=request.columns, progress=advance,
                                  engine=engine, rule_columns=False):
            counts.add(batch.votes, gold_of(batch))
    if counts.totals[0] == 0:
        raise DataError(f"{loaded.source.path}: the file has a header but no rows")
    gold_of.check(int(counts.totals[4]) if request else None)
    return spec, counts.rules(spec.rule_names, [r.rule.label for r in spec.rules]), counts.summary()


def interval_text(low, high) -> str:
    """'0.912–0.981', or '' when there is no interval (no gold rows)."""
    if low is None or high is None or low != low or high != high:
        return ""
    return f"{low:.3f}–{high:.3f}"


STATS_SHORT = {"coverage": "cov", "overlaps": "ovl", "conflicts": "cnf", "correct": "ok", "incorrect": "bad",
               "accuracy": "acc", "recall": "rec"}


def print_stats(spec, table, summary, out=None, width=None):
    """The rules' table and the summary, fit to ``width`` columns (default: the terminal's):
    short headers, then clipped rule names and places, never a cut number."""
    out = out or sys.stdout
    width = width or terminal_width()
    rows = table.to_pylist()
    for r, row in zip(spec.rules, rows):
        row["where"] = f"{r.rule.span.file}:{r.rule.span.line}"
    columns = ["rule", "label", "coverage", "overlaps", "conflicts"]
    if "accuracy" in table.column_names:
        columns += ["correct", "incorrect", "accuracy", "interval", "recall"]
        for row in rows:
            row["interval"] = interval_text(row["accuracy_low"], row["accuracy_high"])
    shortened = print_table(rows, columns + ["where"], out=out, width=width, short=STATS_SHORT,
                            shrink={"where": 12, "rule": 8}, keep_end={"where"},
                            right={"coverage", "overlaps", "conflicts", "correct", "incorrect", "accuracy",
                                   "interval", "recall"})
    if shortened:
        print(flow([f"{short} {name}," for name, short in STATS_SHORT.items() if name in columns], width)
              .rstrip(","), file=out)
    if "accuracy" in table.column_names:
        print(flow(["accuracy: the share of the rule's votes on gold rows that are right",
                    "(of correct + incorrect);", "interval: its 95% Wilson interval"], width), file=out)
    n = max(summary.rows, 1)
    print("\n" + flow([f"{summary.rows:,} rows: {summary.covered:,} covered ({summary.covered / n:.1%}),",
                       f"{summary.rows - summary.covered:,} uncovered,",
                       f"{summary.conflicted:,} with conflicting votes ({summary.conflicted / n:.1%}),",
                       f"{summary.overlapped:,} with two or more votes"], width), file=out)
    if summary.gold_rows:
        acc = summary.mv_correct / summary.mv_decided if summary.mv_decided else float("nan")
        low, high = wilson_interval(summary.mv_correct, summary.mv_decided)
        print(flow([f"gold: {summary.gold_rows:,} rows;", "majority vote of the rules",
                    f"decides {summary.mv_decided:,} of them", f"with accuracy {acc:.1%}",
                    f"(95% Wilson interval {low:.1%}–{high:.1%})"], width), file=out)
        print_table(summary.per_class, ["label", "gold", "predicted", "precision", "recall"], out=out,
                    right={"gold", "predicted", "precision", "recall"})


def cmd_stats(args) -> int:
    spec, table, summary = compute_stats(args)
    if args.format == "json":
        low, high = wilson_interval(summary.mv_correct, summary.mv_decided)
        dump_json({"spec": str(spec.path), "spec_hash": spec.content_hash, "rules": table.to_pylist(),
                   "summary": {**summary.to_dict(), "mv_accuracy_low": low, "mv_accuracy_high": high}})
    else:
        print_stats(spec, table, summary)
    return 0


# -- rows --------------------------------------------------------------------------------
def _matching_rows(spec, batch, gold, mode, rule, label, text_column, keep) -> tuple:
    """(how many rows of ``batch`` match, the first ``keep`` of them — all when None — as dicts)."""
    ids, votes = batch.ids, batch.votes
    labels = list(spec.labels)
    verdict = majority_vote(votes, len(labels))
    rows = np.flatnonzero(select_rows(votes, mode, rule=rule, label=label, verdict=verdict, gold=gold))
    shown = rows if keep is None else rows[:keep]
    texts = (batch.table.column(text_column).take(pa.array(shown)).to_pylist()
             if text_column and len(shown) else [None] * len(shown))
    out = []
    for i, text in zip(shown, texts):
        fired = [f"{spec.rule_names[j]}=>{labels[votes[i, j]]}" for j in np.flatnonzero(votes[i] != -1)]
        row = {"id": str(ids[int(i)].as_py()), "verdict": labels[verdict[i]] if verdict[i] >= 0 else "-",
               "rules": fired, "text": text}
        if gold is not None:
            row["gold"] = labels[gold[i]] if gold[i] >= 0 else "-"
        out.append(row)
    return int(len(rows)), out


def cmd_rows(args) -> int:
    """The matching rows, batch by batch: only the rows it prints are kept, gold or not."""
    from ..engine.ledger import batch_gold
    loaded = load(args.spec, args.data, args.id_column)
    spec = loaded.spec
    text_fields = spec.text_fields
    text_column = spec.column(text_fields[0]) if text_fields else None
    request = gold_request(args)
    request.check(loaded.source.schema, loaded.id_column, loaded.source.path)
    labels = list(spec.labels)
    mode, rule, label = args.mode, None, None
    if args.rule is not None:
        if args.rule not in spec.rule_names:
            raise DataError(f"no rule {args.rule!r} in {spec.path}{did_you_mean(args.rule, spec.rule_names)}")
        mode, rule = "rule", spec.rule_names.index(args.rule)
    if args.label is not None:
        if args.label not in labels:
            raise DataError(f"no label {args.label!r} in {spec.path}{did_you_mean(args.label, labels)}")
        mode, label = "label", labels.index(args.label)
    if mode == "wrong" and not request:
        raise DataError("--wrong compares with gold labels: give --gold FILE or --gold-column COLUMN")
    gold_of = batch_gold(request, labels, loaded.source.path, loaded.id_column)
    columns = ((text_column,) if text_column else ()) + tuple(c for c in request.columns if c != text_column)
    matched, total, known, out = 0, 0, 0, []
    with progress_bar(loaded.source.num_rows, "applying rules", not args.quiet) as advance:
        for batch in vote_batches(spec, loaded.source, loaded.id_column, columns=columns, progress=advance):
            gold = gold_of(batch)
            if request and gold is None:
                gold = np.full(batch.num_rows, -1, np.int64)
            room = None if args.limit <= 0 else max(args.limit - len(out), 0)
            count, shown = _matching_rows(spec, batch, gold, mode, rule, label, text_column, room)
            matched, total = matched + count, total + batch.num_rows
            known += 0 if gold is None else int((gold >= 0).sum())
            out.extend(shown)
    if not total:
        raise DataError(f"{loaded.source.path}: the file has a header but no rows")
    gold_of.check(known if request else None)
    if args.format == "json":
        dump_json({"rows": int(matched), "shown": out})
        return 0
    print(f"{matched:,} of {total:,} rows" + (f"; the first {len(out):,}:" if len(out) < matched else ":"))
    for row in out:
        row["rules"] = ", ".join(row["rules"]) or "-"
        row["text"] = _one_line(row["text"], 70)
    # at the terminal's width the text gives way first, then the rules; never the id (explain takes it)
    print_table(out, ["id", "verdict"] + (["gold"] if request else []) + ["rules", "text"],
                width=terminal_width(), shrink={"text": 12, "rules": 10})
    return 0


def _one_line(text, width: int) -> str:
    if text is None:
        return "(missing)"
    return clip(" ".join(text.split()), width)


# -- demo --------------------------------------------------------------------------------
def bundled_paths(example: str, out: Path):
    """Write the bundled example's project folder into ``out``; (spec, train, test) paths there."""
    ex = EXAMPLES[example]
    for kept in copy_example(example, out):
        print(f"note: kept your {kept} (it differs from the bundled file)", file=sys.stderr)
    return ex, out / ex.spec, out / ex.train, out / ex.test


def cmd_demo(args) -> int:
    import argparse
    out = Path(args.out or ("mteach-demo" if args.example == "youtube" else f"mteach-demo-{args.example}"))
    try:
        out.mkdir(parents=True, exist_ok=True)
        ex, spec_path, train, test = bundled_paths(args.example, out)
    except OSError as err:
        raise DataError(f"{out}: cannot write the demo's project folder there ({err.strerror}); "
                        "give another with --out DIR") from None
    print(f"mteach demo — {ex.title}\n  project folder: {out}  (mteach.toml, {ex.spec}, {Path(ex.train).parent}/)\n"
          f"  train: {ex.train}\n  test:  {ex.test}\n")

    print("1. check the spec and run its examples")
    spec = load_spec(spec_path, open_data(train).schema)
    passed, failures = run_examples(spec)
    for d in failures:
        print(d.format(spec.sources), file=sys.stderr)
    print(f"   {len(spec.rules)} rules, {len(spec.hints)} hints, {passed}/{len(spec.examples)} examples pass\n")
    if failures:
        return 1

    print(f"2. apply the rules to the training {ex.row_word}")
    votes_path = out / "train_votes.parquet"
    result = apply_file(spec, train, votes_path, ex.id_column)
    print(f"   wrote {votes_path}: {result.rows:,} rows × {len(result.rules)} rules\n")

    gold_args = dict(id_column=ex.id_column, gold=None, gold_column=ex.gold_column, gold_map=ex.gold_map, quiet=True)
    for title, data in ((f"3. what each rule does on the training {ex.row_word} (gold: {ex.gold_column})", train),
                        (f"4. the same rules on the held-out {ex.test_name}", test)):
        print(title)
        spec_, table, summary = compute_stats(argparse.Namespace(spec=spec_path, data=data, **gold_args))
        print_stats(spec_, table, summary)
        print()

    from ..engine.train import save_model, train as train_models
    from ..settings import load_settings
    from .learn import evaluate, print_evaluation
    print("5. train: label model on the rules' votes, end model on its soft labels, hints as penalties")
    model, report = train_models(spec, open_data(train).read_all(), load_settings(out / "mteach.toml"),
                                 log=lambda m: print(f"   {m}"))
    save_model(model, out / "model", report, data=train)
    print(f"   wrote {out / 'model'}\n")

    print(f"6. evaluate on the held-out {ex.test_name} against its gold labels")
    test_table = open_data(test).read_all()
    votes = model.votes(test_table)
    result = model.predict(test_table, votes)
    labels = list(spec.labels)
    gold = gold_from_column(test_table, ex.gold_column, parse_mapping(ex.gold_map, labels), labels, str(test))
    positive = labels.index(ex.positive)
    ev = evaluate(result, votes, gold, labels, positive=positive)
    print_evaluation(ev, labels, positive=positive)

    lm, mv = ev["label_model"]["covered"], ev["majority_vote"]["all"]
    comb, uncovered = ev["combined"]["all"], ev["end_model"]["uncovered"]
    covered, n = int(result["covered"].sum()), len(gold)
    print(f"\nIn short, on the {n:,} held-out {ex.row_word}:")
    print(f"  rules: they label {covered:,} ({covered / n:.0%}); where they vote, combined by the label model, "
          f"{lm['accuracy']:.1%} are right.")
    print(f"  model: the end model, trained on the rules' labels, labels the other {n - covered:,} too "
          f"({uncovered['accuracy'] or 0:.0%} of them right): {comb['accuracy']:.1%} right in all "
          f"(F1 of {ex.positive} {comb['f1']:.3f}), vs {mv['accuracy']:.1%} for the rules' majority vote with guesses.")
    print("  next:  look at the rows no rule covers, write a rule for them, and see what it does:")
    print(f"\n  cd {out}")
    print("  mteach rows --uncovered     # the rows no rule covers yet")
    print(f"  mteach stats                # each rule's coverage, overlaps, conflicts, after you edit {ex.spec}")
    print("  mteach tui                  # the studio: edit the spec and watch all of that as you type")
    return 0
