"""`mteach stats` and `mteach rows` fit the terminal (issue 15): $COLUMNS, else the terminal's
width, else 80 columns; rule names and texts are clipped with an ellipsis, numbers and ids
never are."""
import json
import os
import sys
from pathlib import Path

import pytest

from mteach.cli.common import terminal_width

ROOT = Path(__file__).resolve().parents[2]
SPEC, TEST = ROOT / "specs" / "youtube_spam.mt", ROOT / "data" / "youtube" / "test.csv"
GOLD = ["--id", "COMMENT_ID", "--gold-column", "CLASS", "--gold-map", "1=SPAM,0=HAM", "-q"]
LONG = "a_rule_whose_name_goes_on_and_on_far_past_any_reasonable_column_width"


def table_rows(out: str, names) -> dict:
    """The table line of each rule, by name (the line that starts with its possibly clipped name)."""
    def shows(word, name):
        return word == name or (word.endswith("…") and name.startswith(word[:-1]))
    found = {}
    for name in names:
        hits = [ln for ln in out.splitlines()[2:] if ln.split() and shows(ln.split()[0], name)]
        assert len(hits) == 1, (name, out)
        found[name] = hits[0]
    return found


def assert_numbers_whole(line: str, rule: dict):
    """Every figure of the rule's row stands whole, as its own word, in the printed line."""
    words = line.split()
    for key in ("coverage", "overlaps", "conflicts", "accuracy", "recall"):
        assert f"{rule[key]:.3f}" in words, (key, line)
    assert str(rule["correct"]) in words and str(rule["incorrect"]) in words, line
    assert f"{rule['accuracy_low']:.3f}–{rule['accuracy_high']:.3f}" in words, line


def stats(run, *args):
    code, out, err = run("stats", *args, *GOLD)
    assert code == 0, err
    code, js, err = run("stats", *args, *GOLD, "--format", "json")
    assert code == 0, err
    return out, json.loads(js)["rules"]


def test_stats_fits_80_columns_with_the_bundled_spec(run, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    out, rules = stats(run, SPEC, TEST)
    assert max(len(line) for line in out.splitlines()) <= 80, out
    rows = table_rows(out, [r["rule"] for r in rules])
    for rule in rules:
        line = rows[rule["rule"]]
        assert line.startswith(rule["rule"] + " ")  # the bundled names fit whole
        assert_numbers_whole(line, rule)
    # the short headers are explained, and where each rule is keeps its line number
    assert out.splitlines()[0].split()[:6] == ["rule", "label", "cov", "ovl", "cnf", "ok"]
    assert "cov coverage," in out and "bad incorrect," in out
    spec_lines = SPEC.read_text(encoding="utf-8").splitlines()
    for rule in rules:
        line_no = next(i + 1 for i, ln in enumerate(spec_lines) if ln.startswith(f"rule {rule['rule']} "))
        assert rows[rule["rule"]].endswith(f".mt:{line_no}"), rows[rule["rule"]]


def test_a_long_rule_name_is_clipped_never_a_number(run, monkeypatch, tmp_path):
    text = SPEC.read_text(encoding="utf-8").replace("rule link ", f"rule {LONG} ", 1)
    spec = tmp_path / "long.mt"
    spec.write_text(text, encoding="utf-8")
    for lexicon in (SPEC.parent / "lexicons").iterdir():
        (tmp_path / "lexicons").mkdir(exist_ok=True)
        (tmp_path / "lexicons" / lexicon.name).write_text(lexicon.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setenv("COLUMNS", "80")
    out, rules = stats(run, spec, TEST)
    assert max(len(line) for line in out.splitlines()) <= 80, out
    rows = table_rows(out, [r["rule"] for r in rules])
    long_line = rows[LONG]
    name = long_line.split(" ", 1)[0]
    assert name.endswith("…") and LONG.startswith(name[:-1]) and len(name) >= 8, long_line
    for rule in rules:
        assert_numbers_whole(rows[rule["rule"]], rule)
    # a wide terminal shows the whole name and the long headers
    monkeypatch.setenv("COLUMNS", "250")
    out, _ = stats(run, spec, TEST)
    assert f"{LONG} " in out and out.splitlines()[0].split()[2] == "coverage"


def test_rows_fit_80_columns_and_keep_ids_whole(run, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = run("rows", SPEC, TEST, *GOLD, "--limit", "12")
    assert code == 0, err
    code, js, _ = run("rows", SPEC, TEST, *GOLD, "--limit", "12", "--format", "json")
    shown = json.loads(js)["shown"]
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80, out
    body = lines[3:]
    assert len(body) == len(shown) == 12
    clipped = 0
    for line, row in zip(body, shown):
        assert line.split()[:3] == [row["id"], row["verdict"], row["gold"]]  # the id is never cut
        text = " ".join(row["text"].split())
        cell = line.rstrip().rsplit("  ", 1)[-1]
        if cell.endswith("…"):
            clipped += 1
            assert text.startswith(cell[:-1]), (cell, text)
        else:
            assert cell == text
    assert clipped  # the test file's comments are longer than what 80 columns leave them


def test_the_width_is_columns_else_the_terminal_else_80(monkeypatch):
    termios = pytest.importorskip("termios")
    import fcntl
    import struct
    monkeypatch.setenv("COLUMNS", "123")
    assert terminal_width() == 123
    monkeypatch.delenv("COLUMNS")
    monkeypatch.delenv("LINES", raising=False)
    read, write = os.pipe()
    with os.fdopen(write, "w") as piped:
        monkeypatch.setattr(sys, "__stdout__", piped)
        assert terminal_width() == 80  # output to a pipe or a file
    os.close(read)
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 132, 0, 0))
    with os.fdopen(follower, "w") as tty:
        monkeypatch.setattr(sys, "__stdout__", tty)
        assert terminal_width() == 132
    os.close(leader)
