"""Spec fragments that found crashes (issue 9), shared by the hypothesis fuzz test
(``test_fuzz.py``) and the long campaign (``bench/fuzz_campaign.py``).

Each generator takes a ``random.Random``-like ``draw(choices)`` and returns a piece of
spec text; the mutator splices pieces into the bundled spec.
"""
from __future__ import annotations

import random
import re
from pathlib import Path

import pyarrow as pa

SPEC = Path(__file__).resolve().parents[2] / "specs" / "youtube_spam.mt"
SOURCE = SPEC.read_text(encoding="utf-8")
TOKENS = re.findall(r'"[^"\n]*"|/(?:\\.|[^/\\\n])+/[a-z]*|\w+|=>|!~|->|\S|\n', SOURCE)
EXTRA = ["rule", "define", "example", "use", "hint", "field", "labels", "concept", "=>", "~", "!~", "has", "near",
         "within", "per", "words", "between", "and", "or", "not", "unless", "confidence", "in", "{", "}", "(", ")",
         "is", "missing", "abstain", '"', "'", "/", "\\", ":", ",", "#", "\n", "\r\n", "\t", "0", "-1", "1.5",
         "99999999999999999999", "count(", "number(", "first(", "last(", "lexicon(", 'lexicon("../x.txt")',
         '"../../etc/passwd"', "/(?=a)/", "/a/z", "__import__", "CLASS", "B", "D", "\u2028", "\x00", "\ufeff",
         "\u0085", "é", "ß", "\U0001F600"]
SCHEMA = pa.schema([("CONTENT", pa.string()), ("CLASS", pa.int64()), ("B", pa.bool_()), ("D", pa.timestamp("s"))])
# A small table for apply: the Unicode case pairs of the language reference included.
TABLE = pa.table({
    "CONTENT": ["check out my channel http://x.tk", "love this song <3", None, "İstanbul ΣΊΣΥΦΟΣ straße",
                "istanbul σίσυφος STRASSE 12-34 (56) free free", ""],
    "CLASS": pa.array([1, 0, None, 1, 0, 1], pa.int64()),
    "B": [True, False, None, True, False, True],
    "D": pa.array([0, 1, 2, None, 4, 5], pa.timestamp("s")),
})
HEADER = 'concept c\nlabels SPAM, HAM\nfield text = "CONTENT"\nfield n = "CLASS"\nfield b = "B"\nfield d = "D"\n'
CASE_WORDS = ["İstanbul", "istanbul", "ISTANBUL", "ΣΊΣΥΦΟΣ", "σίσυφος", "σίσυφοσ", "straße", "STRASSE", "strasse",
              "ǅ", "ﬁ", "K", "ſ", "ı"]
KEYWORDS = ["has", "or", "and", "not", "near", "within", "between", "in", "is", "missing", "unless", "per"]


def deep_nesting(rnd) -> str:
    k = rnd.choice([49, 50, 51, 60, 200, 500, 3000])
    inner = 'text has "free"'
    if rnd.random() < 0.5:
        return "not " * k + inner
    return "(" * k + inner + ")" * rnd.choice([k, k - 1, k + 1])


def huge_number(rnd) -> str:
    n = rnd.choice(["9" * rnd.choice([20, 308, 309, 400]), "1" + "0" * 400, "0." + "0" * 400 + "1", "-" + "9" * 330])
    return rnd.choice([f'text has "a" near "b" within {n} words', f"first(text, {n}) has \"free\"",
                       f"last(text, {n}) ~ /x/", f"n > {n}", f"n between -{n} and {n}", f"len(text) == {n}",
                       f'count(text, "free") per {n} words > 1', f"n in {{{n}, 1}}"])


def many_phrases(rnd) -> str:
    k = rnd.choice([10, 10, 249, 250, 300, 1500])
    words = [f"w{i}" for i in range(k)] + ["free", "check out", "t&c", "10/10"]
    rnd.shuffle(words)
    args = ", ".join(f'"{w}"' for w in words)
    return rnd.choice([f"count(text, any({args})) > 1", f"text has any({args})",
                       f'text has any({args}) near "song" within 3 words', f"text ~ /{{many}}/"]), \
        f"define many = any({args})"


def capture_groups(rnd) -> str:
    return rnd.choice([r"number(text, /(\d+)-(\d+)/) > 0", r"number(text, /[]()](\d+)/) > 0",
                       r"text ~ /[]()]\d+/", r"number(text, /(?P<a>\d+)(?P<b>\d)/) > 1",
                       r"number(text, /[^]()](\d+)/) > 1", r"number(text, /\((\d+)\)/) > 1",
                       r"number(text, /((\d+))/) > 1", r"count(text, /(a)(b)/) > 0", r"number(text, /[\]](\d)/) > 0",
                       r"number(text, /(?i)(\d+)/) > 0", r"number(text, /(?:x)|(\d+)/) > 0"])


def mixed_example(rnd) -> str:
    value = rnd.choice(['"x"', "1", "-2.5", '"true"', '"false"', "0", '"12"', '""'])
    field = rnd.choice(["text", "n", "b", "d", "nope"])
    return rnd.choice([f"example {{{field}: {value}}} => SPAM", f"example {value if value.startswith(chr(34)) else '1'} => HAM",
                       f"example {{text: {value}, n: {value}}} => abstain"])


def case_pair(rnd) -> str:
    w = rnd.choice(CASE_WORDS)
    return rnd.choice([f'text has "{w}"', f'text has any("{w}", "x")', f'count(text, "{w}") > 0',
                       f'text has "{w}" near "free" within 5 words', f'text ~ /{w}/i'])


def glued_keyword(rnd) -> str:
    kw = rnd.choice(KEYWORDS)
    return rnd.choice([f'text {kw}promo', f'text ~ /x/ {kw}not text ~ /y/', f'text ha{kw} "x"',
                       f'text {kw}s "x"', f'text has "a" {kw}x', f'text hass "x"', f'text ~ /x/ ornot b'])


PREDICATE_MAKERS = [deep_nesting, huge_number, many_phrases, capture_groups, case_pair, glued_keyword]


def generated_spec(rnd) -> str:
    """A spec from the header above and a few rules made by the makers."""
    lines = [HEADER]
    for i in range(rnd.randint(1, 3)):
        made = rnd.choice(PREDICATE_MAKERS)(rnd)
        if isinstance(made, tuple):
            made, define = made
            lines.append(define + "\n")
        lines.append(f"rule r{i} : {made} => {rnd.choice(['SPAM', 'HAM'])}\n")
    for _ in range(rnd.randint(0, 2)):
        lines.append(mixed_example(rnd) + "\n")
    return "".join(lines)


def mutate(edits) -> str:
    """Token-level edits (insert/delete/replace a token) and character-level ones of the
    bundled spec. ``edits``: (kind, where in 0..1, token, char, size)."""
    toks = list(TOKENS)
    text_edits = []
    for kind, where, token, char, size in edits:
        if kind == "char":
            text_edits.append((where, char, size))
            continue
        i = int(where * len(toks))
        if kind == "insert":
            toks.insert(i, token)
        elif kind == "delete":
            del toks[i:i + size]
        else:
            toks[i:i + 1] = [token]
    text = " ".join(toks).replace(" \n ", "\n")
    for where, char, size in text_edits:
        i = int(where * len(text))
        text = text[:i] + char + text[i + (size % 3):]
    return text


def random_char(rnd) -> str:
    if rnd.random() < 0.05:
        return chr(rnd.randint(0xD800, 0xDFFF))  # a lone surrogate (editor buffers can hold one)
    return chr(rnd.choice([rnd.randint(0, 0x7F), rnd.randint(0x80, 0x2FFF), rnd.randint(0x10000, 0x1FFFF)]))


def random_spec(rnd: random.Random) -> str:
    """One fuzz case: a mutated bundled spec, or a generated one, or a generated one mutated."""
    if rnd.random() < 0.4:
        text = generated_spec(rnd)
        if rnd.random() < 0.3:
            i = rnd.randrange(len(text) + 1)
            text = text[:i] + rnd.choice(EXTRA + [random_char(rnd)]) + text[i + rnd.randint(0, 2):]
        return text
    edits = []
    for _ in range(rnd.randint(1, 4)):
        kind = rnd.choice(["insert", "delete", "replace", "char"])
        token = rnd.choice(TOKENS + EXTRA) if rnd.random() < 0.8 else rnd.choice(PREDICATE_MAKERS)(rnd)
        if isinstance(token, tuple):
            token = token[0]
        edits.append((kind, rnd.random(), token, random_char(rnd), rnd.randint(1, 12)))
    return mutate(edits)
