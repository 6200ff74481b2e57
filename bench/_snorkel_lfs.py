"""specs/youtube_spam.mt's 14 rules written as Snorkel 0.10 labeling functions.

They mirror the spec as of commit 3c6c16c ("selling" guards every HAM rule); when the
spec's rules change, change these too (apply_throughput.py prints the agreement).

Runs in bench/.venv-snorkel (Snorkel is not a dependency of mteach); bench/apply_throughput.py
calls it as a subprocess:

    bench/.venv-snorkel/bin/python bench/_snorkel_lfs.py DATA.csv --out L.npy [--repeat 3]

It reads the CSV with pandas, applies the LFs with ``PandasLFApplier``, saves the vote
matrix (rows × 14, -1 = abstain, SPAM = 0, HAM = 1: the spec's label order) and prints
one JSON line with the apply times (CSV reading is not timed).

The LFs follow the spec's semantics with Python's ``re``, the way a Snorkel user would
write them: phrase tests are whole-word, any case (the text is lower-cased; a word
character is a Unicode letter or digit, i.e. ``[^\\W_]``; spaces inside a phrase match
a run of whitespace ``[ \\t\\n\\f\\r]+``, as RE2's ``\\s``); regexes are the spec's,
compiled with ``re.I``; ``words`` is ``len(text.split())``; thresholds are the spec's.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ABSTAIN, SPAM, HAM = -1, 0, 1
TEXT = "CONTENT"


def phrase_pattern(phrases) -> re.Pattern:
    """One alternation over the phrases, each whole-word (as mteach's phrase_regex)."""
    parts = []
    for p in phrases:
        words = p.lower().split()
        body = r"[ \t\n\f\r]+".join(re.escape(w) for w in words)
        left = r"(?<![^\W_])" if words[0][0].isalnum() else ""
        right = r"(?![^\W_])" if words[-1][-1].isalnum() else ""
        parts.append(left + body + right)
    return re.compile("|".join(f"(?:{p})" for p in parts))


def read_lexicon(path: Path) -> list:
    lines = path.read_text(encoding="utf-8").splitlines()
    return list(dict.fromkeys(s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#")))


LINK = re.compile(r"https?:\/\/|www\.|\.com\b|watch\?v=|\b[a-z0-9-]+\s?\.\s?(tk|ly|net|org|info|biz)\b", re.I)
STRETCHED_SUB = re.compile(r"s+u+b+s+c+r+i+b+", re.I)
LAUGH = re.compile(r"\b(lol|lmao|haha+|xd)\b|:\)|:d\b|<3", re.I)
SOLICIT = phrase_pattern(["subscribe", "subscribers", "sub", "subs", "subscribing", "subscribed"])
PLEAD = phrase_pattern(["please", "plz", "pls", "plzz"])
CHECK = phrase_pattern(["check out", "check my", "check it out", "checked out", "go check"])
OWN = phrase_pattern(read_lexicon(ROOT / "specs" / "lexicons" / "self_promotion.txt"))
MUSIC = phrase_pattern(["song", "songs", "music", "voice", "beat", "lyrics", "dance", "video", "singer", "rapper"])
PRAISE = phrase_pattern(["love", "best", "awesome", "amazing", "beautiful", "great", "nice", "cool", "good", "perfect"])
MONEY = phrase_pattern(["money", "earn", "free", "gift card", "prize", "giveaway", "cash", "dollars"])
BEGGING = phrase_pattern(["like this comment", "thumbs up", "share this", "give it a like"])
REQUEST = phrase_pattern(["check", "visit", "follow", "support", "help", "view", "views"])
SOCIAL = phrase_pattern(["facebook", "instagram", "twitter", "follow me", "add me"])
PROFILE = phrase_pattern(["channel", "profile", "vids"])
VIEWS = phrase_pattern(["billion", "views", "million"])
ARTIST = phrase_pattern(["psy", "katy", "perry", "eminem", "rihanna", "lmfao", "gangnam"])


def has(pattern, t: str) -> bool:
    return pattern.search(t.lower()) is not None


def selling(t: str) -> bool:
    """The spec's ``define selling``."""
    return bool(LINK.search(t) or STRETCHED_SUB.search(t) or has(SOLICIT, t) or has(CHECK, t) or has(OWN, t)
                or has(PLEAD, t) or has(MONEY, t) or has(BEGGING, t))


def words(t: str) -> int:
    return len(t.split())


def make_lfs() -> list:
    """One labeling function per rule, in the spec's order."""
    from snorkel.labeling import labeling_function

    def text_of(x):
        t = x[TEXT]
        return t if isinstance(t, str) else None  # a missing text: every test is false

    def lf(name, label, test):
        @labeling_function(name=name)
        def f(x):
            t = text_of(x)
            return label if t is not None and test(t) else ABSTAIN
        return f

    return [
        lf("link", SPAM, lambda t: LINK.search(t)),
        lf("check_out", SPAM, lambda t: has(CHECK, t)),
        lf("subscribe", SPAM, lambda t: has(SOLICIT, t) or STRETCHED_SUB.search(t)),
        lf("own_stuff", SPAM, lambda t: has(OWN, t)),
        lf("like_this", SPAM, lambda t: has(BEGGING, t)),
        lf("money", SPAM, lambda t: has(MONEY, t)),
        lf("plead", SPAM, lambda t: has(PLEAD, t) and has(REQUEST, t)),
        lf("social", SPAM, lambda t: has(SOCIAL, t)),
        lf("profile", SPAM, lambda t: has(PROFILE, t) and words(t) > 8),
        lf("short", HAM, lambda t: words(t) <= 5 and not selling(t)),
        lf("praise", HAM, lambda t: has(PRAISE, t) and has(MUSIC, t) and not selling(t)),
        lf("views_talk", HAM, lambda t: has(VIEWS, t) and words(t) <= 20 and not selling(t)),
        lf("laugh", HAM, lambda t: LAUGH.search(t) and words(t) <= 15 and not selling(t)),
        lf("artist", HAM, lambda t: has(ARTIST, t) and not selling(t)),
    ]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="CSV with a CONTENT column")
    ap.add_argument("--out", required=True, help="where to save the vote matrix (.npy)")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args(argv)
    import numpy as np
    import pandas as pd
    import snorkel
    from snorkel.labeling import PandasLFApplier

    df = pd.read_csv(args.data, dtype=str, keep_default_na=False, na_values=[""])
    lfs = make_lfs()
    applier = PandasLFApplier(lfs)
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        L = applier.apply(df, progress_bar=False)
        times.append(time.perf_counter() - t0)
    np.save(args.out, L.astype(np.int8))
    print(json.dumps({"rows": len(df), "lfs": [lf.name for lf in lfs], "seconds": times,
                      "median_seconds": statistics.median(times), "snorkel": snorkel.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
