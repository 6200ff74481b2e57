"""label, explain, audit, verify and diff: every label traced to the spec line that made it."""
from __future__ import annotations

import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..compiler.checker import load_spec
from ..engine.diff import diff_revisions
from ..engine.explain import explain_row, format_explanation
from ..engine.report import MAX_ROWS
from ..engine.ledger import (check_spec_matches, duplicate_ids_warning, label_counts, label_data, open_ledger,
                             read_ledger)
from ..engine.verify import verify_ledger
from ..engine.datasets import open_source
from ..errors import DataError
from .common import (add_data_argument, add_data_options, add_engine_options, add_format_option, add_run_options,
                     add_spec_data_arguments, dump_json, engine_for, gold_request, load, load_model, print_table,
                     progress_bar, writes_parts)


def register(sub):
    p = sub.add_parser("label", help="label data with a spec and write the label ledger",
                       description="Apply the rules, fit the label model on their votes (the spec's confidence "
                                   "values are per-rule accuracy priors; gold labels, when given, sharpen it) and "
                                   "write the label ledger: per row the id, label, probability, the votes, each "
                                   "voting rule's log-odds contribution and what decided it. The file's metadata "
                                   "holds the spec hash and git commit, the data's sha256, the rules with their "
                                   "blame, and the label model's parameters. No timestamps: the same spec version, "
                                   "data and seed give a byte-identical file. The data is streamed in two passes "
                                   "(one with --model): the label model fits on the counts of distinct vote rows, "
                                   "then each batch's rows are written, so memory is bounded by the batch, not the "
                                   "file. The label model's kind, prior_strength and max_iter come from "
                                   "[label_model] in mteach.toml, as for train.")
    add_spec_data_arguments(p)
    p.add_argument("-o", "--output", required=True, metavar="LEDGER.parquet")
    add_data_options(p)
    p.add_argument("--seed", type=int, default=0, metavar="N", help="label model seed (default 0)")
    p.add_argument("--config", metavar="mteach.toml",
                   help="[label_model] settings (default: ./mteach.toml when present, else built-in defaults)")
    p.add_argument("--model", metavar="MODEL_DIR",
                   help="a model trained with `mteach train` on this spec version: its label model is used as "
                        "trained and its end model decides the rows no rule covers (default: fit the label "
                        "model here; uncovered rows get no label)")
    add_run_options(p, threads=True)
    add_engine_options(p, "the ledger is then a folder: a Parquet part per partition and _manifest.json, "
                          "written last; explain, audit and verify read the folder")
    p.set_defaults(run=cmd_label, output_kind="file")

    p = sub.add_parser("explain", help="why a row has its label, from the ledger alone",
                       description="Read the ledger (no re-run) and say why the row has its label: each rule "
                                   "that voted with file:line, source text, description, estimated accuracy, "
                                   "last change (git blame) and log-odds contribution, plus the class baseline.")
    p.add_argument("ledger", metavar="LEDGER")
    p.add_argument("--id", dest="row_id", required=True, metavar="ROW_ID",
                   help="the row's id in the ledger (an id on several rows: the first of them)")
    p.add_argument("--spec", metavar="SPEC", help="also check that the ledger was made from this spec version")
    add_format_option(p)
    p.set_defaults(run=cmd_explain)

    p = sub.add_parser("audit", help="write a self-contained HTML audit report beside a copy of the ledger",
                       description="Write REPORT_DIR/index.html (one offline file: inline CSS, SVG and a small "
                                   "script, nothing from the network) and a copy of the ledger: spec version and "
                                   "what the ledger's hash proves, a row browser (search by id or text, filter by "
                                   "label, rule, end model, conflict; each row's text, label, probability and the "
                                   "rules that voted, in words then numbers), rules with their owners from git "
                                   "blame (through the defines they read), coverage and accuracy per rule, label "
                                   "distribution, conflicts, gold agreement, the end model's part and a glossary.")
    p.add_argument("ledger", metavar="LEDGER")
    p.add_argument("-o", "--output", required=True, metavar="REPORT_DIR")
    p.add_argument("--rows", type=int, default=MAX_ROWS, metavar="N",
                   help=f"rows embedded in the row browser (default {MAX_ROWS:,}): all of them for a smaller "
                        "ledger, else a sample with every label, rule, conflict, end-model and weak decision; "
                        "`mteach explain` answers for any other row")
    p.add_argument("--spec", metavar="SPEC", help="also check that the ledger was made from this spec version")
    p.set_defaults(run=cmd_audit, output_kind="folder", output_writes=("index.html",))  # its ledger copy may be itself

    p = sub.add_parser("verify", help="re-run the recorded spec version and confirm the ledger",
                       description="Read the spec at the commit the ledger records (its folder, with used files "
                                   "and lexicons, from git), re-run it on the data with the label model the ledger "
                                   "records (its kind, prior_strength and max_iter) and compare with the ledger. "
                                   "Exit 0 when identical, 1 when anything differs (listed by row and rule). The data "
                                   "and the ledger are read batch by batch, in step (memory bounded by the batch): "
                                   "a first pass refits the label model on the counts of distinct vote rows, a "
                                   "second compares the rows.")
    p.add_argument("ledger", metavar="LEDGER")
    add_data_argument(p)
    p.add_argument("--spec", metavar="SPEC", help="verify against this spec file instead of git (for a "
                                                  "ledger made from uncommitted changes or outside git)")
    p.add_argument("--repo", metavar="DIR", help="the git repository (default: the one holding the spec)")
    p.add_argument("--limit", type=int, default=20, metavar="N", help="differences listed (default 20)")
    add_format_option(p)
    p.set_defaults(run=cmd_verify)

    p = sub.add_parser("diff", help="what changed between two git revisions of a spec, and which labels flip",
                       description="Rules added, removed and changed (by content: a rule that only moved is not "
                                   "changed) between two revisions, and the rows whose label flips, counted by "
                                   "the rule changes responsible, with a sample. Labels come from the label model "
                                   "of [label_model] in mteach.toml, as for label and train. The data is streamed "
                                   "twice (memory bounded by the batch): both revisions' label models fit on the "
                                   "counts of distinct vote rows, then the flipped rows are counted.")
    add_spec_data_arguments(p)
    p.add_argument("--from", dest="rev_from", required=True, metavar="REV")
    p.add_argument("--to", dest="rev_to", default="HEAD", metavar="REV", help="default HEAD")
    p.add_argument("--id", dest="id_column", metavar="COLUMN",
                   help="the data column that identifies a row (default: row numbers from 0)")
    p.add_argument("--seed", type=int, default=0, metavar="N")
    p.add_argument("--sample", type=int, default=10, metavar="N", help="flipped rows shown (default 10)")
    p.add_argument("--config", metavar="mteach.toml",
                   help="[label_model] settings (default: ./mteach.toml when present, else built-in defaults)")
    add_format_option(p)
    p.set_defaults(run=cmd_diff)


# -- label -------------------------------------------------------------------------------
def cmd_label(args) -> int:
    if args.threads < 1:
        raise DataError("--threads must be 1 or more")
    from .learn import settings_from
    settings = settings_from(args)
    loaded = load(args.spec, args.data, args.id_column)
    rows = loaded.source.num_rows
    passes = 1 if args.model else 2  # fit on vote counts, then write (on Dask too)
    with progress_bar(rows * passes if rows is not None else None,
                      "labelling" if passes == 1 else "labelling (2 passes: fit, write)", not args.quiet) as advance, \
            engine_for(args, args.threads) as engine, ThreadPoolExecutor(max_workers=1) as loader:
        model = None
        if args.model:  # loaded (scikit-learn imported, ~1.5 s) while the first batches' votes are computed
            model = loader.submit(load_model, args.model, args.spec, loaded.source.schema)
        ledger = label_data(loaded.spec, loaded.source, args.output, loaded.id_column,
                            gold=gold_request(args), seed=args.seed, threads=args.threads, progress=advance,
                            model=model, engine=engine, partitioned=writes_parts(args),
                            label_model_settings=settings.label_model)
    warning = duplicate_ids_warning(ledger)
    if warning:
        print(warning, file=sys.stderr)
    if not args.quiet:
        run = ledger.run
        git = run["git"]
        version = (f"commit {git['commit'][:10]}" if git["state"] == "clean" else
                   "uncommitted changes: no commit recorded" if git["state"] == "dirty" else "not in git")
        counts = label_counts(ledger)
        shown = ", ".join(f"{k} {v:,}" for k, v in counts.items())
        print(f"wrote {args.output}: {run['rows']:,} rows ({shown}); spec {run['spec_hash'][:12]} ({version})",
              file=sys.stderr)
    return 0


# -- explain -----------------------------------------------------------------------------
def _read(args):
    ledger = read_ledger(args.ledger)
    if getattr(args, "spec", None):
        check_spec_matches(ledger, load_spec(args.spec))
    return ledger


def cmd_explain(args) -> int:
    ledger = _read(args)
    e = explain_row(ledger, args.row_id)
    if args.format == "json":
        dump_json(e, out=sys.stdout)
    else:
        print(format_explanation(e))
    return 0


# -- audit -------------------------------------------------------------------------------
def cmd_audit(args) -> int:
    from ..engine.report import write_report
    if args.rows < 1:
        raise DataError(f"--rows must be 1 or more (got {args.rows})")
    ledger = _read(args)
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    index = write_report(ledger, out, args.rows)
    print(f"wrote {index} and {out / 'ledger.parquet'}", file=sys.stderr)
    return 0


# -- verify ------------------------------------------------------------------------------
def cmd_verify(args) -> int:
    ledger = open_ledger(args.ledger)  # its rows are read batch by batch, in step with the data
    if args.spec:
        spec = load_spec(args.spec, open_source(args.data).schema)  # a file or a Parquet dataset
        check_spec_matches(ledger, spec)
    result = verify_ledger(ledger, args.data, spec_path=args.spec, repo=args.repo, limit=args.limit)
    if args.format == "json":
        dump_json(result.to_dict(), out=sys.stdout)
    else:
        for note in result.notes:
            print(note)
        if result.identical:
            print(f"identical: the ledger is reproduced exactly ({result.rows:,} rows: votes, labels, "
                  f"probabilities, contributions and label model parameters)")
        else:
            if result.n_vote_differences or result.n_label_differences:
                print(f"DIFFERENT: {result.n_vote_differences:,} vote(s) and {result.n_label_differences:,} "
                      f"label(s) differ")
            else:
                print("DIFFERENT: see above")
            if result.vote_differences:
                print("\nvotes that differ (row, rule):")
                print_table(result.vote_differences, ["id", "rule", "recorded", "now"], out=sys.stdout)
            if result.label_differences:
                print("\nlabels that differ:")
                print_table(result.label_differences,
                            ["id", "recorded", "now", "recorded_probability", "now_probability"], out=sys.stdout)
    return 0 if result.identical else 1


# -- diff --------------------------------------------------------------------------------
def cmd_diff(args) -> int:
    from .learn import settings_from
    d = diff_revisions(args.spec, args.rev_from, args.rev_to, args.data, args.id_column,
                       seed=args.seed, sample=args.sample, label_model_settings=settings_from(args).label_model)
    if args.format == "json":
        dump_json(d, out=sys.stdout)
        return 0
    f, t = d["from"], d["to"]
    print(f"{d['spec']}: {f['rev']} ({f['commit'][:10]}, {f['rules']} rules) → {t['rev']} "
          f"({t['commit'][:10]}, {t['rules']} rules)")
    if d["labels_note"]:
        print(d["labels_note"])
    for title, items in (("added", d["added"]), ("removed", d["removed"])):
        for r in items:
            print(f"  {title:8} {r['rule']} (=> {r['label']}, {r['file']}:{r['line']}): {r['source']}")
    for c in d["changed"]:
        if c["before"]["source"] == c["after"]["source"]:
            print(f"  changed  {c['rule']} ({c['after']['file']}:{c['after']['line']}): same text, but a define, "
                  f"lexicon or used file it reads changed\n           {c['after']['source']}")
        else:
            print(f"  changed  {c['rule']} ({c['after']['file']}:{c['after']['line']})\n"
                  f"           before: {c['before']['source']}\n           after:  {c['after']['source']}")
    for r in d["renamed"]:
        print(f"  renamed  {r['from']} → {r['to']} (same content)")
    if not (d["added"] or d["removed"] or d["changed"] or d["renamed"]):
        print("  no rule changed in content (moves and comment edits do not count)")
    print(f"\n{d['flipped']:,} of {d['rows']:,} rows change label"
          + (": " + ", ".join(f"{k} {v:,}" for k, v in d["transitions"].items()) if d["transitions"] else ""))
    if d["flipped"]:
        rows = [c for c in d["by_rule_change"] if c["flipped_rows"]]
        if d["label_model_reweighting"]:
            rows.append({"rule": "(label model re-weighting only)", "change": "-",
                         "flipped_rows": d["label_model_reweighting"], "rows_voting_differently": None})
        print("\nflips by the rule change responsible (a row can count for several):")
        print_table(rows, ["rule", "change", "flipped_rows", "rows_voting_differently"],
                    right={"flipped_rows", "rows_voting_differently"}, out=sys.stdout)
        print(f"\nsample of flipped rows (id: from → to [responsible], text field {d['text_field']}):")
        for s in d["sample"]:
            text = (s["text"] or "").replace("\n", " ")
            text = text if len(text) <= 90 else text[:89] + "…"
            print(f"  {s['id']}: {s['from'] or 'none'} → {s['to'] or 'none'} [{', '.join(s['rules'])}] {text}")
    return 0
