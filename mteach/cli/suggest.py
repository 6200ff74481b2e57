"""suggest: where to teach next — rules to add, uncovered groups, rules to fix, rows to review."""
from __future__ import annotations

import sys

import numpy as np

from ..errors import DataError
from .common import (add_data_options, add_format_option, add_run_options, add_spec_data_arguments, dump_json,
                     load, votes_and_gold)
from .core import _one_line

# engine.suggest.KINDS, written out so `mteach --help` and `check` need no scipy (a test keeps them equal)
KINDS = ("rule", "group", "fix", "review")

HEADINGS = {"rule": "rules to add", "group": "groups of rows no rule covers", "fix": "rules to fix",
            "review": "rows to review next"}


def register(sub):
    p = sub.add_parser("suggest", help="where to teach next: rules to add, uncovered groups, fixes, rows to review",
                       description="Ranked suggestions with their evidence: candidate rules (a phrase, a word pair, "
                                   "a number threshold, or a threshold for the rest of the data "
                                   "unless the other labels' phrases, that separates one label, written as a "
                                   "spec line that passes `mteach check`, with estimated precision, interval, new "
                                   "rows and conflicts), groups of uncovered rows (size, distinctive words, "
                                   "examples), rules to fix (low estimated precision, conflicting pairs, and a rule "
                                   "for the rest rewritten with the phrases of the other labels' rules written "
                                   "since, as a line to put in its place) and rows "
                                   "worth labelling next. Precision comes from gold labels where rows have them, "
                                   "else from the label model on covered rows; with no rules and no gold, from the data's own "
                                   "structure — each "
                                   "suggestion says which.")
    add_spec_data_arguments(p)
    add_data_options(p)
    p.add_argument("-n", type=int, default=10, metavar="N", help="suggestions of each kind (default 10)")
    p.add_argument("--kind", default=",".join(KINDS), metavar="KINDS",
                   help=f"which kinds, comma-separated (default all: {','.join(KINDS)})")
    p.add_argument("--model", metavar="MODEL_DIR",
                   help="a model from `mteach train`: its end model's labels on rows no rule covers label the "
                        "groups and choose fixes and rows to review (not rule precision: it learned from covered "
                        "rows only)")
    p.add_argument("--seed", type=int, default=0, help="seed of the grouping and of ties (default 0)")
    add_format_option(p)
    add_run_options(p, quiet="no progress bar")
    p.set_defaults(run=cmd_suggest)


def cmd_suggest(args) -> int:
    from ..engine.suggest import SuggestData, suggest
    kinds = [k.strip() for k in args.kind.split(",") if k.strip()]
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise DataError(f"--kind: {bad[0] if bad else args.kind!r} is not a kind of suggestion "
                        f"(kinds: {', '.join(KINDS)})")
    if args.n < 1:
        raise DataError("-n must be 1 or more")
    loaded = load(args.spec, args.data, args.id_column)
    spec = loaded.spec
    # every column: suggestions look at fields no rule uses yet, and show example rows
    batch, gold = votes_and_gold(args, loaded, columns=loaded.source.schema.names, quiet=args.quiet)
    ids, votes, table = batch.ids, batch.votes, batch.table
    end_proba = None
    if args.model:
        from ..engine.train import load_model
        end_proba = load_model(args.model, schema=loaded.source.schema).end_model_proba(table)
    data = SuggestData(table, ids)
    found = suggest(spec, data, votes, gold=gold, end_proba=end_proba, n=args.n, kinds=kinds, seed=args.seed)
    if args.format == "json":
        dump_json([s.to_dict() for s in found])
        return 0
    print(_evidence_line(votes, gold, end_proba), file=sys.stderr)
    text = next((spec.column(n) for n, k in spec.field_kinds.items() if k == "text"), None)
    for kind in kinds:
        items = [s for s in found if s.kind == kind]
        print(f"\n{HEADINGS[kind]}:" + ("" if items else " none"))
        for number, s in enumerate(items, 1):
            print(f"{number:>3}. {s.title if s.replaces else s.spec_line or s.title}")
            for line in _details(s):
                print(f"     {line}")
            if text is not None and s.example_rows:
                value = table.column(text)[s.example_rows[0]].as_py()
                print(f"     e.g. {s.example_ids[0]}: {_one_line(value, 72)}")
    return 0


def _evidence_line(votes, gold, end_proba) -> str:
    covered = int((votes != -1).any(axis=1).sum()) if votes.size else 0
    parts = []
    if gold is not None and (gold != -1).any():
        parts.append(f"gold labels on {int((gold != -1).sum()):,} rows")
    if covered:
        parts.append(f"the label model on the votes ({covered:,} of {len(votes):,} rows covered)")
    if end_proba is not None:
        parts.append("the end model on uncovered rows (groups, fixes, review)")
    if not parts:
        return ("evidence: none yet (no rule votes and no gold labels) — suggestions come from the data's own "
                "structure: groups of rows and the phrases that mark them; precision is unknown")
    return "evidence: " + ", ".join(parts)


def _details(s) -> list:
    out = []
    if s.kind == "rule":
        if s.estimated_precision is None:
            out.append(f"precision unknown ({s.evidence})")
        else:
            lo, hi = s.precision_interval
            out.append(f"precision {s.estimated_precision:.2f} [{lo:.2f}, {hi:.2f}] from {s.precision_from} "
                       f"({s.evidence_rows:,.0f} {'row' if round(s.evidence_rows) == 1 else 'rows'})")
        out.append(f"+{s.new_rows:,} new rows → coverage {s.coverage_after:.1%}; "
                   f"{s.conflicts:,} {'row' if s.conflicts == 1 else 'rows'} where a rule votes another label")
    elif s.kind == "fix":
        if s.estimated_precision is not None:
            lo, hi = s.precision_interval
            out.append(f"precision {s.estimated_precision:.2f} [{lo:.2f}, {hi:.2f}] from {s.precision_from}")
        out.append(s.evidence)
        if s.replaces:
            out.append(f"in place of rule {s.replaces}: {s.spec_line}")
    elif s.kind == "group":
        out.append(f"examples: {', '.join(s.example_ids)}")
    return out
