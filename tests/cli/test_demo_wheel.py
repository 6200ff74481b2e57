"""A built wheel (not the source tree) carries the examples: `mteach demo` works from it anywhere."""
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    setuptools = pytest.importorskip("setuptools")
    if int(setuptools.__version__.split(".")[0]) < 64:
        pytest.skip("building the wheel offline needs setuptools >= 64 in this environment")
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                            "--no-index", "-w", str(out), str(ROOT)], capture_output=True, text=True, cwd=out)
    assert build.returncode == 0, build.stderr[-2000:]
    return next(out.glob("mteach-*.whl"))


def test_the_wheel_holds_the_example_files_not_links(wheel):
    with zipfile.ZipFile(wheel) as z:
        for rel in ("youtube/specs/youtube_spam.mt", "youtube/specs/lexicons/self_promotion.txt",
                    "youtube/data/youtube/train.csv", "cancer/specs/breast_cancer.mt",
                    "cancer/data/breast_cancer/test.csv", "cancer/mteach.toml"):
            source = ROOT / "mteach" / "examples" / rel
            assert z.read(f"mteach/examples/{rel}") == source.read_bytes(), rel


def test_demo_from_the_installed_wheel_outside_the_repository(wheel, tmp_path):
    site = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                              "--target", str(site), str(wheel)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-2000:]
    env = dict(os.environ, PYTHONPATH=str(site))
    where = subprocess.run([sys.executable, "-c", "import mteach; print(mteach.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path)
    assert where.stdout.startswith(str(site)), where.stdout + where.stderr
    demo = subprocess.run([sys.executable, "-m", "mteach", "demo", "--example", "cancer", "--out", "here"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert "In short, on the 171 held-out biopsies:" in demo.stdout
    stats = subprocess.run([sys.executable, "-m", "mteach", "stats"], capture_output=True, text=True, env=env,
                           cwd=tmp_path / "here")
    assert stats.returncode == 0 and "398 rows:" in stats.stdout, stats.stderr
