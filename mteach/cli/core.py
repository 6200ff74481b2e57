"""check, apply, stats, rows and demo."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..compiler.checker import load_spec
from ..engine.analysis import majority_vote, rule_stats, select_rows, summarize
from ..engine.apply import apply_file
from ..engine.examples import run_examples
from ..engine.gold import gold_from_column
from ..engine.io import open_data
from ..errors import DataError, SpecError, did_you_mean
from .common import (add_data_options, add_format_option, add_run_options, add_spec_data_arguments, dump_json,
                     gold_for, load, print_table, progress_bar, votes_in_memory)


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
    p.set_defaults(run=cmd_apply)

    p = sub.add_parser("stats", help="what each rule does: coverage, overlaps, conflicts, accuracy",
                       description="Per-rule polarity, coverage, overlaps and conflicts (Snorkel's definitions; "
                                   "denominators are all rows) and, with gold labels, correct / incorrect / "
                                   "accuracy and recall; then totals for the whole spec.")
    add_spec_data_arguments(p)
    add_data_options(p)
    add_format_option(p)
    add_run_options(p, quiet="no progress bar")
    p.set_defaults(run=cmd_stats)

    p = sub.add_parser("rows", help="list rows by what the rules do: uncovered, conflicted, a rule's, wrong",
                       description="The rows an expert looks at next: those no rule covers, those where rules "
                                   "conflict, those a rule votes on, those the rules' majority vote gives a label, "
                                   "or (with gold labels) those the rules get wrong. Each row shows its id, the "
                                   "rules' verdict, the rules that fired and the text of the spec's first text field.")
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

    p = sub.add_parser("demo", help="run the bundled YouTube spam example end to end",
                       description="check → apply → stats on the bundled YouTube comments (train: files 01-04, "
                                   "evaluation: file 05) → train → evaluate on file 05, printing label model "
                                   "and end model accuracy next to majority vote.")
    p.add_argument("--out", default="mteach-demo", metavar="DIR", help="where to write outputs (default ./mteach-demo)")
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
    with progress_bar(loaded.source.num_rows, "applying rules", not args.quiet) as advance:
        result = apply_file(loaded.spec, args.data, args.output, loaded.id_column,
                            batch_rows=args.batch_rows, threads=args.threads, progress=advance)
    if not args.quiet:
        covered = ", ".join(f"{n} {c:,}" for n, c in zip(result.rules, result.coverage))
        print(f"wrote {result.output}: {result.rows:,} rows × {len(result.rules)} rules ({covered})", file=sys.stderr)
    return 0


# -- stats -------------------------------------------------------------------------------
def compute_stats(args):
    loaded = load(args.spec, args.data, args.id_column)
    ids, votes = votes_in_memory(loaded, quiet=getattr(args, "quiet", False))
    gold = gold_for(args, loaded, ids)
    spec = loaded.spec
    table = rule_stats(votes, spec.rule_names, [r.rule.label for r in spec.rules], list(spec.labels), gold)
    return spec, table, summarize(votes, list(spec.labels), gold)


def interval_text(low, high) -> str:
    """'0.912–0.981', or '' when there is no interval (no gold rows)."""
    if low is None or high is None or low != low or high != high:
        return ""
    return f"{low:.3f}–{high:.3f}"


def print_stats(spec, table, summary, out=None):
    out = out or sys.stdout
    rows = table.to_pylist()
    for r, row in zip(spec.rules, rows):
        row["where"] = f"{r.rule.span.file}:{r.rule.span.line}"
    columns = ["rule", "label", "coverage", "overlaps", "conflicts"]
    if "accuracy" in table.column_names:
        columns += ["correct", "incorrect", "accuracy", "interval", "recall"]
        for row in rows:
            row["interval"] = interval_text(row["accuracy_low"], row["accuracy_high"])
    print_table(rows, columns + ["where"], out=out,
                right={"coverage", "overlaps", "conflicts", "correct", "incorrect", "accuracy", "interval", "recall"})
    if "accuracy" in table.column_names:
        print("accuracy: the share of the rule's votes on gold rows that are right (of correct + incorrect); "
              "interval: its 95% Wilson interval", file=out)
    n = max(summary.rows, 1)
    print(f"\n{summary.rows:,} rows: {summary.covered:,} covered ({summary.covered / n:.1%}), "
          f"{summary.rows - summary.covered:,} uncovered, {summary.conflicted:,} with conflicting votes "
          f"({summary.conflicted / n:.1%}), {summary.overlapped:,} with two or more votes", file=out)
    if summary.gold_rows:
        acc = summary.mv_correct / summary.mv_decided if summary.mv_decided else float("nan")
        print(f"gold: {summary.gold_rows:,} rows; majority vote of the rules decides {summary.mv_decided:,} "
              f"of them with accuracy {acc:.1%}", file=out)
        print_table(summary.per_class, ["label", "gold", "predicted", "precision", "recall"], out=out,
                    right={"gold", "predicted", "precision", "recall"})


def cmd_stats(args) -> int:
    spec, table, summary = compute_stats(args)
    if args.format == "json":
        dump_json({"spec": str(spec.path), "spec_hash": spec.content_hash, "rules": table.to_pylist(),
                   "summary": summary.to_dict()})
    else:
        print_stats(spec, table, summary)
    return 0


# -- rows --------------------------------------------------------------------------------
def cmd_rows(args) -> int:
    loaded = load(args.spec, args.data, args.id_column)
    spec = loaded.spec
    ids, votes = votes_in_memory(loaded, quiet=args.quiet)
    gold = gold_for(args, loaded, ids)
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
    if mode == "wrong" and gold is None:
        raise DataError("--wrong compares with gold labels: give --gold FILE or --gold-column COLUMN")
    verdict = majority_vote(votes, len(labels))
    rows = np.flatnonzero(select_rows(votes, mode, rule=rule, label=label, verdict=verdict, gold=gold))
    shown = rows if args.limit <= 0 else rows[:args.limit]
    text_fields = [n for n, k in spec.field_kinds.items() if k == "text"]
    texts = (loaded.source.read_all([spec.column(text_fields[0])]).column(0).take(pa.array(shown)).to_pylist()
             if text_fields and len(shown) else [None] * len(shown))
    out = []
    for i, text in zip(shown, texts):
        fired = [f"{spec.rule_names[j]}=>{labels[votes[i, j]]}" for j in np.flatnonzero(votes[i] != -1)]
        row = {"id": str(ids[int(i)].as_py()), "verdict": labels[verdict[i]] if verdict[i] >= 0 else "-",
               "rules": fired, "text": text}
        if gold is not None:
            row["gold"] = labels[gold[i]] if gold[i] >= 0 else "-"
        out.append(row)
    if args.format == "json":
        dump_json({"rows": int(len(rows)), "shown": out})
        return 0
    print(f"{len(rows):,} of {len(votes):,} rows" + (f"; the first {len(shown):,}:" if len(shown) < len(rows) else ":"))
    for row in out:
        row["rules"] = ", ".join(row["rules"]) or "-"
        row["text"] = _one_line(row["text"], 70)
    print_table(out, ["id", "verdict"] + (["gold"] if gold is not None else []) + ["rules", "text"])
    return 0


def _one_line(text, width: int) -> str:
    if text is None:
        return "(missing)"
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"


# -- demo --------------------------------------------------------------------------------
def bundled_paths():
    """The example spec and data of a source checkout."""
    root = Path(__file__).resolve().parents[2]
    spec = root / "specs" / "youtube_spam.mt"
    train, test = root / "data" / "youtube" / "train.csv", root / "data" / "youtube" / "test.csv"
    for p in (spec, train, test):
        if not p.exists():
            raise DataError(f"the demo needs a source checkout of mteach: {p} is missing "
                            "(install with `pip install -e .` from the repository)")
    return spec, train, test


def cmd_demo(args) -> int:
    import argparse
    spec_path, train, test = bundled_paths()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"mteach demo — YouTube comment spam\n  spec: {spec_path}\n  train: {train}\n  test:  {test}\n")

    print("1. check the spec and run its examples")
    spec = load_spec(spec_path, open_data(train).schema)
    passed, failures = run_examples(spec)
    for d in failures:
        print(d.format(spec.sources), file=sys.stderr)
    print(f"   {len(spec.rules)} rules, {len(spec.hints)} hints, {passed}/{len(spec.examples)} examples pass\n")
    if failures:
        return 1

    print("2. apply the rules to the training comments")
    votes_path = out / "train_votes.parquet"
    result = apply_file(spec, train, votes_path, "COMMENT_ID")
    print(f"   wrote {votes_path}: {result.rows:,} rows × {len(result.rules)} rules\n")

    gold_args = dict(id_column="COMMENT_ID", gold=None, gold_column="CLASS", gold_map="1=SPAM,0=HAM", quiet=True)
    for title, data in (("3. what each rule does on the training comments (gold: CLASS)", train),
                        ("4. the same rules on the held-out file 05 (Shakira)", test)):
        print(title)
        spec_, table, summary = compute_stats(argparse.Namespace(spec=spec_path, data=data, **gold_args))
        print_stats(spec_, table, summary)
        print()

    from ..engine.train import save_model, train as train_models
    from ..settings import load_settings
    from .learn import evaluate, print_evaluation
    print("5. train: label model on the rules' votes, end model on its soft labels, hints as penalties")
    train_table = open_data(train).read_all()
    model, report = train_models(spec, train_table, load_settings(None),
                          log=lambda m: print(f"   {m}"))
    save_model(model, out / "model", report)
    print(f"   wrote {out / 'model'}\n")

    print("6. evaluate on the held-out file 05 against its gold labels")
    test_table = open_data(test).read_all()
    votes = model.votes(test_table)
    result = model.predict(test_table, votes)
    gold = gold_from_column(test_table, "CLASS", {"1": "SPAM", "0": "HAM"}, list(spec.labels), str(test))
    print_evaluation(evaluate(result, votes, gold, list(spec.labels)), list(spec.labels))
    print(f"\nnext: edit {spec_path.name} and re-run `mteach stats`, or open it in `mteach tui`.")
    return 0
