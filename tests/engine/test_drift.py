"""mteach.engine.drift: the tests, the streaming summaries and the report on known shifts."""
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from mteach.engine.analysis import wilson_interval
from mteach.engine.drift import (Reservoir, cohens_h, drift, holm, render_drift_report, two_proportions,
                                 write_drift_report)
from mteach.engine.gold import GoldRequest
from mteach.errors import DataError
from mteach.settings import settings_from_dict

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "specs" / "youtube_spam.mt"
TRAIN = ROOT / "data" / "youtube" / "train.csv"
TEST = ROOT / "data" / "youtube" / "test.csv"
GOLD = GoldRequest(column="CLASS", mapping="1=SPAM,0=HAM")
URL = re.compile(r"(https?://)?(www\.)?([\w-]+)\.(com|net|org|ly|tk|info|biz)\b([^\s<>\"]*)", re.I)


def obfuscate_links(text: str) -> str:
    """What a spammer does when links get caught: 'example dot com', spaces inside URLs."""
    def one(m):
        return f"{m.group(3)} dot {m.group(4)} {m.group(5).replace('?', ' ? ').replace('=', ' = ')}"
    text = URL.sub(one, text.replace("http://", "").replace("https://", "").replace("www.", "www "))
    return text.replace("watch?v=", "watch ? v = ")


@pytest.fixture(scope="module")
def youtube(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("yt")
    test = pacsv.read_csv(TEST)
    content = [obfuscate_links(t) for t in test.column("CONTENT").to_pylist()]
    obf = test.set_column(test.column_names.index("CONTENT"), "CONTENT", pa.array(content))
    pacsv.write_csv(obf, tmp / "obfuscated.csv")
    train = pacsv.read_csv(TRAIN)
    order = np.random.default_rng(3).permutation(train.num_rows)
    half = train.num_rows // 2
    pq.write_table(train.take(pa.array(order[:half])), tmp / "half_a.parquet")
    pq.write_table(train.take(pa.array(order[half:])), tmp / "half_b.parquet")
    return tmp


# -- the statistics ----------------------------------------------------------------------------
def test_holm_adjusts_step_down_and_keeps_order():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005*4, 0.01*3, 0.03*2, 0.04*1 -> 0.02, 0.03, 0.06, 0.06 (monotone)
    assert np.allclose(holm(p), [0.03, 0.06, 0.06, 0.02])
    assert np.allclose(holm([0.9, 0.8]), [1.0, 1.0])   # 0.8 * 2 caps at 1; never below an earlier step
    assert len(holm([])) == 0


def test_wilson_interval_known_values():
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    low, high = wilson_interval(10, 10)   # p ± z·se would give [1, 1]
    assert high == 1.0 and low == pytest.approx(0.7225, abs=1e-4)
    assert all(np.isnan(wilson_interval(0, 0)))


def test_two_proportions_and_cohens_h():
    assert two_proportions(0, 100, 0, 100) == 1.0
    assert two_proportions(50, 1000, 51, 1000) > 0.5
    assert two_proportions(200, 1000, 20, 1000) < 1e-20
    assert two_proportions(3, 10, 0, 10) < 0.25          # small counts: Fisher's exact test
    assert cohens_h(0.5, 0.5) == 0.0
    assert cohens_h(0.2, 0.0) == pytest.approx(-0.9273, abs=1e-4)


def test_reservoir_is_a_uniform_sample_whatever_the_batching():
    keys = np.random.default_rng(0).random(10_000)
    values = np.arange(10_000, dtype=float)
    whole, pieces = Reservoir(500), Reservoir(500)
    whole.offer(keys, values)
    for start in range(0, 10_000, 777):
        pieces.offer(keys[start:start + 777], values[start:start + 777])
    assert np.array_equal(whole.ordered(), pieces.ordered())
    assert np.array_equal(np.sort(whole.items), np.sort(values[np.argsort(keys)[:500]]))
    assert 4000 < whole.items.mean() < 6000     # spread over the whole range


# -- the report on known cases -----------------------------------------------------------------
def test_no_drift_between_two_random_halves_of_the_same_files(youtube):
    report = drift(SPEC, youtube / "half_a.parquet", youtube / "half_b.parquet", id_column="COMMENT_ID")
    assert not report.flagged and report.findings == []
    assert all(not e["flagged"] for e in report.rules)
    assert all(e["p_adjusted"] >= e["p_value"] for e in report.rules)


def test_obfuscated_links_make_the_link_rule_the_first_finding(youtube):
    report = drift(SPEC, TRAIN, youtube / "obfuscated.csv", id_column="COMMENT_ID", gold=GOLD)
    assert report.flagged
    first = report.rules[0]
    assert first["rule"] == "link" and first["flagged"] and first["new_coverage"] == 0.0
    assert first["direction"] == "stopped firing" and first["effect"] < -0.7
    assert report.findings[0].startswith("rule link (")
    assert first["where"].endswith("youtube_spam.mt:22")
    # what the rule used to catch, shown from the reference
    assert first["examples"]["reference"] and not first["examples"]["new"]
    assert any(t["term"] == "dot" for t in next(f for f in report.fields if f["field"] == "text")["new_terms"])


def test_json_shape_and_spot_check(youtube):
    report = drift(SPEC, TRAIN, youtube / "obfuscated.csv", id_column="COMMENT_ID", gold=GOLD)
    d = report.to_dict()
    for key in ("rules", "labels", "fields", "estimated_accuracy", "spot_check"):
        assert key in d
    for e in d["rules"]:
        assert {"rule", "reference_coverage", "new_coverage", "p_value", "flagged"} <= set(e)
    assert len(d["rules"]) == 14
    labels = d["labels"]["label_model"]
    assert set(labels["reference"]) == {"SPAM", "HAM"} and labels["js_divergence"] >= 0
    acc = d["estimated_accuracy"]
    assert 0 < acc["new"]["estimated"] <= 1 and acc["new"]["low"] <= acc["new"]["estimated"] <= acc["new"]["high"]
    assert acc["new"]["measured_rows"] > 300 and "calibration" in acc["note"]
    assert acc["reference_gap"] == pytest.approx(acc["reference"]["estimated"] - acc["reference"]["measured"])
    queue = report.queue
    assert len(queue) == 100 == d["spot_check"]["rows"]
    assert len({q["id"] for q in queue}) == 100
    assert [q["part"] for q in queue[:50]] == ["uniform"] * 50
    assert {"uncovered", "uncertain"} <= {q["part"] for q in queue[50:]}


def test_deterministic_and_independent_of_batch_size(youtube):
    a = drift(SPEC, TRAIN, youtube / "obfuscated.csv", id_column="COMMENT_ID")
    b = drift(SPEC, TRAIN, youtube / "obfuscated.csv", id_column="COMMENT_ID", batch_rows=97, threads=3)
    assert a.to_dict() == b.to_dict() and a.queue == b.queue


def test_thresholds_come_from_settings(youtube):
    strict = settings_from_dict({"drift": {"min_effect": 2.0, "min_js": 1.0, "min_ks": 1.0,
                                           "max_accuracy_drop": 1.0, "spot_check": 10}})
    report = drift(SPEC, TRAIN, youtube / "obfuscated.csv", id_column="COMMENT_ID", settings=strict)
    assert not report.flagged                 # significant, but no effect passes the thresholds
    assert report.rules[0]["p_adjusted"] < 0.05
    assert len(report.queue) == 10


def test_a_number_field_is_compared_by_ks(tmp_path, spec_file):
    spec = spec_file('concept c "c"\nlabels A, B\nfield n = "n"\nfield t = "t"\n'
                     'rule big : n > 10 => A\nrule small : n <= 10 => B\n')
    rng = np.random.default_rng(0)
    for name, loc in (("ref", 5.0), ("new", 8.0)):
        pq.write_table(pa.table({"n": rng.normal(loc, 3, 4000), "t": ["a b c"] * 4000}), tmp_path / f"{name}.parquet")
    report = drift(spec, tmp_path / "ref.parquet", tmp_path / "new.parquet")
    number = next(f for f in report.fields if f["field"] == "n")
    assert number["flagged"] and number["statistic"] > 0.3 and number["kind"] == "number"
    assert number["new"]["median"] > number["reference"]["median"] + 2


# -- bad input ---------------------------------------------------------------------------------
def test_different_schemas_are_reported_field_by_field(tmp_path, spec_file):
    spec = spec_file('concept c "c"\nlabels A, B\nfield t = "t"\nfield n = "n"\nrule r : n > 1 => A\n')
    pq.write_table(pa.table({"t": ["x", "y"], "n": [1.0, 2.0]}), tmp_path / "ref.parquet")
    pq.write_table(pa.table({"n": ["1", "2"], "u": ["x", "y"]}), tmp_path / "new.parquet")
    with pytest.raises(DataError) as err:
        drift(spec, tmp_path / "ref.parquet", tmp_path / "new.parquet")
    message = str(err.value)
    assert "column 't' (field t): in the reference, missing in the new data" in message
    assert "column 'n' (field n): number (double) in the reference, text (string) in the new data" in message


def test_an_empty_new_file_is_an_error_not_no_drift(tmp_path, spec_file):
    spec = spec_file('concept c "c"\nlabels A, B\nfield t = "t"\nrule r : t has "x" => A\n')
    pq.write_table(pa.table({"t": ["x", "y"]}), tmp_path / "ref.parquet")
    pq.write_table(pa.table({"t": pa.array([], pa.string())}), tmp_path / "new.parquet")
    with pytest.raises(DataError, match="no rows"):
        drift(spec, tmp_path / "ref.parquet", tmp_path / "new.parquet")
    (tmp_path / "new.csv").write_text("t\n")
    with pytest.raises(DataError, match="no rows"):
        drift(spec, tmp_path / "ref.parquet", tmp_path / "new.csv")


# -- the written report ------------------------------------------------------------------------
def test_report_files_are_offline_and_escaped(tmp_path):
    hostile = tmp_path / "new.csv"
    test = pacsv.read_csv(TEST)
    content = test.column("CONTENT").to_pylist()
    content[:40] = ['<script>alert("x")</script> check out my channel'] * 40
    pacsv.write_csv(test.set_column(3, "CONTENT", pa.array(content)), hostile)
    report = drift(SPEC, TRAIN, hostile, id_column="COMMENT_ID")
    paths = write_drift_report(report, tmp_path / "report", "COMMENT_ID")
    html = paths["report"].read_text(encoding="utf-8")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert not re.search(r'(src|href)="(https?:)?//', html)          # no external assets
    assert 'href="queue.csv"' in html and "only as good as the calibration" in html
    queue = pacsv.read_csv(paths["queue"])
    assert queue.column_names == ["id", "part", "verdict", "confidence", "rules", "text"]
    assert queue.column("id").to_pylist() == [q["id"] for q in report.queue]
    assert render_drift_report(report) == render_drift_report(report)
