"""`mteach tui` refuses bad data before the app starts: a message, exit 2, no traceback."""
import subprocess
import sys

import pytest

from mteach.cli import main


@pytest.mark.parametrize("args, message", [
    (["missing.csv"], "no such data file"),
    (["comments.csv", "--id", "NOPE"], "no id column 'NOPE'"),
    (["comments.csv", "--id", "COMMENT_ID", "--gold-column", "CLASS", "--gold-map", "1=SPAM,0=HAMM"],
     "'HAMM' is not a label of the spec"),
    (["comments.csv", "--gold-column", "CLASS"], "row 1 has label '1'"),
])
def test_bad_data_exits_2_with_a_message(studio_files, capsys, args, message):
    assert main(["tui", "mini.mt", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_bad_data_in_a_real_process(studio_files):
    out = subprocess.run([sys.executable, "-m", "mteach", "tui", "mini.mt", "empty.csv"],
                         capture_output=True, text=True, cwd=studio_files, timeout=60,
                         input="")
    assert out.returncode == 2
    assert "error: empty.csv" in out.stderr and "Traceback" not in out.stderr


def test_empty_file_message(studio_files, capsys):
    (studio_files / "empty.csv").write_text("")
    assert main(["tui", "mini.mt", "empty.csv"]) == 2
    assert "the file is empty" in capsys.readouterr().err


def test_a_spec_that_is_not_utf8_is_refused(studio_files, capsys):
    (studio_files / "bad.mt").write_bytes(b"concept \xff\xfe\n")
    assert main(["tui", "bad.mt", "comments.csv"]) == 2
    assert "not UTF-8" in capsys.readouterr().err
