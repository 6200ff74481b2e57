"""The CLI tests' one way to run a verb."""
import pytest

from mteach.cli import main


@pytest.fixture
def run(capsys):
    """``run(*argv)`` → (exit code, stdout, stderr); argparse's usage exits count as exit codes,
    and a traceback on either stream fails the test (bad input gets a message, never a traceback)."""
    def run_cli(*argv):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exit:  # argparse usage errors
            code = exit.code
        out, err = capsys.readouterr()
        assert "Traceback" not in err and "Traceback" not in out
        return code, out, err
    return run_cli
