"""engine.io's atomic writes: a failure never leaves a half-written output nor loses the previous one."""
import os

import pytest

from mteach.engine.io import atomic_folder, atomic_path, write_text_atomic


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
