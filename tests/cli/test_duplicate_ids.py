"""Duplicate ids in the data: `label` warns once, with the count and an example, and says what
`explain` does with them (issue 9 item 23)."""
import json

SPEC = ('concept spam "spam"\nlabels SPAM, HAM\nfield text = "text"\n'
        'rule buy : text has "buy" => SPAM\nrule song : text has "song" => HAM\n')


def test_label_warns_once_about_repeated_ids_and_explain_shows_the_first(run, tmp_path):
    (tmp_path / "spec.mt").write_text(SPEC, encoding="utf-8")
    rows = [("a", "buy now"), ("b", "nice song"), ("a", "a song"), ("c", "buy it"), ("c", "song"), ("c", "song!"),
            ("d", "hello")]
    (tmp_path / "data.csv").write_text("id,text\n" + "".join(f"{i},{t}\n" for i, t in rows), encoding="utf-8")
    code, _, err = run("label", tmp_path / "spec.mt", tmp_path / "data.csv", "--id", "id",
                       "-o", tmp_path / "l.parquet", "-q")
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, err
    assert "3 rows repeat an id" in warnings[0] and "2 ids" in warnings[0] and "'a' on 2 rows" in warnings[0]
    assert "explain --id a" in warnings[0] and "first" in warnings[0]
    code, out, _ = run("explain", tmp_path / "l.parquet", "--id", "a", "--format", "json")
    assert code == 0 and json.loads(out)["label"] == "SPAM"  # the first row with id a: "buy now"


def test_unique_ids_give_no_warning(run, tmp_path):
    (tmp_path / "spec.mt").write_text(SPEC, encoding="utf-8")
    (tmp_path / "data.csv").write_text("id,text\na,buy\nb,song\n", encoding="utf-8")
    code, _, err = run("label", tmp_path / "spec.mt", tmp_path / "data.csv", "--id", "id",
                       "-o", tmp_path / "l.parquet", "-q")
    assert code == 0 and "warning" not in err, err
