"""train / predict / label --model end to end on the bundled YouTube data, with fast settings."""
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from mteach.cli import main

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "specs" / "youtube_spam.mt"
TRAIN = ROOT / "data" / "youtube" / "train.csv"
TEST = ROOT / "data" / "youtube" / "test.csv"
GOLD = ["--gold-column", "CLASS", "--gold-map", "1=SPAM,0=HAM"]
FAST = """
[features]
char_ngrams = false
[end_model]
epochs = 4
"""




@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("model")
    config = tmp / "mteach.toml"
    config.write_text(FAST)
    folder = tmp / "m"
    assert main(["train", str(SPEC), str(TRAIN), "-o", str(folder), "--id", "COMMENT_ID",
                 "--config", str(config), "-q"]) == 0
    return folder


def test_train_writes_a_model_folder_without_pickle(model_dir):
    names = {p.name for p in model_dir.iterdir()}
    assert {"model.json", "spec", "rules.parquet", "end_model", "report.json"} <= names
    meta = json.loads((model_dir / "model.json").read_text())
    assert meta["labels"] == ["SPAM", "HAM"]
    assert len(meta["spec_hash"]) == 64
    assert meta["settings"]["end_model"]["epochs"] == 4
    assert (model_dir / "spec" / "youtube_spam.mt").read_text() == SPEC.read_text()
    assert (model_dir / "spec" / "lexicons" / "self_promotion.txt").exists()
    report = json.loads((model_dir / "report.json").read_text())
    assert len(report["end_model"]["history"]) == 4
    assert {h["hint"] for h in report["hints"]} == {'hint more "subscribe" => SPAM', 'hint more "song" => HAM',
                                                   'hint "great song" -> "great song, check out my channel" => SPAM'}
    for h in report["hints"]:
        assert 0.0 <= h["satisfied"] <= 1.0


def test_each_hint_is_measured_against_the_same_run_without_it(model_dir, run):
    from mteach.engine.train import _feature_table, load_model
    report = json.loads((model_dir / "report.json").read_text())
    names = [h["hint"] for h in report["hints"]]
    model = load_model(model_dir)
    assert len(model.without_hint) == 3
    for i, other in enumerate(model.without_hint):
        # trained with every hint but this one, same settings and seed
        assert set(other.history_[0]["hints"]) == set(names) - {names[i]}
        assert other.get_params() == model.end_model.get_params()
    code, out, _ = run("predict", model_dir, TEST, "--id", "COMMENT_ID", *GOLD, "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert [h["hint"] for h in data["hints"]] == names
    import pyarrow.csv as pacsv
    test = pacsv.read_csv(TEST)
    X = model.featurizer.transform(_feature_table(model.spec, test))
    gold = np.where(np.asarray(test.column("CLASS").to_pylist()) == 1, 0, 1)
    with_all = model.end_model.predict(X)
    for h, other in zip(data["hints"], model.without_hint):
        without = other.predict(X)
        assert h["flipped"] == int((with_all != without).sum())
        assert h["accuracy"] == pytest.approx(float((with_all == gold).mean()))
        assert h["accuracy_without"] == pytest.approx(float((without == gold).mean()))
        assert 0.0 <= h["satisfied_without"] <= 1.0
    code, out, _ = run("predict", model_dir, TEST, "--id", "COMMENT_ID", *GOLD)
    assert "satisfied_without" in out and "accuracy_without" in out and names[0] in out


def test_predict_labels_every_row_and_says_who_decided(model_dir, tmp_path, run):
    out = tmp_path / "pred.parquet"
    code, stdout, err = run("predict", model_dir, TEST, "--id", "COMMENT_ID", "-o", out, *GOLD)
    assert code == 0
    t = pq.read_table(out)
    assert t.num_rows == 370
    assert set(t.column("decided_by").to_pylist()) == {"rules", "end_model"}
    p = np.column_stack([t.column("p_SPAM").to_numpy(), t.column("p_HAM").to_numpy()])
    assert np.allclose(p.sum(axis=1), 1.0)
    assert set(t.column("label").to_pylist()) == {"SPAM", "HAM"}
    # the evaluation table puts majority vote, label model, end model and combined side by side,
    # on all, covered and uncovered gold rows: accuracy with its Wilson interval, f1, ece, rows
    lines = stdout.splitlines()
    assert lines[0].split() == ["method", "rows", "on", "accuracy", "95%", "interval", "f1", "ece", "rows"]
    table = {tuple(line.rsplit(None, 6)[:2]): line.split()[-5:] for line in lines[2:14]}
    assert len(table) == 12 and ("combined", "all") in table and ("majority vote", "uncovered") in table
    accuracy, interval, f1, ece, rows = table[("combined", "all")]
    low, high = map(float, interval.split("–"))
    assert low < float(accuracy) < high
    assert float(accuracy) > 0.85 and float(f1) > 0.85 and 0 <= float(ece) < 0.2 and rows == "370"
    assert "f1: of SPAM" in stdout


def test_predict_json_gives_each_method_on_all_covered_and_uncovered_rows(model_dir, run):
    code, stdout, _ = run("predict", model_dir, TEST, "--id", "COMMENT_ID", *GOLD, "--format", "json")
    assert code == 0
    ev = json.loads(stdout)
    assert set(ev) == {"majority_vote", "label_model", "end_model", "combined", "hints"}
    import pyarrow.csv as csv
    from mteach.engine.train import load_model
    table = csv.read_csv(TEST)
    model = load_model(model_dir)
    result = model.predict(table)
    gold = np.where(np.array(table.column("CLASS")) == 1, 0, 1)  # SPAM = 0 in the spec
    covered = result["covered"]
    for scope, mask in (("all", np.ones_like(covered)), ("covered", covered), ("uncovered", ~covered)):
        fig = ev["combined"][scope]
        assert fig["rows"] == int(mask.sum())
        pred = result["label"][mask]
        assert fig["accuracy"] == pytest.approx((pred == gold[mask]).mean())
        assert fig["low"] <= fig["accuracy"] <= fig["high"]
        tp = ((pred == 0) & (gold[mask] == 0)).sum()
        assert fig["f1"] == pytest.approx(2 * tp / ((pred == 0).sum() + (gold[mask] == 0).sum()))
        assert 0 <= fig["ece"] <= 1
        for method in ("majority_vote", "label_model", "end_model", "combined"):
            assert set(ev[method][scope]) == {"accuracy", "low", "high", "f1", "ece", "rows"}
    # the label model alone on rows no rule covers is the class prior; covered rows are where it learns
    assert ev["label_model"]["covered"]["accuracy"] > ev["label_model"]["all"]["accuracy"]


def test_predict_is_deterministic(model_dir, tmp_path, run):
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    for out in (a, b):
        assert run("predict", model_dir, TEST, "--id", "COMMENT_ID", "-o", out)[0] == 0
    assert pq.read_table(a).equals(pq.read_table(b))


def test_training_twice_with_the_same_seed_gives_the_same_model(model_dir, tmp_path):
    config = tmp_path / "mteach.toml"
    config.write_text(FAST)
    again = tmp_path / "m"
    assert main(["train", str(SPEC), str(TRAIN), "-o", str(again), "--id", "COMMENT_ID",
                 "--config", str(config), "-q"]) == 0
    assert (again / "end_model" / "weights.pt").read_bytes() == (model_dir / "end_model" / "weights.pt").read_bytes()
    assert json.loads((again / "model.json").read_text())["label_model"] == \
        json.loads((model_dir / "model.json").read_text())["label_model"]


def test_a_model_from_another_spec_version_is_refused(model_dir, tmp_path, run):
    shutil.copytree(SPEC.parent, tmp_path / "specs")
    edited = tmp_path / "specs" / "youtube_spam.mt"
    edited.write_text(edited.read_text().replace("words(text) <= 5", "words(text) <= 4"))
    code, _, err = run("predict", model_dir, TEST, "--spec", edited, "-o", tmp_path / "p.parquet")
    assert code == 2
    assert "trained on another version of the spec" in err
    assert not (tmp_path / "p.parquet").exists()


def test_a_tampered_or_corrupt_model_folder_is_refused(model_dir, tmp_path, run):
    broken = tmp_path / "m"
    shutil.copytree(model_dir, broken)
    spec_copy = broken / "spec" / "youtube_spam.mt"
    spec_copy.write_text(spec_copy.read_text() + "\nrule extra : text has \"zzz\" => SPAM\n")
    code, _, err = run("predict", broken, TEST, "-o", tmp_path / "p.parquet")
    assert code == 2 and "changed after training" in err

    shutil.rmtree(broken)
    shutil.copytree(model_dir, broken)
    weights = broken / "end_model" / "weights.pt"
    weights.write_bytes(weights.read_bytes()[:100])
    code, _, err = run("predict", broken, TEST, "-o", tmp_path / "p.parquet")
    assert code == 2 and "retrain" in err.lower() or "weights" in err.lower()

    code, _, err = run("predict", tmp_path, TEST, "-o", tmp_path / "p.parquet")
    assert code == 2 and "not a model folder" in err


def write_spec(folder: Path, body: str) -> Path:
    spec = folder / "s.mt"
    spec.write_text('concept spam "x"\nlabels SPAM, HAM\nfield text = "CONTENT"\n' + body)
    return spec


@pytest.mark.parametrize("body, message", [
    ('rule a : text has "check out" => SPAM\n', "no rule votes HAM"),
    ('rule a : text has "zzzqqq" => SPAM\nrule b : text has "qqqzzz" => HAM\n', "no rule of"),
    ('rule a : text has "check out" => SPAM\nrule b : words(text) < 3 => HAM\nhint more "xyzzyplugh" => SPAM\n',
     "xyzzyplugh"),
    ('rule a : text has "pewdiepie" => SPAM\nrule b : text has "zzzqqq" => HAM\n', "no rule votes HAM"),
    ('rule a : text ~ /swagbucks/i => SPAM\nrule b : text == "awesome\ufeff" => HAM\n',
     "too few to train on"),
    ('', "no rules to learn from"),
])
def test_training_refuses_what_it_cannot_learn(tmp_path, run, body, message):
    config = tmp_path / "mteach.toml"
    config.write_text(FAST)
    code, _, err = run("train", write_spec(tmp_path, body), TRAIN, "-o", tmp_path / "m",
                       "--config", config, "-q")
    assert code == 2
    assert message in err
    assert not (tmp_path / "m").exists()


def test_unknown_setting_is_named(tmp_path, run):
    config = tmp_path / "mteach.toml"
    config.write_text("[end_model]\nepoch = 3\n")
    code, _, err = run("train", SPEC, TRAIN, "-o", tmp_path / "m", "--config", config, "-q")
    assert code == 2
    assert "epoch" in err and "epochs" in err


def test_label_with_a_model_lets_the_end_model_decide_uncovered_rows(model_dir, tmp_path, run):
    ledger = tmp_path / "ledger.parquet"
    code, _, err = run("label", SPEC, TEST, "-o", ledger, "--id", "COMMENT_ID", "--model", model_dir, "-q")
    assert code == 0, err
    t = pq.read_table(ledger)
    decided = t.column("decided_by").to_pylist()
    assert decided.count("none") == 0 and decided.count("end_model") > 0
    row = decided.index("end_model")
    feats = t.column("end_model_features")[row].as_py()
    assert feats and all(f["weight"] > 0 for f in feats)
    row_id = t.column("id")[row].as_py()
    code, out, _ = run("explain", ledger, "--id", row_id)
    assert code == 0
    assert "decided by the end model" in out and feats[0]["feature"] in out

    # covered rows: the rules' contributions plus the end model's term add up to the probability
    covered = decided.index("rules")
    e = json.loads(run("explain", ledger, "--id", t.column("id")[covered].as_py(), "--format", "json")[1])
    total = e["baseline_log_odds"] + sum(v["contribution"] for v in e["votes"]) + (e.get("end_model_contribution") or 0)
    assert 1 / (1 + np.exp(-total)) == pytest.approx(e["probability"], abs=1e-9)


def test_with_gold_the_blend_is_chosen_on_gold_and_never_loses_to_the_rules(tmp_path, run):
    config = tmp_path / "mteach.toml"
    config.write_text(FAST)
    folder = tmp_path / "m"
    code, out, err = run("train", SPEC, TRAIN, "-o", folder, "--id", "COMMENT_ID", "--config", config, *GOLD)
    assert code == 0, err
    report = json.loads((folder / "report.json").read_text())
    assert "gold rows covered by the rules, out-of-fold" in report["blend"]["chosen_on"]
    # both models are calibrated on gold: the label model in sample, the end model on its
    # cross-fitted (out-of-fold) predictions; the report and the printout say so
    cal = report["calibration"]
    assert cal["label_model"]["fitted_on"] == "gold rows" and cal["label_model"]["temperature"] != 1.0
    assert cal["end_model"]["fitted_on"].startswith("out-of-fold") and 0 <= cal["end_model"]["ece"] < 0.1
    assert "end model calibration: temperature" in out
    meta = json.loads((folder / "model.json").read_text())
    assert meta["end_model_temperature"] == cal["end_model"]["temperature"]
    assert meta["label_model"]["state"]["temperature_"] == cal["label_model"]["temperature"]
    g = report["gold"]
    assert g["rows"] == 1586 and "optimistic" in g["note"]
    # on the covered gold rows the blended verdict is at least as good as the label model's
    from mteach.engine.train import load_model
    import pyarrow.csv as csv
    model = load_model(folder)
    table = csv.read_csv(TRAIN)
    votes = model.votes(table)
    result = model.predict(table, votes)
    gold = np.where(np.array(table.column("CLASS")) == 1, 0, 1)
    covered = result["covered"]
    blended = (result["label"][covered] == gold[covered]).mean()
    rules_alone = (result["lm_proba"].argmax(1)[covered] == gold[covered]).mean()
    assert blended >= rules_alone
    assert "on 1,586 gold rows" in out
    # predict carries the calibrated end model: its probabilities at the recorded temperature
    raw = model.end_model.predict_proba(model.featurizer.transform(
        _fields(model, table)))
    t_end = cal["end_model"]["temperature"]
    expected = np.exp(np.log(raw) / t_end)
    np.testing.assert_allclose(result["em_proba"], expected / expected.sum(1, keepdims=True), atol=1e-9)
    # the ledger carries the calibrated values, and explain's terms still add up exactly
    ledger = tmp_path / "ledger.parquet"
    code, _, err = run("label", SPEC, TEST, "-o", ledger, "--id", "COMMENT_ID", "--model", folder, "-q")
    assert code == 0, err
    t = pq.read_table(ledger)
    row = t.column("decided_by").to_pylist().index("rules")
    e = json.loads(run("explain", ledger, "--id", t.column("id")[row].as_py(), "--format", "json")[1])
    total = e["baseline_log_odds"] + sum(v["contribution"] for v in e["votes"]) + (e.get("end_model_contribution") or 0)
    assert 1 / (1 + np.exp(-total)) == pytest.approx(e["probability"], abs=1e-9)
    test = csv.read_csv(TEST)
    predicted = model.predict(test)
    assert e["probability"] == pytest.approx(predicted["proba"][row].max(), abs=1e-9)
    # the ledger records the model: its hash, its training data, its held-out figures; the audit shows them
    from mteach.engine.io import file_fingerprint
    from mteach.engine.ledger import read_ledger
    from mteach.engine.train import model_provenance
    recorded = read_ledger(ledger).run["model"]
    assert recorded["sha256"] == model_provenance(folder)["sha256"]
    assert recorded["training_data"] == {"path": TRAIN.as_posix(), "sha256": file_fingerprint(TRAIN)}
    held = recorded["held_out"]
    assert held["rows"] == 1586 and 0.8 < held["accuracy"] <= 1 and "cross-fitting" in held["on"]
    assert run("audit", ledger, "-o", tmp_path / "audit")[0] == 0
    page = (tmp_path / "audit" / "index.html").read_text(encoding="utf-8").split('id="end-model"')[1]
    assert recorded["sha256"] in page and file_fingerprint(TRAIN) in page
    assert f"{held['accuracy']:.3f} (F1 {held['f1']:.3f}) on 1,586 gold rows" in page
    assert f"calibrated: temperature {cal['end_model']['temperature']:.3f}, fitted on out-of-fold" in page
    top = (tmp_path / "audit" / "index.html").read_text(encoding="utf-8").split('id="browser"')[0]
    assert f"calibrated on gold rows (the label\nmodel's temperature {cal['label_model']['temperature']:.3f})" in top


def _fields(model, table):
    from mteach.engine.train import _feature_table
    return _feature_table(model.spec, table)


def test_max_rows_caps_the_end_models_training_rows_with_a_seeded_sample(model_dir, tmp_path, run):
    config = tmp_path / "mteach.toml"
    config.write_text(FAST + "max_rows = 300\n")
    folders = [tmp_path / "a", tmp_path / "b"]
    for folder in folders:
        code, out, err = run("train", SPEC, TRAIN, "-o", folder, "--id", "COMMENT_ID", "--config", config)
        assert code == 0, err
    used = json.loads((folders[0] / "report.json").read_text())["end_model"]["training_rows"]
    full = json.loads((model_dir / "report.json").read_text())["end_model"]["training_rows"]
    assert used["rows"] == 300 and full["rows"] == full["covered"] == used["covered"] > 300
    assert "a random sample, seed 0" in used["chosen"] and full["chosen"].startswith("all ")
    assert "end model trained on 300 of" in out  # the printed report says it too
    # the same seed draws the same rows: the same model
    assert (folders[0] / "end_model" / "weights.pt").read_bytes() == \
        (folders[1] / "end_model" / "weights.pt").read_bytes()
    config.write_text(FAST + "max_rows = 5\n")
    code, _, err = run("train", SPEC, TRAIN, "-o", tmp_path / "c", "--config", config)
    assert code == 2 and "max_rows" in err and ">= 10" in err


def test_predict_streams_batch_by_batch_with_the_same_result(model_dir, tmp_path, run):
    """Predictions written 50 rows at a time equal those computed on the whole file at once
    (the path predict takes with gold labels)."""
    from mteach.cli.common import Loaded
    from mteach.cli.learn import predict_streaming
    from mteach.engine.io import open_data
    from mteach.engine.train import load_model
    whole = tmp_path / "whole.parquet"
    assert run("predict", model_dir, TEST, "--id", "COMMENT_ID", "-o", whole, *GOLD)[0] == 0
    source = open_data(TEST)
    model = load_model(model_dir, schema=source.schema)
    streamed = tmp_path / "streamed.parquet"
    rows, covered = predict_streaming(model, Loaded(model.spec, source, "COMMENT_ID"), streamed, quiet=True,
                                      batch_rows=50)
    a, b = pq.read_table(whole), pq.read_table(streamed)
    assert rows == a.num_rows > 100 and 0 < covered < rows
    assert b.to_batches()[0].num_rows == 50  # it did go 50 rows at a time
    assert a.column("id").to_pylist() == b.column("id").to_pylist()
    assert a.column("label").to_pylist() == b.column("label").to_pylist()
    np.testing.assert_allclose(np.array(a.column("p_SPAM")), np.array(b.column("p_SPAM")), atol=1e-12)
