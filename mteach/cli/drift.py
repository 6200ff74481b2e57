"""drift: is a deployed spec still doing on new data what it did on its reference data?"""
from __future__ import annotations

import sys

from .common import add_format_option, add_run_options, dump_json, print_table, progress_bar

EXIT_DRIFT = 3
# the files -o REPORT_DIR gets: engine.drift's QUEUE_FILE, REPORT_FILE, JSON_FILE, written out so
# `mteach --help` needs no scipy (a test keeps them equal)
WRITES = ("queue.csv", "index.html", "drift.json")


def register(sub):
    p = sub.add_parser("drift", help="compare new data with the reference: rule coverage, labels, fields, accuracy",
                       description="Stream the reference data the spec was built on and a new batch, then compare: "
                                   "each rule's coverage (chi-square / Fisher test, Cohen's h), the share of rows no "
                                   "rule covers and of conflicted rows, the label distribution (Jensen-Shannon), "
                                   "number fields and text lengths (Kolmogorov-Smirnov), unseen tokens and new "
                                   "frequent terms, and the accuracy estimated from the model's probabilities "
                                   "(calibrated by a temperature on the reference's gold labels, when given). "
                                   "p-values are Holm-adjusted together; a finding needs adjusted p < alpha and an "
                                   "effect past its threshold ([drift] in mteach.toml). Writes a spot-check queue "
                                   "(weighted toward drifted rules, uncovered and uncertain rows) for "
                                   "`mteach tui SPEC NEW --queue FILE`. Exit 0 no drift, 3 drift flagged, "
                                   "1 spec errors, 2 usage or data errors.")
    p.add_argument("spec", metavar="SPEC", help="the spec file (.mt)")
    p.add_argument("reference", metavar="REFERENCE", help="the data the spec was built on (.parquet, .csv, .jsonl)")
    p.add_argument("new", metavar="NEW", help="the new batch of data, with the same fields")
    p.add_argument("--model", metavar="MODEL_DIR",
                   help="a model trained on this spec version (refused otherwise): its labels and probabilities "
                        "are compared and scored (default: the label model fitted on the reference)")
    p.add_argument("--id", dest="id_column", metavar="COLUMN",
                   help="the column that identifies a row (default: row numbers from 0)")
    g = p.add_argument_group("gold labels (optional; the reference's calibrate the estimate, and the "
                                "measured accuracy is shown beside it)")
    g.add_argument("--gold", metavar="FILE", help="a file with columns id,label matched by --id in both data files")
    g.add_argument("--gold-column", metavar="COLUMN", help="a column of the data holding gold labels, where present")
    g.add_argument("--gold-map", metavar="MAP", help="with --gold-column: how its values map to labels, e.g. 1=SPAM,0=HAM")
    p.add_argument("-o", "--output", metavar="REPORT_DIR",
                   help="write REPORT_DIR/index.html (offline), queue.csv (the spot check) and drift.json")
    p.add_argument("--config", metavar="mteach.toml",
                   help="thresholds in [drift] and label model settings (default: ./mteach.toml when present)")
    add_format_option(p)
    add_run_options(p, threads=True, quiet="no progress bar")
    p.set_defaults(run=cmd_drift, output_kind="folder", output_writes=WRITES)


def cmd_drift(args) -> int:
    from ..engine.drift import drift, write_drift_report
    from ..errors import DataError
    from .common import gold_request
    from .learn import settings_from
    if args.threads < 1:
        raise DataError("--threads must be 1 or more")
    settings = settings_from(args)
    gold = gold_request(args)
    with progress_bar(None, "reading reference and new data", not args.quiet) as advance:
        report = drift(args.spec, args.reference, args.new, model=args.model, id_column=args.id_column,
                       gold=gold, settings=settings, threads=args.threads, progress=advance)
    paths = write_drift_report(report, args.output, args.id_column) if args.output else None
    if args.format == "json":
        dump_json(report.to_dict())
    else:
        print_drift(report)
    if paths:
        print(f"wrote {paths['report']}, {paths['queue']} ({len(report.queue)} rows to review) and {paths['json']}",
              file=sys.stderr)
    return EXIT_DRIFT if report.flagged else 0


def print_drift(report, out=None):
    out = out or sys.stdout
    r = report
    print(f"{r.new['path']} ({r.new['rows']:,} rows) against {r.reference['path']} ({r.reference['rows']:,} rows)",
          file=out)
    if r.flagged:
        print(f"DRIFT: {len(r.findings)} finding{'s' if len(r.findings) != 1 else ''}, most severe first", file=out)
        for i, f in enumerate(r.findings, 1):
            print(f"  {i}. {f}", file=out)
    else:
        print("no drift: no test crossed both thresholds", file=out)
    print("\nrules", file=out)
    rows = [{**e, "h": f"{e['effect']:+.2f}", "reference": f"{e['reference_coverage']:.1%}",
             "new": f"{e['new_coverage']:.1%}", "adj. p": f"{e['p_adjusted']:.2g}",
             "drift": "DRIFT" if e["flagged"] else ""} for e in r.rules]
    print_table(rows, ["rule", "label", "reference", "new", "h", "adj. p", "drift", "where"], out=out,
                right={"reference", "new", "h", "adj. p"})
    print("\nlabels", file=out)
    rows = []
    for name in ("label_model", "model"):
        shift = r.labels.get(name)
        if shift:
            shares = lambda side: ", ".join(f"{k} {v:.1%}" for k, v in shift[side].items() if v is not None)
            rows.append({"what": f"{name.replace('_', ' ')} labels ({shift['rows']})", "reference": shares("reference"),
                         "new": shares("new"), "effect": f"JS {shift['js_divergence'] or 0:.4f}",
                         "adj. p": f"{shift['p_adjusted']:.2g}", "drift": "DRIFT" if shift["flagged"] else ""})
    for s in (r.labels["uncovered"], r.labels["conflicted"]):
        rows.append({"what": f"{s['what']} rows", "reference": f"{s['reference']:.1%}", "new": f"{s['new']:.1%}",
                     "effect": f"h {s['effect']:+.2f}", "adj. p": f"{s['p_adjusted']:.2g}",
                     "drift": "DRIFT" if s["flagged"] else ""})
    print_table(rows, ["what", "reference", "new", "effect", "adj. p", "drift"], out=out)
    print("\nfields", file=out)
    rows = [{"field": f["field"], "compared": f["kind"], "reference median": f"{f['reference']['median']}",
             "new median": f"{f['new']['median']}", "KS D": f["statistic"], "adj. p": f"{f['p_adjusted']:.2g}",
             "drift": "DRIFT" if f["flagged"] else "",
             "unseen tokens": "" if f.get("unseen_token_share") is None else f"{f['unseen_token_share']:.1%}",
             "new terms": ", ".join(t["term"] for t in f.get("new_terms", [])[:5])} for f in r.fields]
    if rows:
        print_table(rows, list(rows[0]), out=out, right={"reference median", "new median", "KS D", "adj. p"})
    a = r.estimated_accuracy
    print(f"\naccuracy ({a['scorer']}, {a['rows']}):", file=out)
    for side in ("reference", "new"):
        s = a[side]
        line = f"  {side}: estimated {_pct(s['estimated'])} ({_pct(s['low'])}–{_pct(s['high'])})"
        if s["measured"] is not None:
            line += (f", measured {_pct(s['measured'])} ({_pct(s['measured_low'])}–{_pct(s['measured_high'])}, "
                     f"Wilson 95%) on {s['measured_rows']:,} gold rows")
        print(line, file=out)
    if a["reference_gap"] is not None:
        print(f"  on the reference, where gold is known, the estimate was {100 * abs(a['reference_gap']):.1f} points "
              f"{'below' if a['reference_gap'] < 0 else 'above'} the measured accuracy", file=out)
    cal = a["calibration"]
    print("  calibrated on " + (f"{cal['gold_rows']:,} gold rows of the reference (temperature {cal['temperature']:.2f})"
                                if cal["gold_rows"] else "nothing: the reference has no gold labels (give them to calibrate)"),
          file=out)
    print(f"  the estimate is only as good as the calibration: {a['note']}", file=out)
    sc = r.spot_check
    parts = ", ".join(f"{k} {v}" for k, v in sc["parts"].items())
    print(f"\nspot check: {sc['rows']} rows ({parts})" + (f" in {sc['queue']}" if sc["queue"] else
                                                           " (give -o REPORT_DIR to write the queue file)"), file=out)


def _pct(x) -> str:
    return "-" if x is None else f"{x:.1%}"
