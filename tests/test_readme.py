"""The README's examples are real: its spec passes `mteach check`; its mteach.toml shows the defaults."""
import dataclasses
import shutil
from pathlib import Path

from mteach.cli import main
from mteach.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def block_after(heading: str, fence: str = "```") -> str:
    return README.split(heading, 1)[1].split(fence, 2)[1].split("\n", 1)[1]


def test_the_language_example_passes_check(tmp_path, capsys):
    spec = tmp_path / "spam.mt"
    spec.write_text(block_after("## The concept-spec language"))
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "urls.mt").write_text("define short_link = /bit\\.ly/\n")
    shutil.copytree(ROOT / "specs" / "lexicons", tmp_path / "lexicons")
    assert main(["check", str(spec)]) == 0, capsys.readouterr().err


def test_the_project_file_example_shows_the_defaults(tmp_path):
    toml = tmp_path / "mteach.toml"
    toml.write_text(block_after("## The project file"))
    settings = load_settings(toml)
    defaults = Settings()
    for section in ("label_model", "features", "end_model", "hints", "drift"):
        assert getattr(settings, section) == getattr(defaults, section), section
    assert dataclasses.asdict(settings.project)["id_column"] == "COMMENT_ID"
