"""Phrase rules at scale: 1,000 phrase rules, and a 50,000-phrase lexicon.

    python bench/phrase_rules.py [--rows 100000] [--rules 1000] [--lexicon 50000] [--lexicon-rows 100000]
                                 [--skip-rules] [--skip-lexicon] [--verbs apply stats label]
                                 [--distinct-rows N] [--votes-out DIR]

1. Many rules: a spec of --rules rules, each ``text has any(...)`` of one to three
   phrases (words and two-word phrases drawn, seeded, from the YouTube comments'
   vocabulary; every tenth rule adds a phrase with punctuation, "t&c"-style), applied to
   --rows replicated comments. Prints rows/s next to the 14-rule bundled spec's rows/s
   measured in the same run: the votes in memory (``collect_votes``, the spec already
   loaded), then each of --verbs as the command line runs it (``mteach apply`` writing the
   vote file, ``stats``, ``label`` writing the ledger; the spec's parse included). With
   --distinct-rows N, --verbs again on N generated comments of 12 random words each, where
   nearly every row has its own vote pattern (the replicated comments have 1,586).
2. A big lexicon: --lexicon phrases (the corpus' words and bigrams, padded with made-up
   words) in a lexicon file, used by ``has``, ``count(text, lexicon)`` and ``near`` rules
   on --lexicon-rows rows. Prints seconds and the peak RSS of each (a fresh process each,
   so the peaks do not mix).

With --votes-out, each run's vote matrix is saved there (``<case>.npy``) so two checkouts
can be compared vote for vote. Data is cached under bench/_data/ (gitignored).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, TEXT, machine, peak_rss_mib, replicated_parquet, train_table  # noqa: E402


def vocabulary() -> tuple:
    """(words, bigrams) of the train comments, most frequent first."""
    words, bigrams = Counter(), Counter()
    for text in train_table().column(TEXT).to_pylist():
        toks = re.findall(r"[a-z]+", (text or "").lower())
        words.update(toks)
        bigrams.update(f"{a} {b}" for a, b in zip(toks, toks[1:]))
    return [w for w, _ in words.most_common()], [b for b, _ in bigrams.most_common()]


def many_rules_spec(n: int, seed: int = 0) -> str:
    words, bigrams = vocabulary()
    rng = np.random.default_rng(seed)
    pool = words[:3000] + bigrams[:3000]
    lines = ['concept bench "phrase rules at scale"', "labels A, B", 'field text = "CONTENT"', ""]
    for i in range(n):
        phrases = [pool[k] for k in rng.choice(len(pool), size=rng.integers(1, 4), replace=False)]
        if i % 10 == 9:
            phrases.append(f"{phrases[0].split()[0]}&co")
        lines.append(f"rule r{i} : text has any({', '.join(json.dumps(p) for p in phrases)}) => {'AB'[i % 2]}")
    return "\n".join(lines) + "\n"


def distinct_parquet(rows: int, seed: int = 0) -> Path:
    """``rows`` comments of 12 words drawn (seeded) from the corpus' 3,000 most frequent:
    unlike the replicated comments, almost every row gets its own vote pattern."""
    import pyarrow as pa
    path = ROOT / "bench" / "_data" / f"distinct_{rows}.parquet"
    if not path.exists():
        words = np.array(vocabulary()[0][:3000])
        rng = np.random.default_rng(seed)
        texts = [" ".join(row) for row in words[rng.integers(0, len(words), (rows, 12))]]
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({TEXT: texts}), path.with_suffix(".tmp"), compression="zstd")
        path.with_suffix(".tmp").rename(path)
    return path


def lexicon_phrases(n: int, seed: int = 0) -> list:
    words, bigrams = vocabulary()
    rng = np.random.default_rng(seed)
    out = list(dict.fromkeys(words[50:] + bigrams[:n // 2]))[:n]
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    while len(out) < n:
        out.append("".join(rng.choice(letters, size=rng.integers(5, 10))))
    return out


CASES = {
    "has": "rule lex : text has lexicon(\"lex.txt\") => A",
    "count": "rule lex : count(text, lexicon(\"lex.txt\")) >= 3 => A",
    "near": "rule lex : text has any(\"check\", \"please\") near lexicon(\"lex.txt\") within 3 words => A",
}


def child(spec_path: str, data: str, votes_out: str) -> None:
    """Runs in a fresh process: load the spec, apply it, print seconds and peak RSS."""
    from mteach.compiler.checker import load_spec
    from mteach.engine.votes import collect_votes
    from mteach.engine.io import open_data

    source = open_data(data)
    spec = load_spec(spec_path, source.schema)
    t0 = time.perf_counter()
    votes = collect_votes(spec, source).votes
    seconds = time.perf_counter() - t0
    if votes_out:
        np.save(votes_out, votes)
    peak = peak_rss_mib()  # VmHWM: not the parent's memory, as ru_maxrss would count
    print(json.dumps({"seconds": seconds, "peak_mib": peak, "rows": int(votes.shape[0]),
                      "fired": int((votes >= 0).sum())}))


def cli_child(verb: str, spec_path: str, data: str, output: str) -> None:
    """Runs in a fresh process: ``mteach VERB`` as the command line runs it, timed from its start."""
    import contextlib
    import io

    from mteach.cli import main
    from mteach.engine.io import open_data

    rows = open_data(data).num_rows
    argv = [verb, spec_path, data, "-q"] + ([] if verb == "stats" else ["-o", output])
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # stats' table
        if main(argv) != 0:
            raise SystemExit(f"mteach {verb} failed")
    seconds, peak = time.perf_counter() - t0, peak_rss_mib()
    fired = None
    if verb == "apply":
        votes = pq.ParquetFile(output)
        fired = sum(int(pc.sum(pc.not_equal(col, -1)).as_py() or 0)
                    for group in range(votes.num_row_groups) for col in votes.read_row_group(group).columns[1:])
    print(json.dumps({"seconds": seconds, "peak_mib": peak, "rows": rows, "fired": fired}))


def run_child(mode: str, *args) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, __file__, mode, *map(str, args)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] in ("--child", "--cli-child"):
        (child if sys.argv[1] == "--child" else cli_child)(*sys.argv[2:])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--rules", type=int, default=1000)
    ap.add_argument("--lexicon", type=int, default=50_000)
    ap.add_argument("--lexicon-rows", type=int, default=100_000)
    ap.add_argument("--skip-rules", action="store_true")
    ap.add_argument("--verbs", nargs="*", default=["apply", "stats", "label"], choices=["apply", "stats", "label"],
                    help="the commands timed on the many-rules spec besides the votes in memory "
                         "(default: apply stats label)")
    ap.add_argument("--skip-lexicon", action="store_true")
    ap.add_argument("--distinct-rows", type=int, default=0,
                    help="also time --verbs with the many-rules spec on this many generated comments "
                         "of 12 random words each, nearly every row its own vote pattern (default: skip)")
    ap.add_argument("--votes-out", default="", help="folder to save each case's votes (.npy) in")
    args = ap.parse_args(argv)
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f}")
    out = Path(args.votes_out) if args.votes_out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)

    def save(name: str) -> str:
        return str(out / f"{name}.npy") if out else ""

    with tempfile.TemporaryDirectory(prefix="mteach-phrase-bench-") as tmp:
        tmp = Path(tmp)
        if not args.skip_rules:
            data = replicated_parquet(args.rows)
            spec = tmp / "many.mt"
            spec.write_text(many_rules_spec(args.rules))
            bundled = ROOT / "specs" / "youtube_spam.mt"
            runs = [("votes in memory", lambda s, name: run_child("--child", s, data, save(name)))]
            for verb in args.verbs:
                runs.append((f"mteach {verb}", lambda s, name, verb=verb: run_child(
                    "--cli-child", verb, s, data, tmp / f"{name}-{verb}.parquet")))
            for how, run in runs:
                base, many = run(bundled, "bundled"), run(spec, f"rules{args.rules}")
                for name, r in ((f"bundled spec (14 rules)", base), (f"{args.rules} phrase rules", many)):
                    if "error" in r:
                        print(f"{how}: {name}: failed: {r['error']}")
                    else:
                        fired = "" if r["fired"] is None else f", {r['fired']:,} votes"
                        print(f"{how}: {name}, {r['rows']:,} rows: {r['rows'] / r['seconds']:,.0f} rows/s "
                              f"({r['seconds']:.2f} s, peak RSS {r['peak_mib']:,.0f} MiB{fired})")
                if "error" not in base and "error" not in many:
                    print(f"{how}: {args.rules} rules take {many['seconds'] / base['seconds']:.1f}× "
                          f"the bundled spec's time")
        if args.distinct_rows and not args.skip_rules:
            data = distinct_parquet(args.distinct_rows)
            for verb in args.verbs:
                r = run_child("--cli-child", verb, spec, data, tmp / f"distinct-{verb}.parquet")
                if "error" in r:
                    print(f"mteach {verb}: distinct rows: failed: {r['error']}")
                else:
                    print(f"mteach {verb}: {args.rules} phrase rules, {r['rows']:,} distinct generated rows: "
                          f"{r['rows'] / r['seconds']:,.0f} rows/s ({r['seconds']:.2f} s, "
                          f"peak RSS {r['peak_mib']:,.0f} MiB)")
        if not args.skip_lexicon:
            data = replicated_parquet(args.lexicon_rows)
            (tmp / "lex.txt").write_text("\n".join(lexicon_phrases(args.lexicon)) + "\n")
            for name, rule in CASES.items():
                spec = tmp / f"{name}.mt"
                spec.write_text(f'concept bench "lexicon"\nlabels A, B\nfield text = "CONTENT"\n{rule}\n')
                r = run_child("--child", spec, data, save(f"lexicon_{name}"))
                if "error" in r:
                    print(f"{args.lexicon:,}-phrase lexicon, {name}: failed: {r['error']}")
                else:
                    print(f"{args.lexicon:,}-phrase lexicon, {name}, {r['rows']:,} rows: {r['seconds']:.2f} s, "
                          f"peak RSS {r['peak_mib']:,.0f} MiB, {r['fired']:,} rows fire")
    return 0


if __name__ == "__main__":
    sys.exit(main())
