"""Optional extras: which ``pip install 'mteach[EXTRA]'`` brings a missing module.

The core install (lark, pyarrow, numpy, rich) runs check, apply, stats, rows,
explain and audit. The verbs that fit or load models need ``[train]`` (torch,
scikit-learn, scipy), the studio ``[tui]`` (textual), distributed apply
``[dask]``. Heavy modules are imported only where they are used; the CLI checks
a verb's extra before it starts (so a missing one costs no work) and turns any
later ``ModuleNotFoundError`` of an extra's module into the same one line.
"""
from __future__ import annotations

import importlib.util
from typing import Optional

MODULES_OF_EXTRA = {
    "train": ("torch", "sklearn", "scipy"),
    "tui": ("textual", "sklearn", "scipy"),  # the studio shows the label model's contributions
    "dask": ("dask", "distributed"),
}
EXTRA_OF_VERB = {"train": "train", "predict": "train", "label": "train", "verify": "train", "diff": "train",
                 "demo": "train", "drift": "train", "suggest": "train", "tui": "tui"}


def require_extra(verb: str) -> None:
    """Raise ModuleNotFoundError (naming the module) when a module of the verb's extra is missing."""
    for module in MODULES_OF_EXTRA.get(EXTRA_OF_VERB.get(verb, ""), ()):
        if importlib.util.find_spec(module) is None:
            raise ModuleNotFoundError(f"No module named {module!r}", name=module)


def extra_for(err: ImportError, verb: Optional[str] = None) -> Optional[str]:
    """The extra that provides the module ``err`` failed to import (the verb's own extra first),
    or None when no extra provides it."""
    module = (getattr(err, "name", None) or "").split(".")[0]
    extras = [e for e, modules in MODULES_OF_EXTRA.items() if module in modules]
    if EXTRA_OF_VERB.get(verb) in extras:
        return EXTRA_OF_VERB[verb]
    return extras[0] if extras else None


def missing_extra_message(verb: str, extra: str) -> str:
    return f"mteach {verb} needs the '{extra}' extra: pip install 'mteach[{extra}]'"
