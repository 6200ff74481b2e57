"""mteach: teach a model with a concept spec instead of labels.

The Python API, the same functions the CLI and the TUI call. Data may be a pyarrow
Table, a pandas DataFrame or a polars DataFrame wherever a function takes ``data``::

    import pandas as pd
    import mteach

    df = pd.read_csv("data/youtube/train.csv")
    spec = mteach.load_spec("specs/youtube_spam.mt")            # SpecError lists every problem
    votes = mteach.apply_table(spec, df)                        # int8 (rows × rules), -1 = abstain
    stats = mteach.rule_stats(votes, spec.rule_names, [r.rule.label for r in spec.rules],
                              list(spec.labels))               # pyarrow.Table, one row per rule
    model, report = mteach.train(spec, df)                      # needs mteach[train]
    out = mteach.predict(model, pd.read_csv("data/youtube/test.csv"))
    ledger = mteach.label(spec, df, id_column="COMMENT_ID", model=model)

``LabelModel`` and ``EndModel`` (scikit-learn estimators) are imported on first use,
so ``import mteach`` needs neither torch nor scikit-learn.
"""
from ._version import __version__  # noqa: E402

from .api import label, predict, train  # noqa: E402
from .compiler.checker import load_spec  # noqa: E402
from .compiler.spec import Spec  # noqa: E402
from .engine.analysis import majority_vote, rule_stats, summarize  # noqa: E402
from .engine.apply import apply_file, apply_table, read_votes, rules_table  # noqa: E402
from .engine.io import as_table  # noqa: E402
from .errors import DataError, Diagnostic, MteachError, SpecError  # noqa: E402

_LAZY = {"LabelModel": "engine.label_model", "EndModel": "engine.end_model"}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'mteach' has no attribute {name!r}")


__all__ = ["Spec", "load_spec", "apply_table", "apply_file", "read_votes", "rules_table", "rule_stats",
           "summarize", "majority_vote", "train", "predict", "label", "LabelModel", "EndModel", "as_table",
           "Diagnostic", "SpecError", "DataError", "MteachError", "__version__"]
