"""`mteach audit` on a large ledger: the page stays a few MB and quick to write.

    python bench/audit_page.py [--rows 1000000] [--small 10000] [--embed 2000]

Labels the YouTube train comments replicated to --rows (and to --small, the baseline) with
specs/youtube_spam.mt, then runs `mteach audit` on each ledger in a fresh process: seconds,
peak RSS, the page's size and the rows it embeds, and the large/small ratios. The page's size
is bounded by --embed (the row browser's sample), not by the ledger; its time is the ledger's
read and hash check plus vectorized counts, so it grows with the rows but per-row Python
stays at --embed rows.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, SPEC, machine, replicated_parquet  # noqa: E402

AUDIT = """
import json, resource, sys, time
from mteach.cli import main
t = time.perf_counter()
rc = main(["audit", sys.argv[1], "-o", sys.argv[2], "--rows", sys.argv[3]])
print(json.dumps({"rc": rc, "seconds": time.perf_counter() - t,
                  "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def label(rows: int, folder: Path) -> Path:
    data = replicated_parquet(rows)
    out = folder / f"ledger_{rows}.parquet"
    subprocess.run([sys.executable, "-m", "mteach", "label", str(SPEC), str(data), "--id", "COMMENT_ID",
                    "-o", str(out), "-q"], check=True, cwd=ROOT)
    return out


def audit(ledger: Path, folder: Path, embed: int) -> dict:
    report = folder / f"report_{ledger.stem}"
    out = subprocess.run([sys.executable, "-c", AUDIT, str(ledger), str(report), str(embed)], check=True,
                         capture_output=True, text=True, cwd=ROOT)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    html = (report / "index.html").read_text(encoding="utf-8")
    result["page_mib"] = len(html.encode("utf-8")) / 2 ** 20
    result["embedded"] = int(re.search(r'id="embedded">([\d,]+) of', html).group(1).replace(",", ""))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--small", type=int, default=10_000)
    ap.add_argument("--embed", type=int, default=2000)
    args = ap.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        results = {}
        for rows in (args.small, args.rows):
            t = time.perf_counter()
            ledger = label(rows, tmp)
            labelled = time.perf_counter() - t
            r = audit(ledger, tmp, args.embed)
            r["ledger_mib"] = ledger.stat().st_size / 2 ** 20
            results[rows] = r
            print(f"{rows:>10,} rows: label {labelled:6.1f} s (ledger {r['ledger_mib']:.1f} MiB); audit "
                  f"{r['seconds']:6.2f} s, peak RSS {r['rss_mib']:,.0f} MiB, page {r['page_mib']:.2f} MiB, "
                  f"{r['embedded']:,} rows embedded")
        a, b = results[args.small], results[args.rows]
        print(f"ratios {args.rows:,} / {args.small:,} rows ({args.rows / args.small:,.0f}x the rows): audit time "
              f"{b['seconds'] / a['seconds']:.1f}x, page size {b['page_mib'] / a['page_mib']:.2f}x, "
              f"peak RSS {b['rss_mib'] / a['rss_mib']:.1f}x")


if __name__ == "__main__":
    main()
