"""The bundled examples, shipped inside the package so ``mteach demo`` works from a wheel.

Each example is a project folder (``mteach.toml``, ``specs/``, ``data/``) that
:func:`copy_example` writes out; every verb then works inside it. In a source
checkout the spec and data files here are links to ``specs/`` and ``data/`` at
the repository root, the one copy the tests and docs use; a built wheel holds
the files themselves.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from ..engine.io import atomic_path


@dataclass(frozen=True)
class Example:
    name: str
    title: str
    spec: str            # paths relative to the project folder
    train: str
    test: str
    test_name: str       # how the demo calls the held-out file
    id_column: str
    gold_column: str
    gold_map: str        # --gold-map: data value=LABEL,...
    positive: str        # the label whose F1 the demo reports
    row_word: str        # what a row is, for the conclusion ("comments")


EXAMPLES = {
    "youtube": Example(
        "youtube", "YouTube comment spam (text: phrases, regexes, lexicons)",
        "specs/youtube_spam.mt", "data/youtube/train.csv", "data/youtube/test.csv", "file 05 (Shakira)",
        "COMMENT_ID", "CLASS", "1=SPAM,0=HAM", "SPAM", "comments"),
    "cancer": Example(
        "cancer", "breast-cancer biopsies (tabular: numeric thresholds on nucleus measurements)",
        "specs/breast_cancer.mt", "data/breast_cancer/train.csv", "data/breast_cancer/test.csv", "test split",
        "id", "diagnosis", "M=MALIGNANT,B=BENIGN", "MALIGNANT", "biopsies"),
}


def copy_example(name: str, dest) -> list:
    """Write example ``name``'s project folder into ``dest``. Files already there are kept as they
    are (your edits survive a re-run); returns the paths of kept files that differ from the bundled ones."""
    kept = []

    def copy(node, target: Path):
        if node.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            for child in node.iterdir():
                if child.name != "__pycache__":
                    copy(child, target / child.name)
            return
        data = node.read_bytes()
        if target.exists():
            if target.read_bytes() != data:
                kept.append(target)
            return
        with atomic_path(target) as tmp:  # a crash leaves no half-written file to be "kept" next time
            tmp.write_bytes(data)
            tmp.chmod(0o644)  # a plain file of the user's, not the private temporary's 0600

    copy(files(__name__) / name, Path(dest))
    return kept
