"""Light installs: check needs no torch, scikit-learn or textual; a verb whose extra is missing says
which extra to install in one line and exits 2."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC, TRAIN = ROOT / "specs" / "youtube_spam.mt", ROOT / "data" / "youtube" / "train.csv"
HEAVY = ("torch", "sklearn", "scipy", "textual")


def run_mteach(argv, hide=(), cwd=None):
    """Run the CLI in a fresh interpreter with the modules in ``hide`` made unimportable
    (as if their extra were not installed); print the heavy modules that got imported."""
    code = (
        "import sys\n"
        "class Hide:\n"  # a finder that makes these modules absent, as if never installed
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {list(hide)!r}:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Hide())\n"
        "from mteach.cli import main\n"
        f"rc = main({[str(a) for a in argv]!r})\n"
        f"print('IMPORTED', sorted(m for m in {HEAVY!r} if sys.modules.get(m) is not None))\n"
        "sys.exit(rc)\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd or ROOT)


def test_check_apply_stats_rows_import_no_heavy_module(tmp_path):
    for argv in (["check", SPEC, "--data", TRAIN],
                 ["apply", SPEC, TRAIN, "-o", tmp_path / "v.parquet", "-q"],
                 ["stats", SPEC, TRAIN, "--gold-column", "CLASS", "--gold-map", "1=SPAM,0=HAM"],
                 ["rows", SPEC, TRAIN, "--uncovered"]):
        out = run_mteach(argv)
        assert out.returncode == 0, out.stderr
        assert "IMPORTED []" in out.stdout, (argv[0], out.stdout[-200:])


@pytest.mark.parametrize("verb_args, hidden, extra", [
    (["train", SPEC, TRAIN, "-o", "{tmp}/model"], ["torch"], "train"),
    (["train", SPEC, TRAIN, "-o", "{tmp}/model"], ["sklearn"], "train"),
    (["label", SPEC, TRAIN, "-o", "{tmp}/ledger.parquet"], ["scipy"], "train"),
    (["tui", SPEC, TRAIN], ["textual"], "tui"),
])
def test_a_missing_extra_is_one_line_naming_it(tmp_path, verb_args, hidden, extra):
    argv = [str(a).replace("{tmp}", str(tmp_path)) for a in verb_args]
    out = run_mteach(argv, hide=hidden)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == f"mteach {argv[0]} needs the '{extra}' extra: pip install 'mteach[{extra}]'"
    assert "IMPORTED []" in out.stdout  # refused before any work
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_a_missing_module_of_no_extra_is_not_disguised():
    from mteach.extras import extra_for
    assert extra_for(ModuleNotFoundError("x", name="torch.nn")) == "train"
    assert extra_for(ModuleNotFoundError("x", name="sklearn"), "tui") == "tui"
    assert extra_for(ModuleNotFoundError("x", name="pyarrow")) is None


def test_explain_and_audit_read_a_ledger_with_the_core_alone(tmp_path):
    from mteach.cli import main
    ledger = tmp_path / "ledger.parquet"
    assert main(["label", str(SPEC), str(TRAIN), "--id", "COMMENT_ID", "-o", str(ledger), "-q"]) == 0
    row = "LZQPQhLyRh80UYxNuaDWhIGQYNQ96IuCg-AYWqNPjpU"  # the first training comment
    for argv in (["explain", ledger, "--id", row], ["audit", ledger, "-o", tmp_path / "report"]):
        out = run_mteach(argv, hide=HEAVY)
        assert out.returncode == 0, out.stderr
        assert "IMPORTED []" in out.stdout
