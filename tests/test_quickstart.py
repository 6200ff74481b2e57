"""The README's quick start is two commands; CI runs exactly those; dev.py reuses its environment."""
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quick_start_commands() -> list:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Quick start", 1)[1].split("```", 2)[1].split("\n", 1)[1]
    return [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]


def test_the_quick_start_is_two_commands_and_ci_runs_exactly_them():
    commands = quick_start_commands()
    assert commands == ["python3 dev.py demo", "python3 dev.py test"]
    ci = (ROOT / ".ci" / "run").read_text()
    mteach_lines = [line.strip() for line in ci.splitlines()
                    if re.search(r"\b(dev\.py|pip|pytest|mteach)\b", line) and not line.lstrip().startswith("#")]
    assert mteach_lines == commands


def load_dev(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("dev", ROOT / "dev.py")
    dev = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dev)
    monkeypatch.setattr(dev, "VENV", tmp_path / ".venv")
    monkeypatch.setattr(dev, "STAMP", tmp_path / ".venv" / "mteach-setup.json")
    return dev


def test_a_second_run_installs_nothing(tmp_path, monkeypatch):
    dev = load_dev(tmp_path, monkeypatch)
    python = dev.venv_python()
    python.parent.mkdir(parents=True)
    python.touch()
    dev.STAMP.write_text(json.dumps(dev.wanted_state()))
    calls = []
    monkeypatch.setattr(dev, "run", lambda *cmd, **kw: calls.append(cmd))
    dev.setup()
    assert calls == []
    # a changed pyproject.toml (another state) installs again
    dev.STAMP.write_text(json.dumps(dict(dev.wanted_state(), pyproject="0")))
    monkeypatch.setattr(dev, "torch_installed", lambda: True)
    monkeypatch.setattr(dev, "pip_version", lambda: (24, 0))
    dev.setup()
    assert any("-e" in map(str, c) for c in calls)
    assert json.loads(dev.STAMP.read_text()) == dev.wanted_state()


def test_an_unreachable_cpu_index_stops_with_a_message(tmp_path, monkeypatch, capsys):
    dev = load_dev(tmp_path, monkeypatch)
    monkeypatch.setattr(dev, "torch_installed", lambda: False)
    monkeypatch.setattr(dev, "default_torch_is_cuda", lambda: True)
    monkeypatch.setattr(dev, "CPU_INDEX", "http://localhost:9/whl/cpu")  # discard port: refused at once
    calls = []
    monkeypatch.setattr(dev, "pip", lambda *a, **kw: calls.append(a))
    try:
        dev.install_torch()
    except SystemExit as stop:
        assert stop.code == 2
    else:
        raise AssertionError("install_torch went on without a reachable CPU index")
    err = capsys.readouterr().err
    assert "http://localhost:9/whl/cpu is unreachable" in err and "MTEACH_TORCH_INDEX" in err
    assert calls == []  # no CUDA download as a fallback


def test_usage_without_a_command():
    out = subprocess.run([sys.executable, str(ROOT / "dev.py")], capture_output=True, text=True)
    assert out.returncode == 2 and "python3 dev.py demo" in out.stderr
