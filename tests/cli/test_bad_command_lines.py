"""Bad command lines (issue 9, "148 bad command lines"): each ends in a message on stderr and
its documented exit code — never a traceback, never a destroyed input."""
import json
import os
import shutil
import stat
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mteach.cli import EXIT_INTERNAL, main

SPEC = ('concept spam "spam"\nlabels SPAM, HAM\nfield text = "text"\nuse "shared.mt"\n'
        'define bad = lexicon("words.txt")\n'
        'rule buy : text has any("buy", "free") => SPAM\nrule lex : text has bad => SPAM\n'
        'rule song : text has "song" => HAM\n')
TEXTS = [("buy cheap pills now", "1"), ("I love this song", "0"), ("check out my channel", "1"),
         ("great song buy it", "0"), ("hello", "0"), ("free money free money", "1"), ("nice song", "0"),
         ("win a prize", "1")]
ROWS = [(i + 1, f"{t} {i}", c) for i, (t, c) in enumerate(TEXTS * 4)]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """spec (using shared.mt and the lexicon words.txt), data, gold, a model and a ledger."""
    d = tmp_path_factory.mktemp("project")
    (d / "spec.mt").write_text(SPEC, encoding="utf-8")
    (d / "shared.mt").write_text('define url = /https?:/\n', encoding="utf-8")
    (d / "words.txt").write_text("prize\nwin\n", encoding="utf-8")
    (d / "data.csv").write_text("id,text,cls\n" + "".join(f"{i},{t},{c}\n" for i, t, c in ROWS), encoding="utf-8")
    (d / "gold.csv").write_text("id,label\n1,SPAM\n2,HAM\n", encoding="utf-8")
    (d / "mteach.toml").write_text("[end_model]\nepochs = 2\n", encoding="utf-8")
    os.chdir(d)
    try:
        assert main(["train", "spec.mt", "data.csv", "--id", "id", "-o", "model", "-q", "--config", "mteach.toml"]) == 0
        assert main(["label", "spec.mt", "data.csv", "--id", "id", "-o", "ledger.parquet", "-q"]) == 0
    finally:
        os.chdir("/")
    return d


def _snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _damaged_model(d: Path, change) -> str:
    target = d / f"model-{change.__name__}"
    if not target.exists():
        shutil.copytree(d / "model", target)
        meta = json.loads((target / "model.json").read_text())
        change(meta)
        (target / "model.json").write_text(json.dumps(meta))
    return target.name


def spec_outside(meta):
    meta["spec"] = "../../../../../../../../etc/passwd"


def spec_absolute(meta):
    meta["spec"] = "/etc/passwd"


def no_featurizer(meta):
    del meta["featurizer"]


def no_spec_key(meta):
    del meta["spec"]


def _ledger_without(d: Path, key: bytes, drop: str) -> str:
    name = f"ledger-no-{drop}.parquet"
    table = pq.read_table(d / "ledger.parquet")
    meta = dict(table.schema.metadata)
    value = json.loads(meta[key])
    if isinstance(value, list):
        for r in value:
            r.pop(drop, None)
    else:
        value.pop(drop, None)
    meta[key] = json.dumps(value).encode()
    pq.write_table(table.replace_schema_metadata(meta), d / name)
    return name


# (command line, exit code, words the message must hold); run in the project folder
CASES = [
    # item 2: -o naming an input, refused before any work
    (["apply", "spec.mt", "data.csv", "-o", "data.csv"], 2, "is an input"),
    (["apply", "spec.mt", "data.csv", "-o", "spec.mt"], 2, "is an input"),
    (["apply", "spec.mt", "data.csv", "-o", "words.txt"], 2, "is an input"),
    (["apply", "spec.mt", "data.csv", "-o", "shared.mt"], 2, "is an input"),
    (["apply", "spec.mt", "data.csv", "-o", "./sub/../data.csv"], 2, "is an input"),
    (["apply", "spec.mt", "data.csv", "-o", "link-to-data.csv"], 2, "is an input"),
    (["apply", "spec.mt", "data.csv", "-o", "hardlink-to-data.csv"], 2, "is an input"),
    (["label", "spec.mt", "data.csv", "--id", "id", "-o", "data.csv"], 2, "is an input"),
    (["label", "spec.mt", "data.csv", "--id", "id", "--gold", "gold.csv", "-o", "gold.csv"], 2, "is an input"),
    (["label", "spec.mt", "data.csv", "--id", "id", "-o", "words.txt"], 2, "is an input"),
    (["label", "spec.mt", "data.csv", "--id", "id", "--model", "model", "-o", "model/model.json"], 2,
     "file of the input folder"),
    (["predict", "model", "data.csv", "-o", "data.csv"], 2, "is an input"),
    (["predict", "model", "data.csv", "--id", "id", "--gold", "gold.csv", "-o", "gold.csv"], 2, "is an input"),
    (["predict", "model", "data.csv", "-o", "model/rules.parquet"], 2, "file of the input folder"),
    (["train", "model/spec/spec.mt", "data.csv", "-o", "model", "-q"], 2, "holds an input"),
    (["audit", "ledger.parquet", "-o", "."], 0, ""),  # writes index.html beside the ledger: fine
    # -o an existing folder for a file output; train -o an existing non-model file or folder
    (["apply", "spec.mt", "data.csv", "-o", "emptydir"], 2, "is a folder"),
    (["label", "spec.mt", "data.csv", "-o", "emptydir"], 2, "is a folder"),
    (["predict", "model", "data.csv", "-o", "emptydir"], 2, "is a folder"),
    (["train", "spec.mt", "data.csv", "-o", "gold.csv", "-q"], 2, "is a file"),
    (["train", "spec.mt", "data.csv", "-o", "notamodel", "-q"], 2, "not a model folder"),
    (["audit", "ledger.parquet", "-o", "gold.csv"], 2, "is a file"),
    (["drift", "spec.mt", "data.csv", "data.csv", "-o", "gold.csv", "-q"], 2, "is a file"),
    (["drift", "spec.mt", "queue.csv", "data.csv", "-o", ".", "-q"], 2, "is an input"),  # its queue.csv
    # item 12
    (["apply", "spec.mt", "data.csv", "-o", "nowhere/votes.parquet"], 2, "does not exist"),
    (["demo", "--out", "gold.csv"], 2, "gold.csv"),
    (["train", "spec.mt", "data.csv", "-o", "m2", "--config", "cuda.toml", "-q"], 2, "CUDA"),
    (["predict", "model-no_featurizer", "data.csv", "-o", "p.parquet"], 2, "lacks featurizer"),
    (["predict", "model-no_spec_key", "data.csv", "-o", "p.parquet"], 2, "lacks spec"),
    (["explain", "ledger-no-labels.parquet", "--id", "1"], 2, "lacks labels"),
    (["explain", "ledger-no-baseline.parquet", "--id", "1"], 2, "lacks baseline"),
    (["explain", "ledger-no-line.parquet", "--id", "1"], 2, "lacks line"),
    (["verify", "ledger-no-git.parquet", "data.csv"], 2, "lacks git"),
    # item 13: a model's files are its own
    (["predict", "model-spec_outside", "data.csv", "-o", "p.parquet"], 2, "points outside"),
    (["predict", "model-spec_absolute", "data.csv", "-o", "p.parquet"], 2, "points outside"),
]


@pytest.mark.parametrize("argv,code,words", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_a_bad_command_line_gets_a_message_and_its_exit_code(project, argv, code, words, capsys, monkeypatch):
    d = project
    if not (d / "link-to-data.csv").exists():
        (d / "link-to-data.csv").symlink_to("data.csv")
        os.link(d / "data.csv", d / "hardlink-to-data.csv")
        (d / "emptydir").mkdir()
        (d / "notamodel").mkdir()
        (d / "notamodel" / "notes.txt").write_text("mine")
        (d / "sub").mkdir()
        shutil.copy(d / "data.csv", d / "queue.csv")
        (d / "cuda.toml").write_text('[end_model]\ndevice = "cuda"\n')
        for change in (spec_outside, spec_absolute, no_featurizer, no_spec_key):
            _damaged_model(d, change)
        _ledger_without(d, b"mteach.run", "labels")
        _ledger_without(d, b"mteach.run", "git")
        _ledger_without(d, b"mteach.label_model", "baseline")
        _ledger_without(d, b"mteach.rules", "line")
    monkeypatch.chdir(d)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    before = _snapshot(d)
    try:
        got = main(argv)
    except SystemExit as exit:
        got = exit.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err + out
    assert got == code, err
    assert words in err
    if code:
        assert err.strip(), "a failure says why on stderr"
        assert _snapshot(d) == before, "a refused command changes no file"
        assert not [n for n in os.listdir(d) if n.endswith(".tmp")]


def test_an_unexpected_exception_is_one_line_with_its_own_exit_code(project, capsys, monkeypatch):
    monkeypatch.chdir(project)
    import mteach.cli.core as core

    def broken(args):
        raise ZeroDivisionError("division by zero")
    monkeypatch.setattr(core, "apply_file", lambda *a, **k: broken(None))
    code = main(["apply", "spec.mt", "data.csv", "-o", "v.parquet", "-q"])
    err = capsys.readouterr().err
    assert code == EXIT_INTERNAL and code not in (0, 1, 2)
    assert err.count("\n") == 1 and "ZeroDivisionError" in err and "report" in err
    monkeypatch.setenv("MTEACH_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main(["apply", "spec.mt", "data.csv", "-o", "v.parquet", "-q"])


def _writable(folder: Path) -> bool:
    try:
        (folder / ".probe").touch()
    except OSError:
        return False
    (folder / ".probe").unlink()
    return True


def test_an_unwritable_folder_is_a_message_not_a_traceback(project, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(project)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    if _writable(locked):  # root ignores the mode: /sys refuses even root
        locked = Path("/sys")
        if not locked.is_dir() or _writable(locked):
            pytest.skip("no unwritable folder on this machine")
    for argv in (["apply", "spec.mt", "data.csv", "-o", locked / "v.parquet", "-q"],
                 ["train", "spec.mt", "data.csv", "-o", locked / "m", "-q"]):
        code = main([str(a) for a in argv])
        err = capsys.readouterr().err
        assert code == 2 and "cannot write there" in err and str(locked) in err, err


def run(*argv) -> int:
    return main([str(a) for a in argv])


def test_outputs_respect_the_umask(project, tmp_path, monkeypatch):
    monkeypatch.chdir(project)
    old = os.umask(0o027)
    try:
        assert run("apply", "spec.mt", "data.csv", "-o", tmp_path / "v.parquet", "-q") == 0
        assert run("label", "spec.mt", "data.csv", "-o", tmp_path / "l.parquet", "-q") == 0
        assert run("predict", "model", "data.csv", "-o", tmp_path / "p.parquet") == 0
        assert run("train", "spec.mt", "data.csv", "-o", tmp_path / "m", "-q") == 0
    finally:
        os.umask(old)
    for name in ("v.parquet", "l.parquet", "p.parquet", "m/model.json", "m/end_model/weights.pt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o640, name
    assert (tmp_path / "m").stat().st_mode & 0o777 == 0o750


def test_train_over_a_model_replaces_it_whole(project, tmp_path, monkeypatch):
    monkeypatch.chdir(project)
    shutil.copytree("model", tmp_path / "m")
    (tmp_path / "m" / "stray.txt").write_text("from the old model")
    assert run("train", "spec.mt", "data.csv", "-o", tmp_path / "m", "-q") == 0
    assert (tmp_path / "m" / "model.json").is_file() and not (tmp_path / "m" / "stray.txt").exists()
    assert os.listdir(tmp_path) == ["m"]


def test_drift_report_file_names_match_the_engine():
    from mteach.cli.drift import WRITES
    from mteach.engine.drift import JSON_FILE, QUEUE_FILE, REPORT_FILE
    assert set(WRITES) == {QUEUE_FILE, REPORT_FILE, JSON_FILE}
