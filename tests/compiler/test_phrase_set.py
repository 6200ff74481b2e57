"""Phrase lists matched in one pass (``tokens.PhraseSet``) give the same rows as each
phrase's own RE2 pattern, for ``has`` (any / all), ``count`` and ``near``, on fuzzed
phrases and text; and a list of thousands of phrases is matched without a mask per phrase."""
import json
import random
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import mteach
from mteach.compiler.evaluator import BatchEvaluator, vote_matrix
from mteach.compiler.tokens import PhraseSet, fold_case, phrase_regex

WORDS = ["free", "money", "check", "out", "my", "channel", "sub", "subs", "please", "t&c", "10/10", "go", "it"]
SEPARATORS = [" ", "  ", "\t", "\n", ", ", ". ", "!", "-", "&", "/", " (", ") "]


def random_text(rng: random.Random) -> str | None:
    if rng.random() < 0.05:
        return None
    words = [rng.choice(WORDS) for _ in range(rng.randint(0, 14))]
    words = [w.upper() if rng.random() < 0.2 else w for w in words]
    out = ""
    for w in words:
        out += w + rng.choice(SEPARATORS)
    return out


def random_phrase(rng: random.Random) -> str:
    n = rng.choice([1, 1, 1, 2, 2, 3])
    phrase = " ".join(rng.choice(WORDS) for _ in range(n))
    if rng.random() < 0.15:
        phrase = phrase.replace(" ", rng.choice(["-", ", ", "  "]), 1)
    return phrase.title() if rng.random() < 0.2 else phrase


def spec_for(rules: list[str]):
    body = "\n".join(f"rule r{i} : {r} => A" for i, r in enumerate(rules))
    schema = pa.schema([pa.field("CONTENT", pa.string())])
    return mteach.load_spec("fuzz.mt", schema, text=f'concept c\nlabels A, B\nfield text = "CONTENT"\n{body}\n')


def literal(phrases) -> str:
    return ", ".join(json.dumps(p) for p in phrases)


def reference_has(texts: pa.Array, phrase: str) -> np.ndarray:
    """The phrase's own RE2 pattern over the case-folded text."""
    return pc.fill_null(pc.match_substring_regex(fold_case(texts), phrase_regex(phrase)), False).to_numpy(
        zero_copy_only=False)


def reference_count(text: str | None, phrases) -> float:
    """Word positions where one of the (plain-word) phrases starts, separated by whitespace only."""
    if text is None:
        return np.nan
    low = text.lower()
    tokens = list(re.finditer(r"[a-z0-9]+", low))
    starts = set()
    for p in phrases:
        words = p.lower().split()
        for i in range(len(tokens) - len(words) + 1):
            if all(tokens[i + k].group() == w for k, w in enumerate(words)) and all(
                    re.fullmatch(r"[\t\n\f\r ]+", low[tokens[i + k].end():tokens[i + k + 1].start()])
                    for k in range(len(words) - 1)):
                starts.add(i)
    return float(len(starts))


def reference_near(text: str | None, left, right, within: int) -> bool:
    """Whitespace words, each read as written or without edge punctuation."""
    if text is None:
        return False
    words = text.lower().split()
    bare = [re.sub(r"^[^a-z0-9]+|[^a-z0-9]+$", "", w) for w in words]

    def starts(phrases):
        out = set()
        for p in phrases:
            ws = p.lower().split()
            for i in range(len(words) - len(ws) + 1):
                if all(words[i + k] == w or bare[i + k] == w for k, w in enumerate(ws)):
                    out.add(i)
        return out
    return any(abs(a - b) <= within for a in starts(left) for b in starts(right))


@pytest.mark.parametrize("seed", range(12))
def test_phrase_lists_match_each_phrase_own_pattern(seed):
    rng = random.Random(seed)
    texts = pa.array([random_text(rng) for _ in range(300)], pa.string())
    lists = [[random_phrase(rng) for _ in range(rng.randint(1, 6))] for _ in range(8)]
    rules = [f"text has any({literal(ps)})" for ps in lists] + [f"text has all({literal(ps[:2])})" for ps in lists]
    spec = spec_for(rules)
    votes = vote_matrix(spec, pa.table({"CONTENT": texts}))
    for j, ps in enumerate(lists):
        per_phrase = [reference_has(texts, p) for p in ps]
        assert np.array_equal(votes[:, j] == 0, np.logical_or.reduce(per_phrase)), (seed, ps)
        assert np.array_equal(votes[:, len(lists) + j] == 0, np.logical_and.reduce(per_phrase[:2])), (seed, ps)


@pytest.mark.parametrize("seed", range(8))
def test_count_and_near_match_a_plain_reading(seed):
    rng = random.Random(100 + seed)
    texts = [random_text(rng) for _ in range(200)]
    plain = [p for p in (random_phrase(rng).lower() for _ in range(12)) if re.fullmatch(r"[a-z0-9]+( [a-z0-9]+)*", p)]
    left, right = plain[:3], plain[3:8]
    spec = spec_for([f"count(text, any({literal(plain)})) >= 0",
                     f"text has any({literal(left)}) near any({literal(right)}) within 2 words"])
    ev = BatchEvaluator(spec, pa.table({"CONTENT": pa.array(texts, pa.string())}))
    counts = ev.measure(spec.rules[0].predicate.left)
    expected = np.array([reference_count(t, plain) for t in texts])
    assert np.array_equal(np.isnan(counts), np.isnan(expected))
    assert np.array_equal(counts[~np.isnan(counts)], expected[~np.isnan(expected)]), seed
    near = ev.predicate(spec.rules[1].predicate)
    assert near.tolist() == [reference_near(t, left, right, 2) for t in texts], seed


def test_a_big_lexicon_is_one_pass_and_exact():
    """20,000 phrases on 2,000 rows: the rows are those of a plain set lookup, and the
    evaluator keeps no per-phrase mask (the old way held 20,000 × rows booleans)."""
    rng = random.Random(7)
    vocab = [f"w{i}" for i in range(20_000)]
    texts = [" ".join(rng.choice(vocab) + ("" if rng.random() < 0.5 else "x") for _ in range(6)) for _ in range(2000)]
    lexicon = vocab[::2] + [f"{a} {b}" for a, b in zip(vocab[1::40], vocab[3::40])]
    spec = spec_for([f"text has any({literal(lexicon)})", f"count(text, any({literal(lexicon)})) >= 2"])
    ev = BatchEvaluator(spec, pa.table({"CONTENT": pa.array(texts, pa.string())}))
    has = ev.predicate(spec.rules[0].predicate)
    singles = set(vocab[::2])
    pairs = set(lexicon[len(singles):])
    expected = []
    for t in texts:
        ws = t.split()
        expected.append(any(w in singles for w in ws) or any(f"{a} {b}" in pairs for a, b in zip(ws, ws[1:])))
    assert has.tolist() == expected
    assert not any(k[0] == "phrase" for k in ev.memo)  # no mask per phrase
    counts = ev.measure(spec.rules[1].predicate.left)
    assert counts.tolist() == [float(sum(w in singles or (i + 1 < len(ws) and f"{w} {ws[i + 1]}" in pairs)
                                         for i, w in enumerate(ws))) for ws in (t.split() for t in texts)]


def test_phrase_set_reports_every_start_and_repeats_share_an_id():
    ps = PhraseSet([("a", "b"), ("b",), ("a", "b"), ("a", "b", "c")])
    assert ps.same_as.tolist() == [0, 1, 0, 3]
    # tokens: a b c | a b   (the row boundary between tokens 2 and 3)
    vocab = {w: i for i, w in enumerate(ps.vocab.to_pylist())}
    ids = np.array([vocab[w] for w in "abcab"], np.int64)
    row = np.array([0, 0, 0, 1, 1])
    starts, which = ps.match([ids], lambda t: row[t + 1] == row[t])
    assert sorted(zip(starts.tolist(), which.tolist())) == [(0, 0), (0, 3), (1, 1), (3, 0), (4, 1)]


def test_phrase_rules_voted_together_equal_each_rules_own_mask():
    """``vote_matrix`` sets the votes of all ``has any(...)`` rules of plain phrases from one
    pass; each rule's column still equals its own mask, with its own label, beside rules
    it does not take that way (all, near, punctuation, a window of the text)."""
    rng = random.Random(3)
    texts = pa.array([random_text(rng) for _ in range(400)], pa.string())
    rules = []
    for i in range(40):
        ps = [random_phrase(rng) for _ in range(rng.randint(1, 4))]
        rules.append(f"text has any({literal(ps)})" if i % 5 else f"text has all({literal(ps)})")
    rules += ['text has any("t&c", "my channel")', 'first(text, 20) has any("free", "check out")',
              'text has "sub" near "please" within 2 words', 'text has any("free") and not text has "money"']
    body = "\n".join(f"rule r{i} : {r} => {'AB'[i % 2]}" for i, r in enumerate(rules))
    spec = mteach.load_spec("mixed.mt", pa.schema([pa.field("CONTENT", pa.string())]),
                            text=f'concept c\nlabels A, B\nfield text = "CONTENT"\n{body}\n')
    table = pa.table({"CONTENT": texts})
    votes = vote_matrix(spec, table)
    assert (votes >= 0).any(axis=0).sum() >= 30  # most rules fire somewhere, so a lost vote shows
    for j, rule in enumerate(spec.rules):
        mask = BatchEvaluator(spec, table).predicate(rule.predicate)
        assert np.array_equal(votes[:, j], np.where(mask, j % 2, -1)), rules[j]
