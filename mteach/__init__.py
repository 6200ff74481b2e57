"""mteach: teach a model with a concept spec instead of labels.

The Python API, the same functions the CLI and the TUI call::

    import mteach
    spec = mteach.load_spec("specs/youtube_spam.mt", schema=table.schema)
    votes = mteach.apply_table(spec, table)          # numpy (rows × rules), -1 = abstain
    stats = mteach.rule_stats(votes, spec.rule_names, [r.rule.label for r in spec.rules],
                              list(spec.labels), gold)  # pyarrow.Table
"""
__version__ = "0.1.0"

from .compiler.checker import load_spec  # noqa: E402
from .compiler.spec import Spec  # noqa: E402
from .engine.analysis import majority_vote, rule_stats, summarize  # noqa: E402
from .engine.apply import apply_file, apply_table, read_votes, rules_table  # noqa: E402
from .errors import DataError, Diagnostic, MteachError, SpecError  # noqa: E402

__all__ = ["Spec", "load_spec", "apply_table", "apply_file", "read_votes", "rules_table", "rule_stats",
           "summarize", "majority_vote", "Diagnostic", "SpecError", "DataError", "MteachError", "__version__"]
