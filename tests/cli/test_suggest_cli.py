"""`mteach suggest`: ranked suggestions with their evidence, as a table or JSON; clear
messages and exit 2 for bad input; the empty spec and number-only data still get some."""
import json
from pathlib import Path

from mteach.cli import main

REPO = Path(__file__).resolve().parents[2]
YOUTUBE = REPO / "data/youtube/train.csv"


def run(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out
    return code, out, err


def test_json_lists_each_kind_with_its_evidence(capsys):
    code, out, err = run(capsys, "suggest", REPO / "specs/youtube_spam.mt", YOUTUBE, "--id", "COMMENT_ID",
                         "--gold-column", "CLASS", "--gold-map", "1=SPAM,0=HAM", "-n", "3", "--format", "json")
    assert code == 0, err
    items = json.loads(out)
    kinds = [s["kind"] for s in items]
    assert kinds.count("rule") == 3 and kinds.count("group") == 3 and "fix" in kinds
    assert kinds == sorted(kinds, key=["rule", "group", "fix", "review"].index)
    for s in items:
        assert {"kind", "score", "label", "spec_line", "estimated_precision", "precision_interval", "new_rows",
                "example_ids"} <= set(s)
    rule = items[0]
    assert rule["spec_line"].startswith("rule ") and rule["precision_from"] == "gold"
    lo, hi = rule["precision_interval"]
    assert lo <= rule["estimated_precision"] <= hi and rule["new_rows"] > 0
    assert all(len(i) > 10 for i in rule["example_ids"])  # comment ids, not row numbers


def test_table_for_the_header_only_spec_says_where_suggestions_come_from(capsys):
    code, out, err = run(capsys, "suggest", REPO / "specs/sms_spam.mt", REPO / "data/sms/train.csv", "--id", "id",
                         "-n", "2", "--kind", "rule,group")
    assert code == 0, err
    assert "suggestions come from the data's own structure" in err
    assert "rules to add:" in out and "groups of rows no rule covers:" in out and "rows to review" not in out
    assert "precision unknown" in out and 'rule spam_' in out and "e.g. sms" in out


def test_number_only_data_gets_thresholds(capsys, tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("amount,cls\n" + "".join(f"{i},{'BIG' if i > 60 else 'SMALL'}\n" for i in range(100)))
    spec = tmp_path / "s.mt"
    spec.write_text('concept c "c"\nlabels BIG, SMALL\nfield amount = "amount"\n')
    code, out, err = run(capsys, "suggest", spec, data, "--gold-column", "cls", "--kind", "rule", "-n", "2",
                         "--format", "json")
    assert code == 0, err
    lines = [s["spec_line"] for s in json.loads(out)]
    assert lines and all("amount >=" in l or "amount <=" in l for l in lines)
    code, _, err = run(capsys, "check", spec.with_name("s.mt"), "--data", data)
    assert code == 0


def test_a_rest_rule_behind_the_other_labels_rules_gets_its_rewrite(capsys, tmp_path):
    spec = tmp_path / "s.mt"
    spec.write_text('concept c "c"\nlabels SPAM, HAM\nfield text = "CONTENT"\n'
                    'rule a : text has "check" => SPAM\n'
                    'rule rest : words(text) <= 36 unless text has any("check") => HAM\n'
                    'rule b : text has "subscribe" => SPAM\n')
    code, out, err = run(capsys, "suggest", spec, YOUTUBE, "--kind", "fix", "--format", "json")
    assert code == 0, err
    fix = next(s for s in json.loads(out) if s["replaces"] == "rest")
    assert fix["spec_line"] == 'rule rest : words(text) <= 36 unless text has any("check", "subscribe") => HAM'
    assert fix["conflicts"] > 0 and fix["example_ids"]
    code, out, err = run(capsys, "suggest", spec, YOUTUBE, "--kind", "fix")
    assert code == 0, err
    assert "rule rest (line 5) votes HAM on" in out and f"in place of rule rest: {fix['spec_line']}" in out


def test_bad_input_is_exit_2_with_a_message(capsys, tmp_path):
    spec = REPO / "specs/youtube_spam.mt"
    code, _, err = run(capsys, "suggest", spec, YOUTUBE, "--kind", "rules")
    assert code == 2 and "--kind: 'rules' is not a kind of suggestion (kinds: rule, group, fix, review)" in err
    code, _, err = run(capsys, "suggest", spec, YOUTUBE, "-n", "0")
    assert code == 2 and "-n must be 1 or more" in err
    code, _, err = run(capsys, "suggest", spec, tmp_path / "missing.csv")
    assert code == 2 and "no such data file" in err
    code, _, err = run(capsys, "suggest", spec, YOUTUBE, "--model", tmp_path)
    assert code == 2 and "not a model folder" in err


def test_help(capsys):
    code, out, _ = run(capsys, "suggest", "--help")
    assert code == 0 and "--kind" in out and "data's own structure" in out


def test_the_cli_lists_the_engines_kinds():
    from mteach.cli import suggest as cli_suggest
    from mteach.engine import suggest as engine_suggest
    assert cli_suggest.KINDS == engine_suggest.KINDS
