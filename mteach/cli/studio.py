"""tui: the teaching studio (Textual). textual is imported only when the verb runs."""
from __future__ import annotations


def register(sub):
    from .common import add_data_options, add_spec_data_arguments
    p = sub.add_parser("tui", help="the teaching studio: edit the spec, watch coverage, browse and label rows",
                       description="A terminal app: edit the spec with live diagnostics; see each rule's coverage, "
                                   "overlaps, conflicts and (with gold) accuracy, refreshed as you type; browse rows "
                                   "by rule, conflict, label or text; review a sample and record gold labels in "
                                   "<spec>.gold.csv beside the spec (appended and synced per label). F1 for keys.")
    add_spec_data_arguments(p)
    add_data_options(p)
    p.add_argument("--reviewer", metavar="NAME", help="name written with each reviewed label (default: $USER)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the review sample (default 0)")
    p.add_argument("--queue", metavar="FILE", help="open review mode on exactly the rows of this queue file "
                                                   "(an id column, e.g. the spot check `mteach drift -o` writes), "
                                                   "in its order")
    p.add_argument("--max-rows", type=_row_count, default=None, metavar="N",
                   help="hold at most N rows: past that, a random sample of N (seeded by --seed) plus every reviewed, "
                        "queued and gold row; 0 = every row (default 1,000,000)")
    p.set_defaults(run=cmd_tui)


def _row_count(text: str) -> int:
    import argparse
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of rows (0 for every row)")
    return n


def cmd_tui(args) -> int:
    from ..tui.session import DEFAULT_MAX_ROWS, Session
    max_rows = DEFAULT_MAX_ROWS if args.max_rows is None else args.max_rows
    session = Session.open(args.spec, args.data, id_column=args.id_column, gold=args.gold,
                           gold_column=args.gold_column, gold_map=args.gold_map,
                           reviewer=args.reviewer, seed=args.seed, queue=args.queue, max_rows=max_rows)  # DataError: exit 2 before the app starts
    from ..tui.app import StudioApp
    StudioApp(session).run()
    return 0
