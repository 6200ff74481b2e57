"""`mteach drift` on known cases built from the YouTube files, and its streaming cost.

    python bench/drift.py [--data /work/shared/data/youtube] [--rows 1000000] [--splits 20] [--skip-model]
                          [--skip-speed]

Cases (the spec is specs/youtube_spam.mt; gold = each file's CLASS column, used only to score):
  no drift       the five files pooled and split in random halves, --splits times: runs flagged
                 (false-alarm rate, goal <= 5%)
  natural        reference = files 01-03, new = 04, and new = 05
  obfuscated     reference = 01-04, new = 05 with its links written 'example dot com', spaces in URLs:
                 the link rule's collapse must be the first finding
  new tactic     reference = 01-04, new = 05 plus 80 spam comments of a tactic no rule knows
For each new set: estimated vs actual accuracy (label model on covered rows; with a model trained on
the reference, on all rows; goal within 3 points), and the spot check: the queue's uniform part
labelled with the true labels, its Wilson 95% interval, and whether it covers the actual accuracy.
Speed: drift over --rows new rows (the train comments replicated, as the apply benches use) against
the train file, next to `apply` on the same rows, each in a fresh process: seconds and peak RSS.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, SPEC, machine, replicated_parquet  # noqa: E402

sys.path.insert(0, str(ROOT))
from mteach.engine.analysis import wilson_interval  # noqa: E402
from mteach.engine.drift import drift  # noqa: E402
from mteach.engine.gold import GoldRequest  # noqa: E402

GOLD = GoldRequest(column="CLASS", mapping="1=SPAM,0=HAM")
URL = re.compile(r"(https?://)?(www\.)?([\w-]+)\.(com|net|org|ly|tk|info|biz|gl|be)\b([^\s<>\"]*)", re.I)
NEW_TACTIC = [  # no rule knows these: no link, no "check out", no subscribe, no money words
    "DM me on telegram @{name} for the {thing} nobody talks about",
    "{Name} here, whatsapp me +44 7{n} and I will send you the {thing}",
    "text {Name} on kik {name}{n} if you want the {thing} tonight",
    "add my snapchat {name}{n} for exclusive {thing} pics",
]
NAMES = ["jenny", "mike", "crypto_king", "lola", "vip_sara", "dan", "bella", "max"]
THINGS = ["secret method", "private group", "leaked album", "signals", "promo codes", "hot videos"]


def read(path) -> pa.Table:
    return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types={"DATE": pa.string()}))


def write(table: pa.Table, path: Path) -> Path:
    pacsv.write_csv(table, path)
    return path


def obfuscate_links(text: str) -> str:
    def one(m):
        rest = m.group(5).replace("?", " ? ").replace("=", " = ").replace("/", " / ")
        return f"{m.group(3)} dot {m.group(4)} {rest}"
    text = URL.sub(one, text.replace("http://", "").replace("https://", "").replace("www.", "www "))
    return text.replace("watch?v=", "watch ? v = ")


def with_content(table: pa.Table, content: list) -> pa.Table:
    return table.set_column(table.column_names.index("CONTENT"), "CONTENT", pa.array(content, pa.string()))


def new_tactic(table: pa.Table, rows: int = 80, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    texts = []
    for _ in range(rows):
        name = NAMES[rng.integers(len(NAMES))]
        texts.append(NEW_TACTIC[rng.integers(len(NEW_TACTIC))].format(
            name=name, Name=name.split("_")[0].title(), n=int(rng.integers(100, 999)),
            thing=THINGS[rng.integers(len(THINGS))]))
    extra = pa.table({"COMMENT_ID": [f"tactic-{i}" for i in range(rows)], "AUTHOR": ["x"] * rows,
                      "DATE": pa.array([None] * rows, pa.string()), "CONTENT": texts, "CLASS": [1] * rows},
                     schema=table.schema)
    return pa.concat_tables([table, extra])


def train_model(ref: Path, folder: Path) -> Path:
    from mteach.cli import main
    assert main(["train", str(SPEC), str(ref), "-o", str(folder), "--id", "COMMENT_ID", "-q"]) == 0
    return folder


def spot_check(report, new_path: Path) -> dict:
    """Label the queue's uniform part with the true labels (as the expert would) and measure."""
    truth = dict(zip(read(new_path).column("COMMENT_ID").to_pylist(), read(new_path).column("CLASS").to_pylist()))
    uniform = [q for q in report.queue if q["part"] == "uniform" and q["verdict"] != "-"]
    right = sum((q["verdict"] == "SPAM") == (truth[q["id"]] == 1) for q in uniform)
    low, high = wilson_interval(right, len(uniform))
    everyone = [q for q in report.queue if q["verdict"] != "-"]
    all_right = sum((q["verdict"] == "SPAM") == (truth[q["id"]] == 1) for q in everyone)
    return {"rows": len(uniform), "measured": right / max(len(uniform), 1), "low": low, "high": high,
            "whole_queue": all_right / max(len(everyone), 1)}


def case(name, ref, new, model=None) -> dict:
    t0 = time.perf_counter()
    report = drift(SPEC, ref, new, model=model, id_column="COMMENT_ID", gold=GOLD)
    seconds = time.perf_counter() - t0
    acc = report.estimated_accuracy
    actual = acc["new"]["measured"]
    sc = spot_check(report, new)
    return {"case": name, "scorer": acc["scorer"], "flagged": report.flagged, "findings": len(report.findings),
            "first": report.findings[0] if report.findings else "-", "estimated": acc["new"]["estimated"],
            "actual": actual, "gap": None if actual is None else acc["new"]["estimated"] - actual,
            "ref_estimated": acc["reference"]["estimated"], "ref_actual": acc["reference"]["measured"],
            "spot": sc, "covers": sc["low"] <= actual <= sc["high"], "seconds": seconds,
            "uncovered": report.labels["uncovered"],
            "terms": [t["term"] for f in report.fields for t in f.get("new_terms", [])][:6]}


def speed(rows: int) -> list:
    """apply vs drift on the same rows, and drift on a tenth of them (is memory flat?), each in a
    fresh process (peak RSS is per process)."""
    data, small = replicated_parquet(rows), replicated_parquet(rows // 10)
    train = ROOT / "data" / "youtube" / "train.csv"
    with tempfile.TemporaryDirectory() as tmp:
        jobs = {
            ("apply", rows): f"from mteach.engine.apply import apply_file\n"
                             f"apply_file({str(SPEC)!r}, {str(data)!r}, {tmp + '/v.parquet'!r}, 'COMMENT_ID')",
        }
        for n, path in ((rows, data), (rows // 10, small)):
            jobs[("drift", n)] = (f"from mteach.engine.drift import drift\n"
                                  f"r = drift({str(SPEC)!r}, {str(train)!r}, {str(path)!r}, id_column='COMMENT_ID')\n"
                                  f"assert r.new['rows'] == {n}")
        out = []
        for (name, n), body in jobs.items():
            code = (f"import sys, time; sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'bench')!r}]\n"
                    f"from _common import peak_rss_mib\nimport mteach.engine.drift, mteach.engine.apply\n"
                    f"t0 = time.perf_counter()\n{body}\n"
                    f"print(time.perf_counter() - t0, peak_rss_mib())")
            res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            seconds, rss = map(float, res.stdout.split())
            out.append({"what": name, "rows": n, "seconds": seconds, "rows_per_s": n / seconds, "rss": rss})
        return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/work/shared/data/youtube", help="folder of Youtube0[1-5]-*.csv")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--splits", type=int, default=20)
    ap.add_argument("--skip-model", action="store_true", help="no trained-model cases (faster)")
    ap.add_argument("--skip-speed", action="store_true")
    args = ap.parse_args()
    files = sorted(Path(args.data).glob("Youtube0*.csv"))
    assert len(files) == 5, f"expected the five YouTube files in {args.data}"
    tables = [read(f) for f in files]
    print(f"mteach drift bench — {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pooled = pa.concat_tables(tables)
        flags = []
        for seed in range(args.splits):
            order = np.random.default_rng(seed).permutation(pooled.num_rows)
            half = pooled.num_rows // 2
            a = write(pooled.take(pa.array(order[:half])), tmp / "a.csv")
            b = write(pooled.take(pa.array(order[half:])), tmp / "b.csv")
            report = drift(SPEC, a, b, id_column="COMMENT_ID")
            flags.append(report.findings)
        raised = sum(bool(f) for f in flags)
        print(f"\nno drift: {args.splits} random half splits of the five files pooled ({pooled.num_rows} rows): "
              f"{raised} flagged ({raised / args.splits:.0%}; goal <= 5%)")
        for f in flags:
            if f:
                print(f"   flagged: {f[0]}")

        ref123 = write(pa.concat_tables(tables[:3]), tmp / "ref_01-03.csv")
        ref1234 = write(pa.concat_tables(tables[:4]), tmp / "ref_01-04.csv")
        new4 = write(tables[3], tmp / "new_04.csv")
        new5 = write(tables[4], tmp / "new_05.csv")
        obf = write(with_content(tables[4], [obfuscate_links(t) for t in tables[4].column("CONTENT").to_pylist()]),
                    tmp / "new_05_obfuscated.csv")
        tactic = write(new_tactic(tables[4]), tmp / "new_05_tactic.csv")
        cases = [("natural: 01-03 -> 04", ref123, new4), ("natural: 01-03 -> 05", ref123, new5),
                 ("natural: 01-04 -> 05", ref1234, new5),
                 ("obfuscated links: 01-04 -> 05", ref1234, obf), ("new tactic: 01-04 -> 05 + 80", ref1234, tactic)]
        results = [case(name, ref, new) for name, ref, new in cases]
        if not args.skip_model:
            models = {ref123: train_model(ref123, tmp / "m123"), ref1234: train_model(ref1234, tmp / "m1234")}
            results += [case(name, ref, new, models[ref]) for name, ref, new in cases]
        print("\nknown cases (accuracy on new data: estimated without labels vs actual against CLASS; "
              "label model = covered rows, model = all rows)")
        head = f"{'case':31} {'scorer':11} {'flag':>4} {'n':>2} {'est.':>6} {'actual':>6} {'gap':>6} " \
               f"{'spot check (uniform part, Wilson 95%)':>40} {'covers':>6}  first finding"
        print(head)
        print("-" * len(head))
        for r in results:
            sc = r["spot"]
            spot = f"{sc['measured']:.3f} [{sc['low']:.3f}, {sc['high']:.3f}] on {sc['rows']}"
            print(f"{r['case']:31} {r['scorer']:11} {'yes' if r['flagged'] else 'no':>4} {r['findings']:>2} "
                  f"{r['estimated']:6.3f} {r['actual']:6.3f} {r['gap']:+6.3f} {spot:>40} "
                  f"{'yes' if r['covers'] else 'NO':>6}  {r['first'][:90]}")
        print("\nrows no rule covers, and the new frequent terms (label-model runs):")
        for r in results[:len(cases)]:
            u = r["uncovered"]
            print(f"  {r['case']:31} uncovered {u['reference']:.1%} -> {u['new']:.1%} (h {u['effect']:+.2f}, "
                  f"{'flagged' if u['flagged'] else 'not flagged'}); new terms: {', '.join(r['terms'])}")
        within = sum(abs(r["gap"]) <= 0.03 for r in results)
        print(f"\nestimate within 3 points of the actual accuracy: {within} of {len(results)} new sets; "
              "on the reference itself: " + ", ".join(
                  f"{r['case'].split(': ')[1].split(' ->')[0]} ({r['scorer']}) {r['ref_estimated']:.3f} est. vs "
                  f"{r['ref_actual']:.3f}" for r in results if r["case"].endswith("-> 05") and "natural" in r["case"]))
        print(f"spot-check interval covers the actual accuracy: {sum(r['covers'] for r in results)} of {len(results)}")

    if not args.skip_speed:
        import os
        print(f"\nspeed: {args.rows:,} new rows (train comments replicated) against train.csv, fresh process each, "
              f"load {os.getloadavg()[0]:.1f}")
        runs = speed(args.rows)
        for r in runs:
            print(f"  {r['what']:6} {r['rows']:>9,} rows {r['seconds']:7.2f} s  {r['rows_per_s']:10,.0f} rows/s  "
                  f"peak RSS {r['rss']:6.0f} MiB")
        print(f"  drift / apply on {args.rows:,} rows: time {runs[1]['seconds'] / runs[0]['seconds']:.1f}×, "
              f"peak RSS {runs[1]['rss'] / runs[0]['rss']:.2f}×; drift peak RSS, 10× the rows: "
              f"{runs[1]['rss'] / runs[2]['rss']:.2f}×")


if __name__ == "__main__":
    main()
