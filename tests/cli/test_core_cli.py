"""The CLI verbs check / apply / stats, run in-process through ``mteach.cli.main``
(and once as the installed ``mteach`` script): exit codes, messages that name the
place, no tracebacks, and no half-written outputs."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import mteach
from mteach.cli import main

REPO = Path(__file__).resolve().parents[2]




# -- check ----------------------------------------------------------------------------------
def test_check_clean(run, small_csv):
    spec, data = small_csv
    code, out, err = run("check", spec, "--data", data)
    assert code == 0, err
    assert "ok — 3 rules, 0 hints, 1/1 examples pass" in out


def test_check_reports_every_problem_with_place_caret_and_suggestion(run, spec_file):
    path = spec_file('concept c\nlabels SPAM, HAM\nfield text = "body"\n'
                     'define promo = any("x")\n'
                     'rule a : text has prom => SPAM\n'
                     'rule b : text ~ /(?=x)/ => SPMA\n'
                     'rule c : txt has "x" => HAM\n'
                     'rule d : lenn(text) > 3 => HAM\n')
    code, out, err = run("check", path)
    assert code == 1
    assert "spec.mt:5:19: error: unknown define prom — did you mean promo?" in err
    assert "spec.mt:6:17: error: invalid regex" in err
    assert "spec.mt:6:28: error: unknown label SPMA — did you mean SPAM?" in err
    assert "spec.mt:7:10: error: unknown field txt — did you mean text?" in err
    assert "spec.mt:8:10: error: unknown function 'lenn' — did you mean len?" in err
    assert "  rule b : text ~ /(?=x)/ => SPMA\n" + "  " + " " * 27 + "^~~~\n" in err
    assert err.count(": error:") == 5


def test_check_unknown_column_against_data(run, small_csv, spec_file):
    _, data = small_csv
    path = spec_file('concept c\nlabels A, B\nfield t = "txet"\nrule r : t has "x" => A\n', name="other.mt")
    code, _, err = run("check", path, "--data", data)
    assert code == 1 and 'other.mt:3:1: error: column "txet" is not in the data — did you mean text?' in err


def test_check_json_and_several_specs(run, small_csv, spec_file):
    good, _ = small_csv
    bad = spec_file('concept c\nlabels A, B\nrule r : t has "x" => C\n', name="bad.mt")
    code, out, err = run("check", good, bad, "--format", "json")
    assert code == 1
    report = json.loads(out)
    assert [r["ok"] for r in report] == [True, False]
    assert report[0]["examples_passed"] == 1 and report[0]["rules"] == 3
    diags = report[1]["diagnostics"]
    assert {(d["line"], d["column"]) for d in diags} >= {(3, 10), (3, 23)}
    assert all(d["severity"] == "error" and d["file"].endswith("bad.mt") for d in diags)


def test_check_failing_examples_exit_1(run, spec_file):
    path = spec_file('concept c\nlabels A, B\nfield t = "t"\n'
                     'rule a : t has "x" => A\nrule b : t has "y" => B\n'
                     'example "x" => A\n'            # passes
                     'example "x" => B\n'            # wrong label
                     'example "x y" => A\n'          # tie fails
                     'example "z" => A\n'            # nothing fires
                     'example "x" => abstain\n'      # a rule fires
                     'example "z" => abstain\n'      # passes
                     'example {t: "x y x"} => A\n')  # majority: tie still (one rule each)
    code, out, err = run("check", path)
    assert code == 1
    assert "5 example(s) fail" in out and "2/7 examples pass" in out
    assert "spec.mt:7:1: error: example fails: expected B, but the rules say A (a => A)" in err
    assert "spec.mt:8:1: error: example fails: expected A, but the rules tie" in err
    assert "spec.mt:9:1: error: example fails: expected A, but no rule fires" in err
    assert "spec.mt:10:1: error: example fails: expected no rule to fire, but a => A" in err


def test_check_examples_with_records_and_types(run, spec_file, tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("t,n,ok\nx,1,true\n")
    path = spec_file('concept c\nlabels A, B\nfield t = "t"\nfield n = "n"\nfield ok = "ok"\n'
                     'rule big : n > 5 => A\nrule flag : ok => B\n'
                     'example {n: 9} => A\nexample {ok: "true", t: "q"} => B\nexample {ok: "false"} => abstain\n'
                     'example {n: 1} => abstain\n')
    code, out, err = run("check", path, "--data", data)
    assert code == 0, err
    assert "4/4 examples pass" in out


def test_check_usage_and_data_errors_exit_2(small_csv, tmp_path, run):
    spec, _ = small_csv
    assert run("check", spec, "--data", tmp_path / "none.csv")[0] == 2
    assert run("check")[0] == 2
    assert run()[0] == 2
    assert run("check", spec, "--format", "yaml")[0] == 2


# -- apply ----------------------------------------------------------------------------------
def test_apply_csv_jsonl_parquet(run, small_csv, tmp_path):
    spec, data = small_csv
    table = pa.csv.read_csv(data) if hasattr(pa, "csv") else None
    import pyarrow.csv as pacsv
    table = pacsv.read_csv(data)
    pq.write_table(table, tmp_path / "d.parquet")
    with open(tmp_path / "d.jsonl", "w") as f:
        for row in table.to_pylist():
            f.write(json.dumps(row) + "\n")
    results = []
    for d in (data, tmp_path / "d.parquet", tmp_path / "d.jsonl"):
        out = tmp_path / f"v-{d.suffix[1:]}.parquet"
        code, _, err = run("apply", spec, d, "-o", out, "--id", "id")
        assert code == 0, err
        assert f"wrote {out}: 6 rows × 3 rules (buy 3, channel 1, song 2)" in err
        ids, votes, rules, run_info = mteach.read_votes(out)
        results.append(votes.tolist())
        assert ids.to_pylist() == [1, 2, 3, 4, 5, 6]
    assert results[0] == results[1] == results[2] == [
        [0, -1, -1], [-1, -1, 1], [-1, 0, -1], [0, -1, 1], [-1, -1, -1], [0, -1, -1]]


def test_apply_batch_rows_and_threads_do_not_change_the_output(run, small_csv, tmp_path):
    spec, data = small_csv
    tables = []
    for args in (["--batch-rows", "1", "--threads", "1"], ["--batch-rows", "2", "--threads", "4"], []):
        out = tmp_path / "v.parquet"
        assert run("apply", spec, data, "-o", out, "-q", *args)[0] == 0
        tables.append(pq.read_table(out))
    assert tables[0].equals(tables[1]) and tables[1].equals(tables[2])


SPEC_OK = 'concept c\nlabels SPAM, HAM\nfield text = "text"\nrule r : text has "buy" => SPAM\n'


@pytest.mark.parametrize("spec_text,data_bytes,extra,code,words", [
    ('concept c\nlabels SPAM, HAM\nfield text = "text"\nrule r : text has => SPAM\n', None, [], 1, "spec.mt:4:"),
    ('concept c\nlabels SPAM, HAM\nfield text = "txt"\nrule r : text has "x" => SPAM\n', None, [], 1,
     'column "txt" is not in the data — did you mean text?'),
    ('concept c\nlabels SPAM, HAM\nfield n = "id"\nrule r : n has "x" => SPAM\n', None, [], 1,
     "n is a number field; this needs text"),
    ('concept c\nlabels SPAM, HAM\nfield text = "text"\nrule r : text ~ /(?<=a)b/ => SPAM\n', None, [], 1,
     "spec.mt:4:17: error: invalid regex"),
    ('concept c\nlabels SPAM, HAM\nfield text = "text"\nrule r : text has lexicon("no.txt") => SPAM\n', None, [], 1,
     "lexicon file not found"),
    (b'concept c "caf\xe9"\nlabels SPAM, HAM\n', None, [], 1, "is not UTF-8 text"),
    (SPEC_OK, b"", [], 2, "the file is empty"),
    (SPEC_OK, b"id,text\n", [], 2, "header but no rows"),
    (SPEC_OK, b"id,text\n1,caf\xe9 buy\n", [], 2, "column 'text' is not valid UTF-8 text (first at line 2)"),
    (SPEC_OK, b"id,text\n1,hi\n", ["--id", "ID"], 2, "no id column 'ID' — did you mean id?"),
    (SPEC_OK, b"id,text\n1,hi\n,buy\n", ["--id", "id"], 2, "row 2 has no value in the id column 'id'"),
    (SPEC_OK, b'id,text\n1,hi\n2,buy,extra\n', [], 2, "cannot read the data: CSV parse error"),
    (SPEC_OK, b"id,text\n1,hi\n", ["--batch-rows", "0"], 2, "--batch-rows and --threads must be 1 or more"),
])
def test_apply_bad_input(run, spec_file, tmp_path, spec_text, data_bytes, extra, code, words):
    spec = spec_file(spec_text)
    data = tmp_path / "d.csv"
    data.write_bytes(data_bytes if data_bytes is not None else b"id,text\n1,buy\n")
    out = tmp_path / "v.parquet"
    got, _, err = run("apply", spec, data, "-o", out, *extra)
    assert got == code and words in err, err
    assert not out.exists()
    out.write_bytes(b"previous output")
    got, _, err = run("apply", spec, data, "-o", out, *extra)
    assert got == code
    assert out.read_bytes() == b"previous output"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_apply_nulls_in_text_are_fine(run, tmp_path, spec_file):
    spec = spec_file(SPEC_OK)
    data = tmp_path / "d.jsonl"
    data.write_text('{"id": 1, "text": null}\n{"id": 2, "text": "buy"}\n{"id": 3}\n')
    out = tmp_path / "v.parquet"
    code, _, err = run("apply", spec, data, "-o", out, "--id", "id")
    assert code == 0, err
    assert mteach.read_votes(out)[1].tolist() == [[-1], [0], [-1]]


@pytest.mark.parametrize("name,content,words", [
    ("none.csv", None, "no such data file"),
    ("d.txt", b"x", "unknown data format '.txt'"),
    ("d.parquet", b"not parquet at all", "cannot read the data"),
    ("d.jsonl", b"{{{ not json\n", "cannot read the data"),
    ("d.jsonl", b'{"id": 1, "text": "caf\xe9"}\n', "is not valid UTF-8"),
])
def test_apply_unreadable_data(run, tmp_path, spec_file, name, content, words):
    spec = spec_file(SPEC_OK)
    data = tmp_path / name
    if content is not None:
        data.write_bytes(content)
    code, _, err = run("apply", spec, data, "-o", tmp_path / "v.parquet")
    assert code == 2 and words in err and str(data) in err
    assert not (tmp_path / "v.parquet").exists()


def test_apply_output_folder_missing(run, small_csv, tmp_path):
    spec, data = small_csv
    code, _, err = run("apply", spec, data, "-o", tmp_path / "no" / "v.parquet")
    assert code == 2 and "does not exist" in err


def test_apply_requires_output(run, small_csv):
    spec, data = small_csv
    assert run("apply", spec, data)[0] == 2


# -- stats ----------------------------------------------------------------------------------
def test_stats_table_by_hand(run, small_csv, monkeypatch):
    spec, data = small_csv
    monkeypatch.setenv("COLUMNS", "250")  # the whole table (80 columns: tests/cli/test_table_width.py)
    code, out, err = run("stats", spec, data, "--gold-column", "cls", "--gold-map", "1=SPAM,0=HAM")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["rule", "label", "coverage", "overlaps", "conflicts", "correct", "incorrect",
                                "accuracy", "interval", "recall", "where"]
    # interval: the 95% Wilson interval of the accuracy (2 right of 3 votes is far from certain)
    assert lines[2].split()[:10] == ["buy", "SPAM", "0.500", "0.167", "0.167", "2", "1", "0.667", "0.208–0.939", "0.667"]
    assert lines[3].split()[:10] == ["channel", "SPAM", "0.167", "0.000", "0.000", "1", "0", "1.000", "0.207–1.000",
                                     "0.333"]
    assert lines[4].split()[:10] == ["song", "HAM", "0.333", "0.167", "0.167", "2", "0", "1.000", "0.342–1.000", "0.667"]
    assert lines[2].split()[10].endswith("spec.mt:4")
    assert "6 rows: 5 covered (83.3%), 1 uncovered, 1 with conflicting votes (16.7%)" in out
    assert "decides 4 of them with accuracy 100.0%" in out


def test_stats_json_by_hand(run, small_csv):
    spec, data = small_csv
    code, out, _ = run("stats", spec, data, "--gold-column", "cls", "--gold-map", "1=SPAM,0=HAM",
                       "--format", "json")
    assert code == 0
    report = json.loads(out)
    rules = {r["rule"]: r for r in report["rules"]}
    assert rules["buy"]["coverage"] == pytest.approx(0.5)
    assert rules["buy"]["accuracy"] == pytest.approx(2 / 3)
    assert rules["song"]["recall"] == pytest.approx(2 / 3)
    s = report["summary"]
    assert (s["rows"], s["covered"], s["conflicted"], s["mv_decided"], s["mv_correct"]) == (6, 5, 1, 4, 4)
    per = {c["label"]: c for c in s["per_class"]}
    assert per["SPAM"]["precision"] == 1.0 and per["SPAM"]["recall"] == 1.0
    assert per["HAM"]["precision"] == 1.0 and per["HAM"]["recall"] == pytest.approx(1 / 3)


def test_stats_without_gold_and_with_gold_file(run, small_csv, tmp_path):
    spec, data = small_csv
    code, out, _ = run("stats", spec, data, "--format", "json")
    assert code == 0 and "accuracy" not in json.loads(out)["rules"][0]
    gold = tmp_path / "gold.csv"
    gold.write_text("id,label\n1,SPAM\n4,SPAM\n2,HAM\n")
    code, out, err = run("stats", spec, data, "--gold", gold, "--id", "id", "--format", "json")
    assert code == 0, err
    rules = {r["rule"]: r for r in json.loads(out)["rules"]}
    assert (rules["buy"]["correct"], rules["buy"]["incorrect"]) == (2, 0)
    assert (rules["song"]["correct"], rules["song"]["incorrect"]) == (1, 1)
    assert json.loads(out)["summary"]["gold_rows"] == 3


@pytest.mark.parametrize("args,words", [
    (["--gold-column", "cls"], "row 1 has label '1', which is not mapped"),
    (["--gold-column", "clss", "--gold-map", "1=SPAM"], "no gold column 'clss' — did you mean cls?"),
    (["--gold-column", "cls", "--gold-map", "1=SPMA,0=HAM"], "did you mean SPAM"),
    (["--gold-map", "1=SPAM"], "--gold-map goes with --gold-column"),
    (["--gold", "g.csv"], "also give --id"),
    (["--gold", "none.csv", "--id", "id"], "no such data file"),
    (["--gold", "g.csv", "--gold-column", "cls", "--id", "id"], "not both"),
    (["--gold", "g2.csv", "--id", "id"], "none of its ids is in"),
])
def test_stats_gold_errors(run, small_csv, tmp_path, monkeypatch, args, words):
    spec, data = small_csv
    (tmp_path / "g.csv").write_text("id,label\n1,SPAM\n")
    (tmp_path / "g2.csv").write_text("id,label\n99,SPAM\n")
    monkeypatch.chdir(tmp_path)
    code, _, err = run("stats", spec, data, *args)
    assert code == 2 and words in err, err


def test_stats_spec_with_no_rules(run, small_csv, spec_file):
    _, data = small_csv
    spec = spec_file('concept c\nlabels A, B\nfield text = "text"\n', name="empty.mt")
    code, out, err = run("stats", spec, data)
    assert code == 0 and "warning: the spec has no rules yet" in err
    assert "6 rows: 0 covered" in out


# -- the installed script -------------------------------------------------------------------
def _script():
    exe = shutil.which("mteach") or str(Path(sys.executable).parent / "mteach")
    return exe if os.path.exists(exe) else None


@pytest.mark.skipif(_script() is None, reason="the mteach console script is not installed")
def test_console_script_check_and_failed_apply(tmp_path):
    exe = _script()
    ok = subprocess.run([exe, "check", str(REPO / "specs" / "youtube_spam.mt"),
                         "--data", str(REPO / "data" / "youtube" / "train.csv")],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "6/6 examples pass" in ok.stdout
    bad = tmp_path / "d.csv"
    bad.write_bytes(b"COMMENT_ID,CONTENT\n1,caf\xe9\n")
    out = tmp_path / "v.parquet"
    fail = subprocess.run([exe, "apply", str(REPO / "specs" / "youtube_spam.mt"), str(bad), "-o", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert fail.returncode == 2
    assert "not valid UTF-8" in fail.stderr and "Traceback" not in fail.stderr
    assert not out.exists()


def test_check_of_a_missing_spec_file_is_a_usage_error(tmp_path, capsys):
    code = main(["check", str(tmp_path / "missing.mt")])
    err = capsys.readouterr().err
    assert code == 2
    assert "missing.mt: no such spec file" in err and "Traceback" not in err


def test_verbs_take_spec_data_and_id_from_the_project_file(tmp_path, monkeypatch, capsys):
    root = Path(__file__).resolve().parents[2]
    shutil.copytree(root / "specs", tmp_path / "specs")
    shutil.copy(root / "data" / "youtube" / "test.csv", tmp_path / "comments.csv")
    (tmp_path / "mteach.toml").write_text(
        '[project]\nspec = "specs/youtube_spam.mt"\ndata = "comments.csv"\nid_column = "COMMENT_ID"\n')
    monkeypatch.chdir(tmp_path)
    assert main(["check"]) == 0
    assert "youtube_spam.mt: ok" in capsys.readouterr().out
    assert main(["apply", "-o", "votes.parquet", "-q"]) == 0
    assert pq.read_table(tmp_path / "votes.parquet").column_names[0] == "COMMENT_ID"
    # explicit arguments win over the project file
    assert main(["stats", "specs/youtube_spam.mt", str(root / "data" / "youtube" / "train.csv"), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["rows"] == 1586
    # one path that is data: the spec comes from the project file
    assert main(["stats", str(root / "data" / "youtube" / "train.csv"), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["rows"] == 1586
    # two paths, the data first: said plainly, no spec parse error at line 1 of a CSV
    assert main(["stats", "comments.csv", "specs/youtube_spam.mt"]) == 2
    err = capsys.readouterr().err
    assert "comments.csv: a data file where the spec (.mt) goes" in err and "SPEC DATA" in err


def test_without_a_project_file_spec_and_data_are_required(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["stats"]) == 2
    err = capsys.readouterr().err
    assert "give SPEC on the command line" in err and "mteach.toml" in err


def test_rows_lists_what_the_expert_looks_at_next(capsys):
    root = Path(__file__).resolve().parents[2]
    spec, test = str(root / "specs" / "youtube_spam.mt"), str(root / "data" / "youtube" / "test.csv")
    gold = ["--id", "COMMENT_ID", "--gold-column", "CLASS", "--gold-map", "1=SPAM,0=HAM"]

    assert main(["rows", spec, test, *gold, "--wrong", "--format", "json", "-q"]) == 0
    wrong = json.loads(capsys.readouterr().out)
    assert wrong["rows"] == 2  # the majority vote decides 329 rows with 99.4% accuracy
    assert all(r["verdict"] != r["gold"] and r["rules"] for r in wrong["shown"])

    assert main(["rows", spec, test, "--uncovered", "--limit", "5", "--format", "json", "-q"]) == 0
    uncovered = json.loads(capsys.readouterr().out)
    assert uncovered["rows"] == 41 and len(uncovered["shown"]) == 5
    assert all(r["rules"] == [] and r["verdict"] == "-" for r in uncovered["shown"])

    assert main(["rows", spec, test, "--rule", "check_out", "--limit", "0", "-q"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("71 of 370 rows:") and out.count("check_out=>SPAM") == 71

    assert main(["rows", spec, test, "--rule", "chek_out"]) == 2
    assert "did you mean check_out?" in capsys.readouterr().err
    assert main(["rows", spec, test, "--wrong"]) == 2
    assert "--wrong compares with gold labels" in capsys.readouterr().err


def test_rows_streams_batch_by_batch_and_keeps_only_what_it_prints(capsys, monkeypatch):
    """Without gold labels rows reads the file batch by batch; the count and the first rows
    shown are the same as when it reads everything at once."""
    import mteach.cli.core as core
    from mteach.engine.votes import vote_batches
    root = Path(__file__).resolve().parents[2]
    spec, test = str(root / "specs" / "youtube_spam.mt"), str(root / "data" / "youtube" / "test.csv")
    args = ["rows", spec, test, "--id", "COMMENT_ID", "--uncovered", "--limit", "30", "--format", "json", "-q"]
    assert main(args) == 0
    whole = json.loads(capsys.readouterr().out)
    batches = []
    monkeypatch.setattr(core, "vote_batches", lambda *a, **k: (batches.append(1) or b for b in
                                                               vote_batches(*a, **k, batch_rows=50)))
    assert main(args) == 0
    streamed = json.loads(capsys.readouterr().out)
    assert len(batches) == 8  # 370 rows, 50 at a time
    assert streamed == whole and whole["rows"] == 41 and len(whole["shown"]) == 30
