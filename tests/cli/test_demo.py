"""`mteach demo` writes a project folder every verb works in; its closing hints run as printed."""
import re
import shutil
from pathlib import Path

import pytest

from mteach.cli import main
from mteach.examples import EXAMPLES, copy_example

ROOT = Path(__file__).resolve().parents[2]


def hints(stdout: str) -> list:
    """The commands the demo tells the user to run next, without their comments."""
    return [line.split("#")[0].split() for line in stdout.splitlines() if re.match(r"  (cd|mteach) ", line)]


def run_hints(commands, monkeypatch, capsys) -> dict:
    outputs = {}
    for argv in commands:
        if argv[0] == "cd":
            monkeypatch.chdir(argv[1])
            continue
        assert argv[0] == "mteach"
        assert main(argv[1:]) == 0, capsys.readouterr().err
        outputs[argv[1]] = capsys.readouterr().out
    return outputs


@pytest.fixture
def studio_runs(monkeypatch):
    """`mteach tui` opens its session, then records it instead of taking over the terminal."""
    from mteach.tui.app import StudioApp
    opened = []
    monkeypatch.setattr(StudioApp, "run", lambda app: opened.append(app.session))
    return opened


def test_youtube_demo_then_its_hints_from_the_project_folder(tmp_path, monkeypatch, capsys, studio_runs):
    monkeypatch.chdir(tmp_path)
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    folder = tmp_path / "mteach-demo"
    assert (folder / "mteach.toml").is_file() and (folder / "model").is_dir()
    # the one copy of the example: the demo's files are the repository's specs/ and data/
    for rel in ("specs/youtube_spam.mt", "specs/lexicons/self_promotion.txt", "data/youtube/train.csv"):
        assert (folder / rel).read_bytes() == (ROOT / rel).read_bytes(), rel

    # the conclusion: three lines, with the figures of the table above it
    short = out.split("In short", 1)[1].splitlines()[1:4]
    assert [s.split(":")[0].strip() for s in short] == ["rules", "model", "next"]
    # table lines: method, rows on, accuracy, ...
    table = {(m.group(1), m.group(2)): float(m.group(3))
             for m in re.finditer(r"^(\w[\w ]+?)\s{2,}(all|covered|uncovered)\s+([01]\.\d{3})\s", out, re.M)}
    assert f"{table['combined', 'all']:.1%} right in all" in short[1]
    assert f"{table['label model', 'covered']:.1%} are right" in short[0]

    commands = hints(out)
    assert commands[0] == ["cd", "mteach-demo"] and len(commands) == 4
    outputs = run_hints(commands, monkeypatch, capsys)
    assert re.search(r"^[\d,]+ of 1,586 rows", outputs["rows"], re.M)  # the project's data, no paths given
    assert "youtube_spam.mt:" in outputs["stats"] and "1,586 rows:" in outputs["stats"]
    assert studio_runs and studio_runs[0].spec_path.resolve() == (folder / "specs/youtube_spam.mt").resolve()


def test_a_rerun_keeps_the_users_edits(tmp_path, capsys):
    copy_example("youtube", tmp_path)
    spec = tmp_path / EXAMPLES["youtube"].spec
    spec.write_text(spec.read_text() + "\n# my note\n")
    (tmp_path / EXAMPLES["youtube"].train).unlink()
    kept = copy_example("youtube", tmp_path)
    assert kept == [spec] and spec.read_text().endswith("# my note\n")
    assert (tmp_path / EXAMPLES["youtube"].train).read_bytes() == (ROOT / "data/youtube/train.csv").read_bytes()


def test_an_out_folder_that_cannot_be_written_is_a_message(tmp_path, capsys):
    (tmp_path / "taken").write_text("a file, not a folder")
    assert main(["demo", "--out", str(tmp_path / "taken")]) == 2
    err = capsys.readouterr().err
    assert "taken: cannot write the demo's project folder there" in err and "Traceback" not in err


def test_demo_help_names_the_examples(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert "--example {youtube,cancer}" in capsys.readouterr().out
