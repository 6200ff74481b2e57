"""mteach drift end to end: exit codes, JSON, the report folder, refusals, and the spot check's
road back (tui --queue, then stats / predict --gold with a Wilson interval)."""
import asyncio
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from mteach.cli import main

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "specs" / "youtube_spam.mt"
TRAIN = ROOT / "data" / "youtube" / "train.csv"
TEST = ROOT / "data" / "youtube" / "test.csv"
GOLD = ["--gold-column", "CLASS", "--gold-map", "1=SPAM,0=HAM"]
FAST = "[features]\nchar_ngrams = false\n[end_model]\nepochs = 4\n"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The bundled spec beside the train file, and file 05 with every link turned into 'x dot com'."""
    tmp = tmp_path_factory.mktemp("drift")
    shutil.copytree(SPEC.parent, tmp / "specs")
    test = pacsv.read_csv(TEST)
    content = [t.replace("http://", "").replace("https://", "").replace("www.", "www ")
               .replace(".com", " dot com").replace(".ly", " dot ly").replace("watch?v=", "watch ? v = ")
               for t in test.column("CONTENT").to_pylist()]
    pacsv.write_csv(test.set_column(3, "CONTENT", pa.array(content)), tmp / "obfuscated.csv")
    return tmp


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["drift", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for word in ("REFERENCE", "NEW", "--model", "-o", "--format", "Exit 0 no drift, 3 drift flagged"):
        assert word in out


def test_no_drift_exits_0(run):
    code, out, _ = run("drift", SPEC, TRAIN, TRAIN, "--id", "COMMENT_ID")
    assert code == 0 and "no drift" in out


def test_drift_exits_3_with_the_link_rule_first_in_json(run, data):
    code, out, _ = run("drift", SPEC, TRAIN, data / "obfuscated.csv", "--id", "COMMENT_ID",
                       "--format", "json", *GOLD)
    assert code == 3
    report = json.loads(out)
    assert report["flagged"] and report["rules"][0]["rule"] == "link" and report["rules"][0]["flagged"]
    assert report["rules"][0]["new_coverage"] < 0.05 < report["rules"][0]["reference_coverage"] - 0.05
    for key in ("rule", "reference_coverage", "new_coverage", "p_value", "flagged"):
        assert key in report["rules"][0]
    assert {"labels", "fields", "estimated_accuracy", "spot_check"} <= set(report)
    assert report["estimated_accuracy"]["new"]["measured"] is not None


def test_table_output_and_report_folder(run, data, tmp_path):
    out_dir = tmp_path / "report"
    code, out, err = run("drift", SPEC, TRAIN, data / "obfuscated.csv", "--id", "COMMENT_ID",
                         "-o", out_dir)
    assert code == 3
    assert "DRIFT" in out and "1. rule link" in out and "only as good as the calibration" in out
    assert {p.name for p in out_dir.iterdir()} == {"index.html", "queue.csv", "drift.json"}
    assert f"{out_dir / 'queue.csv'} (100 rows to review)" in err
    assert json.loads((out_dir / "drift.json").read_text())["spot_check"]["queue"].endswith("queue.csv")


@pytest.mark.parametrize("make, message", [
    (lambda d: (d / "new.csv").write_text("COMMENT_ID,TEXT\n1,hello\n"),
     "column 'CONTENT' (field text): in the reference, missing in the new data"),
    (lambda d: (d / "new.csv").write_text(""), "empty"),
    (lambda d: (d / "new.csv").write_text("COMMENT_ID,CONTENT\n"), "no rows"),
])
def test_bad_new_data_exits_2_before_any_work(run, tmp_path, make, message):
    make(tmp_path)
    code, out, err = run("drift", SPEC, TRAIN, tmp_path / "new.csv", "--id", "COMMENT_ID",
                         "-o", tmp_path / "report")
    assert code == 2 and message in err and out == ""
    assert not (tmp_path / "report").exists()


def test_model_from_another_spec_version_is_refused(run, data, tmp_path):
    config = tmp_path / "mteach.toml"
    config.write_text(FAST)
    model = tmp_path / "model"
    assert main(["train", str(data / "specs" / "youtube_spam.mt"), str(TRAIN), "-o", str(model), "--id",
                 "COMMENT_ID", "--config", str(config), "-q"]) == 0
    code, out, _ = run("drift", data / "specs" / "youtube_spam.mt", TRAIN, TEST, "--id", "COMMENT_ID",
                       "--model", model, "--format", "json", *GOLD)
    assert code in (0, 3)
    report = json.loads(out)
    assert report["labels"]["model"]["rows"] == "all rows"
    assert report["estimated_accuracy"]["scorer"] == "model"
    assert report["estimated_accuracy"]["new"]["scored_rows"] == 370
    edited = data / "specs" / "youtube_spam.mt"
    edited.write_text(edited.read_text() + "\nrule extra : text has \"zzz\" => HAM\n")
    code, _, err = run("drift", edited, TRAIN, TEST, "--id", "COMMENT_ID", "--model", model)
    assert code == 2 and "trained on another version of the spec" in err


def test_thresholds_from_the_project_file(run, data, tmp_path):
    config = tmp_path / "mteach.toml"
    config.write_text("[drift]\nmin_effect = 3.0\nmin_js = 1.0\nmin_ks = 1.0\nmax_accuracy_drop = 1.0\n")
    code, out, _ = run("drift", SPEC, TRAIN, data / "obfuscated.csv", "--id", "COMMENT_ID",
                       "--config", config)
    assert code == 0 and "no drift" in out
    config.write_text("[drift]\nmin_efect = 3.0\n")
    code, _, err = run("drift", SPEC, TRAIN, data / "obfuscated.csv", "--config", config)
    assert code == 2 and "did you mean 'min_effect'" in err


def test_spot_check_queue_opens_in_review_then_stats_and_predict_measure_it(run, data, tmp_path):
    """The loop the issue describes: drift writes the queue, the expert labels it in the studio,
    stats and predict --gold then report the measured accuracy with a Wilson interval."""
    from mteach.tui.session import Session, gold_path_for
    out_dir = tmp_path / "report"
    new = data / "obfuscated.csv"
    assert run("drift", SPEC, TRAIN, new, "--id", "COMMENT_ID", "-o", out_dir, "-q")[0] == 3
    queue = pacsv.read_csv(out_dir / "queue.csv").column("id").to_pylist()
    spec = tmp_path / "spam.mt"
    shutil.copy(SPEC, spec)
    shutil.copytree(SPEC.parent / "lexicons", tmp_path / "lexicons")
    session = Session.open(spec, new, id_column="COMMENT_ID", reviewer="t", queue=out_dir / "queue.csv")
    a = session.analyze(session.read_spec_text())
    session.accept(a)
    truth = dict(zip(pacsv.read_csv(new).column("COMMENT_ID").to_pylist(),
                     pacsv.read_csv(new).column("CLASS").to_pylist()))
    seen = []
    while (i := session.next_to_review(a, "all")) is not None:   # exactly the queue, in its order
        seen.append(session.id_list[i])
        session.record(i, "SPAM" if truth[session.id_list[i]] == 1 else "HAM")
    assert seen == queue and session.remaining(a, "all") == 0
    gold = gold_path_for(spec)
    code, out, _ = run("stats", spec, new, "--id", "COMMENT_ID", "--gold", gold)
    assert code == 0 and "95% Wilson interval" in out
    code, out, _ = run("stats", spec, new, "--id", "COMMENT_ID", "--gold", gold, "--format", "json")
    s = json.loads(out)["summary"]
    assert s["gold_rows"] == 100 and s["mv_accuracy_low"] < s["mv_correct"] / s["mv_decided"] < s["mv_accuracy_high"]


def test_review_pane_opens_on_the_queue(data, tmp_path):
    from mteach.tui.app import StudioApp
    from mteach.tui.session import Session
    queue = tmp_path / "queue.csv"
    ids = pacsv.read_csv(TEST).column("COMMENT_ID").to_pylist()
    queue.write_text("id,part\n" + f"{ids[7]},uniform\n{ids[3]},uncovered\n")
    spec = tmp_path / "spam.mt"
    shutil.copy(SPEC, spec)
    shutil.copytree(SPEC.parent / "lexicons", tmp_path / "lexicons")
    session = Session.open(spec, TEST, id_column="COMMENT_ID", reviewer="t", queue=queue)

    async def check():
        app = StudioApp(session, cursor_blink=False, contributions=False)
        async with app.run_test(size=(120, 40)) as pilot:
            for _ in range(50):
                await pilot.pause(0.1)
                if session.last is not None:
                    break
            await pilot.pause(0.2)
            pane = app.query_one("#review-pane")
            assert app.query_one("TabbedContent").active == "review"
            assert pane.current == 7
            await pilot.press("1")
            await pilot.pause(0.2)
            assert pane.current == 3
    asyncio.run(check())


def test_a_queue_id_not_in_the_data_names_the_line(run, tmp_path):
    queue = tmp_path / "queue.csv"
    ids = pacsv.read_csv(TEST).column("COMMENT_ID").to_pylist()
    queue.write_text(f"id\n{ids[0]}\nnot-an-id\n")
    code, _, err = run("tui", SPEC, TEST, "--id", "COMMENT_ID", "--queue", queue)
    assert code == 2 and "line 3: id 'not-an-id' is not in" in err


def test_predict_gold_reports_a_wilson_interval(run, tmp_path):
    config = tmp_path / "mteach.toml"
    config.write_text(FAST)
    model = tmp_path / "model"
    assert main(["train", str(SPEC), str(TRAIN), "-o", str(model), "--config", str(config), "-q"]) == 0
    code, out, _ = run("predict", model, TEST, *GOLD, "--format", "json")
    combined = json.loads(out)["combined"]["all"]
    assert combined["rows"] == 370 and combined["low"] < combined["accuracy"] < combined["high"]
    assert combined["high"] - combined["low"] < 0.1
