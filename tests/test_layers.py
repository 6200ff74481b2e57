"""Layers point down: tui, cli -> engine -> compiler -> grammar; the core never needs textual."""
import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mteach"
RANK = {"grammar": 0, "compiler": 1, "engine": 2, "cli": 3, "tui": 3}


def test_core_imports_without_textual():
    code = (
        "import sys, pkgutil, importlib\n"
        "sys.modules['textual'] = None\n"
        "import mteach, mteach.grammar, mteach.compiler, mteach.engine\n"
        "for pkg in ('grammar', 'compiler', 'engine'):\n"
        "    p = importlib.import_module('mteach.' + pkg)\n"
        "    for m in pkgutil.iter_modules(p.__path__):\n"
        "        try:\n"
        "            importlib.import_module(f'mteach.{pkg}.{m.name}')\n"
        "        except ImportError as err:\n"
        "            if 'textual' in str(err): raise\n"
        "assert not any(k == 'textual' or k.startswith('textual.') for k in sys.modules if sys.modules[k] is not None)\n"
        "from mteach.tui import session\n"  # the studio's state is textual-free too
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def _imports(path: Path):
    """(line, imported module as an absolute mteach path) for each import in a file."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            yield node.lineno, name


def test_lower_layers_never_import_upper_ones():
    bad = []
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).parts
        layer = parts[0] if len(parts) > 1 else None
        if layer not in RANK:
            continue
        for line, name in _imports(path):
            if name.startswith("textual") and RANK[layer] < 3:
                bad.append(f"{path.relative_to(PACKAGE)}:{line} imports {name}")
            if not name.startswith("mteach."):
                continue
            target = name.split(".")[1]
            # the two interfaces share a rank: the cli's `tui` verb may start the studio,
            # the studio never reaches into the cli
            upward = RANK.get(target, -1) > RANK[layer] or (layer == "tui" and target == "cli")
            if target in RANK and target != layer and upward:
                bad.append(f"{path.relative_to(PACKAGE)}:{line} imports {name}")
    assert not bad, "\n".join(bad)
