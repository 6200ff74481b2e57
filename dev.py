#!/usr/bin/env python3
"""Set mteach up in ./.venv and run it: the README's two quick-start commands.

    python3 dev.py demo     # make .venv (CPU torch, mteach and its extras), then run the demo
    python3 dev.py test     # the same environment, then the tests (extra arguments go to pytest)

Only the standard library, so it runs where there is nothing but Python 3.10+ (no
make, no activated environment). Both commands are idempotent: a second run
reuses .venv and installs nothing unless pyproject.toml changed.

torch's CPU build: pip installs whatever torch the configured index offers. On
Linux x86_64 that is the CUDA build, which pulls several GB of CUDA packages, so
when pip's dry run shows CUDA packages the CPU build comes from PyTorch's CPU
index instead (MTEACH_TORCH_INDEX overrides its address); when that index is
unreachable the setup stops with a message rather than download CUDA or hang.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
TORCH = "torch==2.13.0"  # within pyproject's torch>=2.2,<2.14
CPU_INDEX = os.environ.get("MTEACH_TORCH_INDEX", "https://download.pytorch.org/whl/cpu")
EXTRAS = "dev"           # the tests' extra: train, tui, the test tools
STAMP = VENV / "mteach-setup.json"


def say(msg: str) -> None:
    print(f"[dev.py] {msg}", flush=True)


def fail(msg: str) -> None:
    print(f"[dev.py] error: {msg}", file=sys.stderr)
    sys.exit(2)


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def run(*cmd, check=True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], check=check, **kw)


def pip(*args, check=True, **kw) -> subprocess.CompletedProcess:
    return run(venv_python(), "-m", "pip", "--disable-pip-version-check", *args, check=check, **kw)


def pip_version() -> tuple:
    out = pip("--version", capture_output=True, text=True).stdout  # "pip 24.0 from ..."
    return tuple(int(x) for x in out.split()[1].split(".")[:2])


def wanted_state() -> dict:
    """What the environment was made from; a change means installing again."""
    return {"pyproject": hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest(),
            "torch": TORCH, "extras": EXTRAS}


def torch_installed() -> bool:
    code = "import torch, sys; v = tuple(int(x) for x in torch.__version__.split('+')[0].split('.')[:2]); " \
           "sys.exit(0 if (2, 2) <= v < (2, 14) else 1)"
    return run(venv_python(), "-c", code, check=False, capture_output=True).returncode == 0


def default_torch_is_cuda() -> bool:
    """Whether `pip install torch` from the configured sources would bring CUDA packages (a dry run)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        out = pip("install", "--dry-run", "--quiet", "--report", report, TORCH, check=False,
                  capture_output=True, text=True)
        if out.returncode != 0 or not report.exists():
            return True  # unknown: the CPU index is the safe choice
        names = [item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]]
    return any(n.startswith("nvidia-") or n == "triton" for n in names)


def reachable(url: str, timeout: float = 10.0) -> str:
    """'' when ``url`` answers within ``timeout`` seconds, else why not."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/torch/", timeout=timeout):
            return ""
    except Exception as err:  # DNS, refused, timeout, HTTP error: all mean "cannot use it"
        return str(getattr(err, "reason", err))


def install_torch() -> None:
    if torch_installed():
        return
    if not default_torch_is_cuda():
        say(f"installing {TORCH} (the configured index offers a CPU build)")
        pip("install", "--quiet", TORCH)
        return
    say(f"the configured index offers torch with CUDA; taking the CPU build from {CPU_INDEX}")
    started = time.monotonic()
    why = reachable(CPU_INDEX)
    if why:
        fail(f"{CPU_INDEX} is unreachable ({why}; {time.monotonic() - started:.1f} s), and the configured index "
             "offers only torch with CUDA (several GB). Set MTEACH_TORCH_INDEX to a reachable index of CPU "
             f"wheels, or install a CPU torch into {VENV} yourself, then run this again.")
    pip("install", "--quiet", "--index-url", CPU_INDEX, TORCH)


def setup() -> None:
    if sys.version_info < (3, 10):
        fail(f"mteach needs Python 3.10 or newer; this is {sys.version.split()[0]}")
    if not venv_python().exists():
        say(f"creating {VENV}")
        if run(sys.executable, "-m", "venv", VENV, check=False).returncode != 0:
            fail("could not create a virtual environment; on Debian or Ubuntu install python3-venv first")
    state = wanted_state()
    if STAMP.exists() and json.loads(STAMP.read_text()) == state:
        return  # set up already, from this pyproject.toml
    try:
        if pip_version() < (22, 2):  # --dry-run --report need 22.2
            pip("install", "--quiet", "--upgrade", "pip>=22.2")
        install_torch()
        say(f"installing mteach[{EXTRAS}] (editable) and its dependencies")
        pip("install", "--quiet", "-e", f"{ROOT}[{EXTRAS}]")
    except subprocess.CalledProcessError as err:
        fail(f"`{' '.join(err.cmd[2:])}` failed (exit {err.returncode}); its output is above")
    STAMP.write_text(json.dumps(state))


def main(argv) -> int:
    commands = {"demo": ["-m", "mteach", "demo"], "test": ["-m", "pytest"]}
    if not argv or argv[0] not in commands:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    setup()
    # the demo writes ./mteach-demo where you are (its hints say `cd mteach-demo`); the tests run from the clone
    where = ROOT if argv[0] == "test" else None
    return run(venv_python(), *commands[argv[0]], *argv[1:], check=False, cwd=where).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
