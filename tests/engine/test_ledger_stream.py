"""Streaming `label` (issue 11): the label model fitted on vote-pattern counts accumulated
over batches equals the fit on every row, and the ledger written batch by batch is the same
file, byte for byte, as the one built from all rows in memory."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv  # noqa: F401 (pa.csv)
import pyarrow.parquet as pq
import pytest

from mteach.compiler.checker import load_spec
from mteach.engine import ledger as led
from mteach.engine.datasets import open_source, source_fingerprint
from mteach.engine.gold import GoldRequest
from mteach.engine.votes import collect_votes
from mteach.errors import DataError

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "specs" / "youtube_spam.mt"
TRAIN = ROOT / "data" / "youtube" / "train.csv"
GOLD = GoldRequest(column="CLASS", mapping="1=SPAM,0=HAM")


@pytest.fixture(scope="module")
def youtube():
    source = open_source(TRAIN)
    spec = load_spec(SPEC, source.schema)
    batch = collect_votes(spec, source, "COMMENT_ID", columns=GOLD.columns)
    gold = GOLD.resolve(spec.labels, batch.ids, batch.table, source.path, "COMMENT_ID")
    return spec, source, batch, gold


def _in_memory(spec, source, out, gold, settings=None):
    """Today's road: every row gathered, build_ledger, write_ledger."""
    batch = collect_votes(spec, source, "COMMENT_ID", columns=gold.columns)
    gold_index = gold.resolve(spec.labels, batch.ids, batch.table, source.path, "COMMENT_ID")
    facts = {"data": led.spec_relative(spec, source.path), "data_sha256": source_fingerprint(source),
             "spec_from_data": Path(os.path.relpath(os.path.realpath(spec.root),
                                                    os.path.realpath(source.path.parent))).as_posix(),
             "id_column": "COMMENT_ID"}
    ledger = led.build_ledger(spec, batch.ids, batch.votes, gold=gold_index, run_facts=facts,
                              fields=led.row_fields(spec, batch.table), label_model_settings=settings)
    led.write_ledger(ledger, out)
    return ledger


@pytest.mark.parametrize("gold", [GoldRequest(), GOLD], ids=["no gold", "gold column"])
def test_the_streamed_ledger_is_byte_identical_to_the_one_built_in_memory(youtube, tmp_path, gold):
    spec, source, _, _ = youtube
    reference = _in_memory(spec, source, tmp_path / "memory.parquet", gold)
    for batch_rows in (65_536, 100, 333):
        out = tmp_path / f"streamed{batch_rows}.parquet"
        ledger = led.label_data(spec, source, out, "COMMENT_ID", gold=gold, batch_rows=batch_rows)
        assert out.read_bytes() == (tmp_path / "memory.parquet").read_bytes(), batch_rows
        assert led.label_counts(ledger) == led.label_counts(reference)
        assert led.duplicate_ids_warning(ledger) == led.duplicate_ids_warning(
            led.Ledger(reference.table, reference.run, reference.rules, reference.model, out))
    assert "2 rows repeat an id" in led.duplicate_ids_warning(ledger)  # the YouTube file has two
    assert ledger.table.equals(led.read_ledger(out).table)  # rows read back when asked for


def test_a_ledger_of_several_row_groups_is_byte_identical_too(youtube, tmp_path, monkeypatch):
    spec, source, _, _ = youtube
    monkeypatch.setattr(led, "LEDGER_ROW_GROUP", 1024)  # 1,586 rows: two groups, as 2M rows would make
    reference = _in_memory(spec, source, tmp_path / "memory.parquet", GOLD)
    out = tmp_path / "streamed.parquet"
    led.label_data(spec, source, out, "COMMENT_ID", gold=GOLD, batch_rows=100)
    assert pq.ParquetFile(out).metadata.num_row_groups == 2
    assert out.read_bytes() == (tmp_path / "memory.parquet").read_bytes()
    assert led.read_ledger(out).table.equals(reference.table)  # the recorded hash checks too


def test_a_bad_gold_value_is_named_by_its_row_in_the_whole_file(youtube, tmp_path):
    spec, _, _, _ = youtube
    table = pa.csv.read_csv(TRAIN)
    gold = table.column("CLASS").to_pylist()
    gold[1234] = 7
    data = tmp_path / "data.csv"
    pa.csv.write_csv(table.set_column(table.column_names.index("CLASS"), "CLASS", pa.array(gold)), data)
    with pytest.raises(DataError, match=r"row 1235 has label '7'"):
        led.label_data(spec, data, tmp_path / "l.parquet", "COMMENT_ID", batch_rows=100, gold=GOLD)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv"]  # no ledger, no spool left


def test_id_hashes_tell_ids_apart_and_agree_across_batches():
    ids = pa.array(["a", "b", "ab", "ba", "", None, "a" * 300, "é"])
    h = led.id_hashes(ids)
    assert len(set(h[:5].tolist())) == 5
    assert np.array_equal(led.id_hashes(ids.slice(2, 3)), h[2:5])
    assert led.id_hashes(pa.array([5, 7, 5])).tolist() == [5, 7, 5]


def test_the_compiled_id_hashes_are_the_numpy_ones(monkeypatch):
    """Past ``_KERNEL_ID_BYTES`` of ids the kernel hashes them: the same numbers, on any text
    and on a slice of an array (its bytes not starting at 0)."""
    pytest.importorskip("numba")
    rng = np.random.default_rng(0)
    pieces = ["a", "Z", "0", "#", "é", "日本", "🎵", " ", ""]
    ids = pa.array([None if rng.random() < 0.05 else "".join(rng.choice(pieces, int(rng.integers(0, 40))))
                    for _ in range(3000)], pa.string())
    ngram_kernel = pytest.importorskip("mteach.engine.ngram_kernel")
    hashes, calls = ngram_kernel.id_hashes, []
    for arr in (ids, ids.slice(17, 2000), pa.array(ids.to_pylist(), pa.large_string())):
        numpy_ones = led.id_hashes(arr)
        with monkeypatch.context() as m:
            m.setattr(led, "_KERNEL_ID_BYTES", 0)
            m.setattr(ngram_kernel, "id_hashes", lambda *a: calls.append(1) or hashes(*a))
            assert led.id_hashes(arr).tolist() == numpy_ones.tolist()
    assert len(calls) == 3


def test_repeated_ids_found_batch_by_batch_equal_those_of_the_whole_column(tmp_path):
    # hashes spread over every bucket file; repeats within and across batches, text and integer ids
    rng = np.random.default_rng(0)
    for ids in (pa.array([f"id{i}" for i in rng.integers(0, 4000, 5000)]),
                pa.array(rng.integers(-(1 << 62), 1 << 62, 3000).tolist() + [7, 7, -3, 11, -3, -3])):
        path = tmp_path / "ids.parquet"
        pq.write_table(pa.table({"id": ids}), path)
        found = led.RepeatedIds()
        for start in range(0, len(ids), 700):
            found.add(ids.slice(start, 700))
        assert found.repeated(path) == led.repeated_ids(ids)
    unique = led.RepeatedIds()
    unique.add(pa.array([f"u{i}" for i in range(1000)]))
    assert unique.repeated(path) is None


def test_label_with_a_model_streams_the_same_file_as_in_memory(youtube, tmp_path):
    from mteach.engine.train import train
    from mteach.settings import load_settings
    spec, source, batch, gold = youtube
    config = tmp_path / "mteach.toml"
    config.write_text("[features]\nchar_ngrams = false\n[end_model]\nepochs = 3\n")
    model, _ = train(spec, batch.table, load_settings(config), None, votes=batch.votes, hint_effects=False)
    test = open_source(ROOT / "data" / "youtube" / "test.csv")
    spec = load_spec(SPEC, test.schema)
    whole = collect_votes(spec, test, "COMMENT_ID")
    facts = {"data": led.spec_relative(spec, test.path), "data_sha256": source_fingerprint(test),
             "spec_from_data": Path(os.path.relpath(os.path.realpath(spec.root),
                                                    os.path.realpath(test.path.parent))).as_posix(),
             "id_column": "COMMENT_ID", "model": {"spec_hash": model.spec.content_hash, "blend": model.blend,
                                                  "settings": model.settings}}
    reference = led.build_ledger(spec, whole.ids, whole.votes, run_facts=facts, fields=led.row_fields(spec, whole.table),
                                 model_output=led.model_output(model, whole.table, whole.votes))
    led.write_ledger(reference, tmp_path / "memory.parquet")
    assert "end_model" in reference.table.column("decided_by").to_pylist()
    for batch_rows in (65_536, 50):
        out = tmp_path / f"streamed{batch_rows}.parquet"
        led.label_data(spec, test, out, "COMMENT_ID", model=model, batch_rows=batch_rows)
        assert out.read_bytes() == (tmp_path / "memory.parquet").read_bytes(), batch_rows


def test_label_with_a_model_writes_the_matrix_paths_ledger_from_one_kernel_pass(youtube, tmp_path, monkeypatch):
    """The end model's probabilities and top features of the rows no rule covers, taken from the
    text in one kernel pass (``Featurizer.scores_and_top``), give the same ledger, byte for byte,
    as the numpy path (the uncovered rows' feature matrix made, then their attributions)."""
    kernel = pytest.importorskip("mteach.engine.ngram_kernel")
    from mteach.engine.train import train
    from mteach.settings import load_settings
    spec, source, batch, _ = youtube
    config = tmp_path / "mteach.toml"
    config.write_text("[end_model]\nepochs = 3\n")  # the default featurizer: word and char_wb n-grams
    model, _ = train(spec, batch.table, load_settings(config), None, votes=batch.votes, hint_effects=False)
    test = open_source(ROOT / "data" / "youtube" / "test.csv")
    spec = load_spec(SPEC, test.schema)
    calls = []
    score_top = kernel.score_top
    monkeypatch.setattr(kernel, "score_top", lambda *a: calls.append(1) or score_top(*a))
    led.label_data(spec, test, tmp_path / "kernel.parquet", "COMMENT_ID", model=model, batch_rows=100)
    assert calls, "the kernel's pass was not used"
    monkeypatch.setenv("MTEACH_NO_NUMBA", "1")
    ledger = led.label_data(spec, test, tmp_path / "numpy.parquet", "COMMENT_ID", model=model, batch_rows=100)
    assert (tmp_path / "kernel.parquet").read_bytes() == (tmp_path / "numpy.parquet").read_bytes()
    features = ledger.table.column("end_model_features").to_pylist()
    assert sum(1 for f in features if f) > 10  # rows the end model decided, with their features


def test_ids_of_a_dictionary_column_stream_to_the_same_file(youtube, tmp_path):
    """Each batch of a dictionary-encoded id column brings its own dictionary: the file still
    equals the one built in memory."""
    table = pa.csv.read_csv(TRAIN)
    table = table.set_column(table.schema.get_field_index("COMMENT_ID"), "COMMENT_ID",
                             table.column("COMMENT_ID").dictionary_encode())
    pq.write_table(table, tmp_path / "data.parquet", row_group_size=500)
    source = open_source(tmp_path / "data.parquet")
    assert pa.types.is_dictionary(source.schema.field("COMMENT_ID").type)
    spec = load_spec(SPEC, source.schema)
    _in_memory(spec, source, tmp_path / "memory.parquet", GoldRequest())
    led.label_data(spec, source, tmp_path / "streamed.parquet", "COMMENT_ID", batch_rows=333)
    assert (tmp_path / "streamed.parquet").read_bytes() == (tmp_path / "memory.parquet").read_bytes()


def test_the_streamed_ledger_keeps_its_types_and_metadata_for_any_parquet_reader(youtube, tmp_path):
    """The metadata goes into the footer after the rows (it holds their hash): pyarrow's own
    reader still sees it as the schema's metadata, and the Arrow types (large_string ids here)
    come back as written."""
    table = pa.csv.read_csv(TRAIN)
    table = table.set_column(table.schema.get_field_index("COMMENT_ID"), "COMMENT_ID",
                             table.column("COMMENT_ID").cast(pa.large_string()))
    pq.write_table(table, tmp_path / "data.parquet")
    source = open_source(tmp_path / "data.parquet")
    spec = load_spec(SPEC, source.schema)
    out = tmp_path / "ledger.parquet"
    led.label_data(spec, source, out, "COMMENT_ID", batch_rows=333)
    schema = pq.read_schema(out)
    assert schema.field("id").type == pa.large_string()
    assert {led.META_RUN, led.META_RULES, led.META_MODEL, led.META_HASH} <= set(schema.metadata)
    assert led.read_ledger(out).table.num_rows == table.num_rows  # the recorded hash checks


def test_a_models_ledger_has_its_features_column_even_when_every_row_is_covered(youtube, tmp_path):
    """The column is known before the first row is written: empty lists where the end model
    decided nothing, the same bytes streamed as built in memory."""
    from mteach.engine.train import train
    from mteach.settings import load_settings
    spec, source, batch, _ = youtube
    config = tmp_path / "mteach.toml"
    config.write_text("[features]\nchar_ngrams = false\n[end_model]\nepochs = 2\n")
    model, _ = train(spec, batch.table, load_settings(config), None, votes=batch.votes, hint_effects=False)
    covered = np.flatnonzero((batch.votes != -1).any(axis=1))
    pq.write_table(batch.table.take(pa.array(covered)), tmp_path / "covered.parquet")
    data = open_source(tmp_path / "covered.parquet")
    ledger = led.label_data(spec, data, tmp_path / "streamed.parquet", "COMMENT_ID", model=model, batch_rows=100)
    features = ledger.table.column("end_model_features").to_pylist()
    assert len(features) == len(covered) and not any(features)
    whole = collect_votes(spec, data, "COMMENT_ID")
    out = led.model_output(model, whole.table, whole.votes)
    assert out.features is None  # no row for the end model to decide
    memory = led.ledger_rows(spec, model.label_model, whole.ids, whole.votes, model_output=out,
                             fields=led.row_fields(spec, whole.table))
    assert memory.column_names == ledger.table.column_names


def test_a_model_still_loading_gets_the_first_batches_votes_computed_meanwhile(youtube, tmp_path):
    """``label --model`` loads the model on a thread (a Future): batches are voted on while it
    loads, and the ledger is the file a loaded model gives; a model that fails to load fails
    the run, and nothing is written."""
    from concurrent.futures import Future
    from mteach.engine.train import train
    from mteach.settings import load_settings
    spec, source, batch, _ = youtube
    config = tmp_path / "mteach.toml"
    config.write_text("[features]\nchar_ngrams = false\n[end_model]\nepochs = 2\n")
    model, _ = train(spec, batch.table, load_settings(config), None, votes=batch.votes, hint_effects=False)
    led.label_data(spec, source, tmp_path / "loaded.parquet", "COMMENT_ID", model=model, batch_rows=100)
    loading, voted = Future(), []

    def progress(rows):  # the model is "loaded" once three batches were voted on
        voted.append(loading.done())
        if len(voted) == 3:
            loading.set_result(model)
    import threading
    late = threading.Timer(60, lambda: loading.done() or loading.set_result(model))  # no hang if it waits first
    late.start()
    led.label_data(spec, source, tmp_path / "loading.parquet", "COMMENT_ID", model=loading, batch_rows=100,
                   progress=progress)
    late.cancel()
    assert voted[:3] == [False, False, False] and all(voted[3:])
    assert (tmp_path / "loading.parquet").read_bytes() == (tmp_path / "loaded.parquet").read_bytes()
    failed = Future()
    failed.set_exception(DataError("model.json: not a model folder"))
    with pytest.raises(DataError, match="not a model folder"):
        led.label_data(spec, source, tmp_path / "failed.parquet", "COMMENT_ID", model=failed, batch_rows=100)
    assert not (tmp_path / "failed.parquet").exists()
