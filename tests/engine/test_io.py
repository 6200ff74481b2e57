"""engine.io's atomic writes: a failure never leaves a half-written output nor loses the previous one."""
import errno
import os
import subprocess
import sys
import textwrap

import pytest

from mteach.engine.io import (TMP_SUFFIX, DataError, atomic_folder, atomic_path, clean_stale_temporaries,
                              write_text_atomic)


def test_atomic_path_keeps_the_previous_file_on_error(tmp_path):
    target = tmp_path / "out.txt"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]  # no temporary file left behind


def test_atomic_path_fsyncs_the_file_and_its_folder(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real(fd)))
    write_text_atomic(tmp_path / "out.txt", "new")
    assert (tmp_path / "out.txt").read_text() == "new"
    assert any(p.endswith(".tmp") for p in synced), "the file's data is flushed before the rename"
    assert synced[-1] == str(tmp_path), "the folder is flushed after the rename"


def test_atomic_folder_replaces_a_folder_whole_or_not_at_all(tmp_path):
    target = tmp_path / "model"
    with atomic_folder(target) as tmp:
        (tmp / "a.json").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_folder(target) as tmp:
            (tmp / "a.json").write_text("2")
            raise RuntimeError("crash")
    assert (target / "a.json").read_text() == "1"
    with atomic_folder(target) as tmp:
        (tmp / "b.json").write_text("3")
    assert sorted(os.listdir(target)) == ["b.json"]
    assert sorted(os.listdir(tmp_path)) == ["model"]


# -- permissions, temporaries of killed runs, unwritable places (issue 9 items 3, 4, 12, 18) ----
DEAD_PID = 999_999_999  # above any Linux pid_max: never a live process


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def test_outputs_respect_the_umask(tmp_path, umask_027):
    write_text_atomic(tmp_path / "f.txt", "x")
    with atomic_folder(tmp_path / "m") as tmp:
        (tmp / "a.json").write_text("1")
        write_text_atomic(tmp / "b.json", "2")
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "m").stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "m" / "b.json").stat().st_mode & 0o777 == 0o640


def test_temporaries_are_named_recognisably(tmp_path):
    seen = []
    with atomic_path(tmp_path / "out.parquet") as tmp:
        seen.append(tmp.name)
    assert seen[0].startswith(".out.parquet.") and seen[0].endswith(TMP_SUFFIX)


def test_temporaries_of_killed_runs_are_removed_by_the_next_write(tmp_path):
    stale_file = tmp_path / f".out.parquet.{DEAD_PID}-ab12{TMP_SUFFIX}"
    stale_file.write_text("half")
    stale_folder = tmp_path / f".model.{DEAD_PID}-cd34{TMP_SUFFIX}"
    stale_folder.mkdir()
    (stale_folder / "w.bin").write_text("half")
    live = tmp_path / f".out.parquet.{os.getpid()}-ef56{TMP_SUFFIX}"  # a run still writing
    live.write_text("in progress")
    other = tmp_path / f".other.parquet.{DEAD_PID}-ab12{TMP_SUFFIX}"  # another target's: left alone
    other.write_text("x")
    write_text_atomic(tmp_path / "out.parquet", "new")
    with atomic_folder(tmp_path / "model") as tmp:
        (tmp / "a").write_text("1")
    assert sorted(os.listdir(tmp_path)) == sorted(["out.parquet", "model", live.name, other.name])


def test_a_model_folder_moved_aside_before_a_crash_is_put_back(tmp_path):
    aside = tmp_path / f".model.{DEAD_PID}-ab12.old{TMP_SUFFIX}"
    aside.mkdir()
    (aside / "model.json").write_text("old")
    assert clean_stale_temporaries(tmp_path / "model") == [aside.name]
    assert (tmp_path / "model" / "model.json").read_text() == "old"


def test_a_crash_between_the_two_renames_loses_neither_model(tmp_path):
    """Killed right after the old folder is renamed aside: the next run finds the old model."""
    target = tmp_path / "model"
    with atomic_folder(target) as tmp:
        (tmp / "model.json").write_text("old")
    script = textwrap.dedent(f"""
        import os
        from mteach.engine import io
        real = os.rename
        def rename(a, b):
            real(a, b)
            if str(b).endswith(".old{TMP_SUFFIX}"):
                os._exit(9)  # killed between the renames
        io.os.rename = rename
        with io.atomic_folder({str(target)!r}) as tmp:
            (tmp / "model.json").write_text("new")
    """)
    assert subprocess.run([sys.executable, "-c", script]).returncode == 9
    assert not target.exists()
    with atomic_folder(target) as tmp:  # the next run: puts the old one back, then replaces it
        (tmp / "model.json").write_text("newer")
    assert (target / "model.json").read_text() == "newer"
    assert os.listdir(tmp_path) == ["model"]


def test_replacing_a_folder_renames_it_aside_before_the_new_one_goes_in(tmp_path, monkeypatch):
    target = tmp_path / "model"
    with atomic_folder(target) as tmp:
        (tmp / "model.json").write_text("old")
    renames = []
    real = os.rename
    monkeypatch.setattr(os, "rename", lambda a, b: (renames.append((str(a), str(b))), real(a, b)))
    with atomic_folder(target) as tmp:
        (tmp / "model.json").write_text("new")
    assert renames[0][0] == str(target) and renames[0][1].endswith(".old" + TMP_SUFFIX)
    assert renames[1][1] == str(target)
    assert (target / "model.json").read_text() == "new"


def test_an_unwritable_place_is_a_data_error_naming_it(tmp_path, monkeypatch):
    real = os.open

    def read_only(path, flags, *a):
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real(path, flags, *a)
    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(DataError, match=r"out\.txt: cannot write there \(Read-only file system\)"):
        write_text_atomic(tmp_path / "out.txt", "x")
    monkeypatch.undo()
    (tmp_path / "d").mkdir()
    with pytest.raises(DataError, match="is a folder"):
        write_text_atomic(tmp_path / "d", "x")
    with pytest.raises(DataError, match="does not exist"):
        write_text_atomic(tmp_path / "nowhere" / "x", "x")
    (tmp_path / "f").write_text("a file")
    with pytest.raises(DataError, match="is a file, not a folder"):
        with atomic_folder(tmp_path / "f"):
            pass


def test_combining_text_past_the_string_limit_gives_large_string(monkeypatch):
    import pyarrow as pa

    from mteach.engine import io
    column = pa.chunked_array([["a" * 600, None], ["b" * 600]])
    assert io.combined(column).type == pa.string()
    monkeypatch.setattr(io, "STRING_LIMIT", 1000)  # 2 GB in a test: the limit lowered instead
    together = io.combined(column)
    assert together.type == pa.large_string() and together.to_pylist() == ["a" * 600, None, "b" * 600]
    table = io.large_where_needed(pa.table({"text": column, "n": pa.chunked_array([[1, 2], [3]])}))
    assert table.schema.field("text").type == pa.large_string() and table.column("text").num_chunks == 2
    assert table.column("n").type == pa.int64()
