"""The Dask engine on a LocalCluster: the same votes, stats and labels as the local engine,
row for row; a failed partition task is retried with the same result; partitioned outputs
carry a manifest, and a folder without one is reported incomplete; bad input is refused
before any work (parts that disagree on schema, a scheduler that does not answer,
workers of another mteach version)."""
import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

pytest.importorskip("distributed")

import mteach  # noqa: E402
from mteach.engine import dask_engine  # noqa: E402
from mteach.engine.analysis import rule_stats  # noqa: E402
from mteach.engine.dask_engine import DaskEngine  # noqa: E402
from mteach.engine.datasets import MANIFEST, open_source, read_dataset  # noqa: E402
from mteach.engine.ledger import label_data, read_ledger  # noqa: E402
from mteach.engine.votes import collect_votes  # noqa: E402
from mteach.errors import DataError  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "specs" / "youtube_spam.mt"
TRAIN = ROOT / "data" / "youtube" / "train.csv"
ID = "COMMENT_ID"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """The YouTube train comments as a folder of 3 Parquet parts, several row groups each."""
    folder = tmp_path_factory.mktemp("ds") / "comments"
    folder.mkdir()
    table = pacsv.read_csv(TRAIN, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    step = -(-table.num_rows // 3)
    for i in range(3):
        pq.write_table(table.slice(i * step, step), folder / f"part{i}.parquet", row_group_size=150)
    return folder


@pytest.fixture(scope="module")
def engine():
    """A LocalCluster of 2 in-process workers (threads), shared by the tests of this module."""
    from distributed import Client, LocalCluster
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None)
    client = Client(cluster)
    yield DaskEngine(client=client, in_flight=3)
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def spec(dataset):
    return mteach.load_spec(SPEC, open_source(dataset).schema)


def test_votes_and_stats_equal_the_local_engine(dataset, engine, spec):
    local = collect_votes(spec, dataset, ID, columns=["CLASS"])
    distributed = collect_votes(spec, dataset, ID, columns=["CLASS"], engine=engine, batch_rows=200)
    assert distributed.ids.equals(local.ids)
    assert np.array_equal(distributed.votes, local.votes)
    assert distributed.table.column("CLASS").equals(local.table.column("CLASS"))
    stats = [rule_stats(b.votes, spec.rule_names, [r.rule.label for r in spec.rules], list(spec.labels), None)
             for b in (local, distributed)]
    assert stats[0].equals(stats[1])


def test_labels_equal_the_local_engine_and_the_ledger_is_partitioned(dataset, engine, spec, tmp_path):
    local = label_data(spec, dataset, tmp_path / "local.parquet", ID)
    engine.shipped_bytes = 0
    parts = label_data(spec, dataset, tmp_path / "ledger", ID, engine=engine, partitioned=True, batch_rows=200)
    assert (tmp_path / "ledger" / MANIFEST).exists()
    assert len(list((tmp_path / "ledger").glob("part-*.parquet"))) > 3  # a part per partition
    assert parts.table.equals(local.table)
    assert parts.run == local.run and parts.rules == local.rules and parts.model == local.model
    assert read_ledger(tmp_path / "ledger").table.equals(read_ledger(tmp_path / "local.parquet").table)
    # each part was written on a worker: the text of the comments never came back to the client
    # (on 1,586 rows the partitions' vote-pattern counts and facts weigh: a quarter of the text)
    text = pa.Table.from_batches(open_source(dataset).batches(["CONTENT"])).nbytes
    assert 0 < engine.shipped_bytes < text / 3, (engine.shipped_bytes, text)


def test_a_partitioned_ledger_with_gold_equals_the_local_one_and_its_hash_is_checked(dataset, engine, spec, tmp_path):
    from mteach.engine.gold import GoldRequest
    from mteach.engine.ledger import LedgerError
    gold = GoldRequest(None, "CLASS", "1=SPAM,0=HAM")
    local = label_data(spec, dataset, tmp_path / "local.parquet", ID, gold=gold)
    parts = label_data(spec, dataset, tmp_path / "ledger", ID, gold=gold, engine=engine, partitioned=True,
                       batch_rows=300)
    assert "gold" in parts.table.column_names
    assert parts.table.equals(local.table) and parts.model == local.model
    manifest = tmp_path / "ledger" / MANIFEST
    rows = open_source(dataset).num_rows
    forged = manifest.read_text().replace(f'\\"rows\\":{rows}', f'\\"rows\\":{rows + 1}')
    assert forged != manifest.read_text()
    manifest.write_text(forged)  # the run facts changed after the ledger was written
    with pytest.raises(LedgerError, match="modified after it was written"):
        read_ledger(tmp_path / "ledger")


def test_the_text_stays_on_the_workers_unless_asked_for(dataset, engine, spec):
    votes_only = collect_votes(spec, dataset, ID, columns=["CLASS"], engine=engine, rule_columns=False)
    assert votes_only.table.column_names == ["CLASS"]
    assert "CONTENT" in collect_votes(spec, dataset, ID, engine=engine).table.column_names


def test_label_and_predict_with_a_model_on_the_workers_equal_the_local_ones(dataset, engine, spec, tmp_path):
    from mteach.cli.learn import prediction_table
    from mteach.engine.train import train
    from mteach.settings import load_settings
    config = tmp_path / "mteach.toml"
    config.write_text("[features]\nchar_ngrams = false\n[end_model]\nepochs = 3\n")
    batch = collect_votes(spec, dataset, ID)
    model, _ = train(spec, batch.table, load_settings(config), None, votes=batch.votes, hint_effects=False)
    local = label_data(spec, dataset, tmp_path / "local.parquet", ID, model=model)
    parts = label_data(spec, dataset, tmp_path / "ledger", ID, model=model, engine=engine, partitioned=True,
                       batch_rows=300)
    assert "end_model" in local.table.column("decided_by").to_pylist()
    assert parts.table.equals(local.table)
    engine.shipped_bytes = 0
    rows, covered, evaluation, _ = dask_engine.predict_partitioned(
        engine, model, open_source(dataset), tmp_path / "predicted", prediction_table, ID, batch_rows=300)
    assert evaluation is None  # no gold: nothing scored
    assert engine.shipped_bytes < 20_000  # manifest entries, not rows
    result = model.predict(batch.table, batch.votes)
    assert read_dataset(tmp_path / "predicted").equals(prediction_table(batch.ids, result, list(spec.labels)))
    assert (rows, covered) == (batch.num_rows, int(result["covered"].sum()))
    # a model trained on a dataset records the dataset's fingerprint (its parts' bytes)
    from mteach.engine.train import save_model
    save_model(model, tmp_path / "model", {}, data=dataset)
    recorded = json.loads((tmp_path / "model" / "report.json").read_text())["data"]
    assert recorded == {"path": dataset.as_posix(), "sha256": open_source(dataset).fingerprint()}


def test_cli_predict_on_dask_makes_the_parts_on_the_workers(dataset, engine, tmp_path, monkeypatch):
    """predict --engine dask (no gold): each part is predicted and written where its partition
    is evaluated, so only manifest entries come back; the parts equal a local predict."""
    import contextlib
    from mteach.cli import learn, main
    config = tmp_path / "mteach.toml"
    config.write_text("[features]\nchar_ngrams = false\n[end_model]\nepochs = 3\n")
    model = tmp_path / "model"
    assert main(["train", str(SPEC), str(dataset), "-o", str(model), "--id", ID, "--config", str(config), "-q"]) == 0
    monkeypatch.setattr(learn, "engine_for", lambda args, threads=2: contextlib.nullcontext(engine))
    engine.shipped_bytes = 0
    assert main(["predict", str(model), str(dataset), "-o", str(tmp_path / "parts"), "--id", ID,
                 "--engine", "dask"]) == 0
    assert 0 < engine.shipped_bytes < 20_000  # the engine did the work; manifest entries, not rows
    assert main(["predict", str(model), str(dataset), "-o", str(tmp_path / "local.parquet"), "--id", ID]) == 0
    assert read_dataset(tmp_path / "parts").equals(pq.read_table(tmp_path / "local.parquet"))


def _parts(folder):
    return sorted(p.name for p in Path(folder).iterdir())


def test_a_rerun_over_a_previous_output_replaces_it_whole(dataset, engine, spec, tmp_path):
    out = tmp_path / "ledger"
    label_data(spec, dataset, out, ID, engine=engine, partitioned=True, batch_rows=150)
    assert len(_parts(out)) == 12 + 1  # 3 parts of 4 row groups each, and the manifest
    again = label_data(spec, dataset, out, ID, engine=engine, partitioned=True, batch_rows=600)
    assert _parts(out) == [MANIFEST, "part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert read_ledger(out).table.equals(again.table)
    assert [p.name for p in tmp_path.iterdir()] == ["ledger"]  # no temporary folder left beside it


def test_an_interrupted_rerun_leaves_the_previous_output_whole(dataset, engine, spec, tmp_path, monkeypatch):
    from mteach.engine import ledger as led
    out = tmp_path / "ledger"
    label_data(spec, dataset, out, ID, engine=engine, partitioned=True, batch_rows=600)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real = led._ledger_part

    def fails_at_part_2(spec, index, *args, **kwargs):
        if index == 2:
            raise OSError("worker lost mid-run")
        return real(spec, index, *args, **kwargs)
    monkeypatch.setattr(led, "_ledger_part", fails_at_part_2)
    with pytest.raises(Exception, match="worker lost mid-run"):
        label_data(spec, dataset, out, ID, engine=engine, partitioned=True, batch_rows=150)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert read_ledger(out).table.num_rows == open_source(dataset).num_rows
    assert [p.name for p in tmp_path.iterdir()] == ["ledger"]

    # a run killed outright leaves its temporary folder beside the output: the output stays whole,
    # and the next run removes what the killed one left
    monkeypatch.undo()
    killed = tmp_path / ".ledger.999999999-dead.mteach.tmp"
    killed.mkdir()
    (killed / "part-00000.parquet").write_bytes(b"half a part")
    assert read_ledger(out).table.num_rows == open_source(dataset).num_rows
    label_data(spec, dataset, out, ID, engine=engine, partitioned=True, batch_rows=150)
    assert [p.name for p in tmp_path.iterdir()] == ["ledger"]
    assert len(_parts(out)) == 13


def test_a_folder_that_is_not_an_output_of_mteachs_is_refused_untouched(dataset, engine, spec, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match=r"mine: a folder that is not an output of mteach's .*'notes\.txt'"):
        label_data(spec, dataset, mine, ID, engine=engine, partitioned=True)
    assert _parts(mine) == ["notes.txt"]
    r = run_cli("apply", SPEC, dataset, "--id", ID, "-o", mine, "--engine", "dask", cwd=tmp_path)
    assert r.returncode == 2 and "not an output of mteach's" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert _parts(mine) == ["notes.txt"]


def test_a_failed_partition_task_is_retried_with_the_same_result(dataset, engine, spec, monkeypatch, tmp_path):
    real, log = dask_engine.evaluate_partition, tmp_path / "calls"  # tasks are shipped pickled: count in a file

    def flaky(spec, path, groups, columns, id_column, offset, batch_rows, keep):
        with open(log, "a") as f:
            f.write(f"{offset}\n")
        if offset == 450 and log.read_text().split().count("450") == 1:
            raise OSError("worker lost mid-task")  # what a killed worker's task looks like to the client
        return real(spec, path, groups, columns, id_column, offset, batch_rows, keep)

    monkeypatch.setattr(dask_engine, "evaluate_partition", flaky)
    again = collect_votes(spec, dataset, ID, engine=engine, batch_rows=150)
    assert log.read_text().split().count("450") == 2
    assert np.array_equal(again.votes, collect_votes(spec, dataset, ID).votes)


def _dies_once(marker: str, at_offset: int, spec, path, groups, columns, id_column, offset, batch_rows, keep):
    """A partition task that kills its worker process the first time it meets ``at_offset``."""
    if offset == at_offset and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)  # the worker process dies mid-task, as a killed machine's would
    return dask_engine.evaluate_partition(spec, path, groups, columns, id_column, offset, batch_rows, keep)


def test_a_task_whose_worker_is_killed_runs_again_with_the_same_result(dataset, spec, monkeypatch, tmp_path):
    from distributed import Client, LocalCluster
    marker = tmp_path / "killed"
    monkeypatch.setattr(dask_engine, "evaluate_partition", functools.partial(_dies_once, str(marker), 450))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        again = collect_votes(spec, dataset, ID, engine=DaskEngine(client=client), batch_rows=150)
    assert marker.exists()  # a worker did die
    assert np.array_equal(again.votes, collect_votes(spec, dataset, ID).votes)


def test_workers_of_another_version_are_refused_naming_both(engine, monkeypatch):
    monkeypatch.setattr(dask_engine, "worker_version", lambda: "0.0.9")
    with pytest.raises(DataError, match=r"runs mteach 0\.0\.9, this machine runs mteach " + mteach.__version__):
        engine.check_versions()


def test_a_scheduler_that_does_not_answer_is_a_clear_error_within_the_timeout():
    start = time.monotonic()
    with pytest.raises(DataError, match="did not answer within 1 s"):
        DaskEngine("tcp://127.0.0.1:9", timeout=1).client
    assert time.monotonic() - start < 15


def test_parts_that_disagree_on_schema_are_named_before_work(dataset, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for part in sorted(dataset.iterdir()):
        (bad / part.name).write_bytes(part.read_bytes())
    pq.write_table(pa.table({ID: ["x"], "CONTENT": [1]}), bad / "part9.parquet")
    with pytest.raises(DataError, match=r"part9\.parquet has field 'CONTENT' as int64, not string"):
        open_source(bad)


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "mteach", *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=300)


def test_cli_apply_on_a_local_cluster_writes_a_partitioned_output(dataset, tmp_path):
    """apply --engine dask (a LocalCluster of 2 worker processes) writes a part per
    partition and the manifest; together they equal a local run's vote file."""
    r = run_cli("apply", SPEC, dataset, "--id", ID, "-o", tmp_path / "votes", "--engine", "dask", "--batch-rows", "300",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "votes").glob("part-*.parquet"))) == 6  # 3 parts of 529 rows (the last 528), ≥ 300 rows each
    mteach.apply_file(SPEC, dataset, tmp_path / "votes.parquet", ID)
    assert read_dataset(tmp_path / "votes").equals(pq.read_table(tmp_path / "votes.parquet"))
    # run again over its own output: replaced whole (fewer, larger parts now)
    r = run_cli("apply", SPEC, dataset, "--id", ID, "-o", tmp_path / "votes", "--engine", "dask", "--batch-rows",
                "600", "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert _parts(tmp_path / "votes") == [MANIFEST, "part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert read_dataset(tmp_path / "votes").equals(pq.read_table(tmp_path / "votes.parquet"))


def test_explain_and_audit_read_a_partitioned_ledger_and_report_an_interrupted_one(dataset, engine, spec, tmp_path,
                                                                                    capsys):
    from mteach.cli import main
    label_data(spec, dataset, tmp_path / "ledger", ID, engine=engine, partitioned=True)
    row = pq.read_table(sorted((tmp_path / "ledger").glob("part-*.parquet"))[-1]).column("id")[0].as_py()
    assert main(["explain", str(tmp_path / "ledger"), "--id", row]) == 0
    assert row in capsys.readouterr().out
    assert main(["audit", str(tmp_path / "ledger"), "-o", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "ledger" / MANIFEST).exists()

    (tmp_path / "ledger" / MANIFEST).unlink()  # as if the run stopped before writing it
    for verb in (["explain", str(tmp_path / "ledger"), "--id", row],
                 ["audit", str(tmp_path / "ledger"), "-o", str(tmp_path / "r2")],
                 ["verify", str(tmp_path / "ledger"), str(dataset)]):
        assert main(verb) == 2
        err = capsys.readouterr().err
        assert "incomplete output" in err and "no _manifest.json" in err and "Traceback" not in err, err


def test_the_engine_comes_from_the_flags_else_mteach_toml(tmp_path, monkeypatch):
    import argparse
    from mteach.cli.common import engine_choice, engine_for
    monkeypatch.chdir(tmp_path)
    flags = argparse.Namespace(engine=None, scheduler=None, config=None)
    assert engine_choice(flags) == ("local", None)
    (tmp_path / "mteach.toml").write_text('[engine]\nname = "dask"\nscheduler = "tcp://10.0.0.5:8786"\n')
    assert engine_choice(flags) == ("dask", "tcp://10.0.0.5:8786")
    assert engine_choice(argparse.Namespace(engine="local", scheduler=None, config=None)) == ("local", None)
    (tmp_path / "mteach.toml").write_text('[engine]\nname = "spark"\n')
    with pytest.raises(DataError, match="spark"):
        engine_choice(flags)
    with pytest.raises(DataError, match="--scheduler needs --engine dask"):
        with engine_for(argparse.Namespace(engine="local", scheduler="tcp://x:1", config=None)):
            pass


# -- what used to come back to the client whole -------------------------------------------------
def test_train_on_dask_draws_the_same_sample_and_only_the_sampled_rows_come_back(dataset, engine, spec, tmp_path):
    """train's second pass on Dask: each partition sends back only its rows among those chosen
    from the first pass (the training sample, a sample of the uncovered rows, the gold rows),
    so the client holds about 2 × max_rows rows, and the model and report equal the local run's."""
    from mteach.engine.train import train_streamed
    from mteach.settings import load_settings
    config = tmp_path / "mteach.toml"
    config.write_text("[features]\nchar_ngrams = false\n[end_model]\nepochs = 3\nmax_rows = 100\n")
    settings, source = load_settings(config), open_source(dataset)
    local_model, local_report = train_streamed(spec, source, ID, settings, hint_effects=False)
    engine.shipped_bytes = 0
    model, report = train_streamed(spec, source, ID, settings, engine=engine, batch_rows=200, hint_effects=False)
    assert json.dumps(report, sort_keys=True, default=str) == json.dumps(local_report, sort_keys=True, default=str)
    assert report["end_model"]["training_rows"]["chosen"].startswith("100 of 1,341 covered rows")
    batch = collect_votes(spec, dataset, ID)
    assert np.array_equal(model.predict(batch.table, batch.votes)["proba"],
                          local_model.predict(batch.table, batch.votes)["proba"])
    # both passes together sent back less than half of what the second pass alone sent before (every
    # row with the rules' columns): 200 of the 1,586 rows, 2 bytes a row and each partition's counts
    shipped, engine.shipped_bytes = engine.shipped_bytes, 0
    collect_votes(spec, dataset, ID, engine=engine, batch_rows=200)
    assert 0 < shipped < engine.shipped_bytes / 2, (shipped, engine.shipped_bytes)


def test_cli_predict_with_gold_on_dask_scores_on_the_workers_as_the_local_run(dataset, engine, tmp_path, monkeypatch,
                                                                            capsys):
    """predict --engine dask with gold labels: each partition is predicted, written and scored
    on a worker, which sends back its evaluation and hint-effect counts, not its rows; the
    evaluation equals the local run's (ECE and a hint's mean change to the last digits: they
    are sums added in another order), and so do the predictions."""
    import contextlib
    from mteach.cli import learn, main
    config = tmp_path / "mteach.toml"
    config.write_text("[features]\nchar_ngrams = false\n[end_model]\nepochs = 3\n")
    model = tmp_path / "model"
    assert main(["train", str(SPEC), str(dataset), "-o", str(model), "--id", ID, "--config", str(config), "-q"]) == 0
    monkeypatch.setattr(learn, "engine_for", lambda args, threads=2: contextlib.nullcontext(engine))
    gold = ["--gold-column", "CLASS", "--gold-map", "1=SPAM,0=HAM"]
    capsys.readouterr()
    assert main(["predict", str(model), str(dataset), "--id", ID, *gold, "--format", "json"]) == 0
    local = json.loads(capsys.readouterr().out)
    engine.shipped_bytes = 0
    collect_votes(mteach.load_spec(SPEC, open_source(dataset).schema), dataset, ID, columns=["CLASS"], engine=engine)
    gathered = engine.shipped_bytes  # what predict with gold got back before: every row, with the text
    for output in ([], ["-o", str(tmp_path / "parts")]):
        engine.shipped_bytes = 0
        assert main(["predict", str(model), str(dataset), "--id", ID, *gold, "--format", "json", "--engine", "dask",
                     *output]) == 0
        # each partition's counts (~16 kB here, whatever its rows), not its rows
        assert 0 < engine.shipped_bytes < gathered / 3, (engine.shipped_bytes, gathered)
        distributed = json.loads(capsys.readouterr().out)
        assert _same_figures(distributed, local)
        assert local["hints"] and local["combined"]["all"]["rows"] == open_source(dataset).num_rows
    assert main(["predict", str(model), str(dataset), "-o", str(tmp_path / "local.parquet"), "--id", ID]) == 0
    assert read_dataset(tmp_path / "parts").equals(pq.read_table(tmp_path / "local.parquet"))


def _same_figures(a, b) -> bool:
    """Equal, floats to 12 digits (sums added in another order)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same_figures(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same_figures, a, b))
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-12, abs=1e-15)
    return a == b


def test_verify_reads_a_partitioned_ledger_part_by_part_and_names_a_changed_part(dataset, engine, spec, tmp_path,
                                                                               monkeypatch, capsys):
    """verify on a partitioned ledger: its parts are hashed and compared a batch at a time (the
    ledger is never read whole), with the same report and exit codes as for a ledger file; a
    part whose bytes changed is named."""
    from mteach.cli import main
    from mteach.engine import datasets, ledger as led
    label_data(spec, dataset, tmp_path / "local.parquet", ID)
    label_data(spec, dataset, tmp_path / "ledger", ID, engine=engine, partitioned=True, batch_rows=300)

    def gathers(*args, **kwargs):
        raise AssertionError("the whole ledger was read")
    monkeypatch.setattr(led, "_read_partitioned", gathers)
    monkeypatch.setattr(datasets, "read_parts", gathers)
    reports = []
    for ledger in ("local.parquet", "ledger"):
        assert main(["verify", str(tmp_path / ledger), str(dataset), "--spec", str(SPEC), "--format", "json"]) == 0
        reports.append(json.loads(capsys.readouterr().out))
    assert reports[1] == reports[0] and reports[1]["identical"]
    assert reports[1]["rows"] == open_source(dataset).num_rows

    part = sorted((tmp_path / "ledger").glob("part-*.parquet"))[2]
    table = pq.read_table(part)
    labels = table.column("label").to_pylist()
    labels[0] = "HAM" if labels[0] == "SPAM" else "SPAM"
    pq.write_table(table.set_column(table.column_names.index("label"), "label", pa.array(labels)), part)
    assert main(["verify", str(tmp_path / "ledger"), str(dataset), "--spec", str(SPEC)]) == 2
    err = capsys.readouterr().err
    assert f"{part.name}: its bytes changed after it was written" in err and "Traceback" not in err, err
