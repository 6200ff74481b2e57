"""The Python API's learning functions: train, predict, label (the CLI verbs of the same names).

Each takes data as a pyarrow Table, a pandas DataFrame or a polars DataFrame
(``mteach.engine.io.as_table``). torch and scikit-learn are imported when one is
called, so ``import mteach`` stays light (they come with ``mteach[train]``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from .engine.io import as_table
from .errors import DataError


def train(spec, data, settings=None, gold=None, log=None):
    """Fit the label model on the rules' votes and the end model on its soft labels.

    ``train(spec, data, settings=None, gold=None, log=None) -> (model, report)``

    ``spec``: from :func:`load_spec`; ``settings``: a ``Settings``, the path of an
    ``mteach.toml`` or None for the defaults; ``gold``: label index per row (-1 unknown),
    which sharpens the label model; ``log``: called with progress messages. ``model``
    is a ``TrainedModel`` (save it with ``mteach.engine.train.save_model``); ``report``
    a dict (loss curve, hints' effect, blend).

        model, report = mteach.train(spec, pandas.read_csv("train.csv"))
    """
    from .engine.apply import checked_for
    from .engine.train import train as fit
    from .settings import Settings, load_settings
    if settings is None:
        settings = Settings()
    elif isinstance(settings, (str, Path)):
        settings = load_settings(settings)
    table = as_table(data)
    return fit(checked_for(spec, table.schema), table, settings, gold=gold, log=log or (lambda msg: None))


def predict(model, data) -> dict:
    """Label every row with a trained model.

    ``predict(model, data) -> dict``; ``model``: a ``TrainedModel`` or the path of a model
    folder. The dict holds numpy arrays per row: ``label`` (index into the spec's
    labels), ``proba`` (rows × labels), ``decided_by`` ("rules" where a rule voted, or where
    none did when training chose the class prior there; else "end_model"), ``covered``, ``lm_proba`` and ``em_proba`` (each model's own).

        out = mteach.predict("model", polars.read_parquet("new.parquet"))
        labels = [spec.labels[i] for i in out["label"]]
    """
    table = as_table(data)
    if isinstance(model, (str, Path)):
        from .engine.train import load_model
        model = load_model(model, schema=table.schema)
    return model.predict(table)


def label(spec, data, *, id_column: Optional[str] = None, model=None, gold=None, seed: int = 0):
    """The label ledger of ``data`` in memory: per row its label, probability, votes and each
    rule's log-odds contribution, with the spec hash and blame per rule (``mteach label``).

    ``label(spec, data, *, id_column=None, model=None, gold=None, seed=0) -> Ledger``;
    ``model``: a ``TrainedModel`` (or its folder) whose end model labels the rows no rule
    covers; ``gold``: label index per row (-1 unknown). ``ledger.table`` is the pyarrow
    Table; write it with ``mteach.engine.ledger.write_ledger(ledger, path)``.

        ledger = mteach.label(spec, df, id_column="COMMENT_ID")
        print(ledger.table.column("label").value_counts())
    """
    import numpy as np
    import pyarrow as pa

    from .engine.ledger import build_ledger, model_output, row_fields
    table = as_table(data)
    if id_column is not None and id_column not in table.column_names:
        raise DataError(f"no id column {id_column!r} (columns: {', '.join(table.column_names)})")
    ids = table.column(id_column).combine_chunks() if id_column else pa.array(np.arange(table.num_rows))
    from .engine.apply import apply_table, checked_for
    spec = checked_for(spec, table.schema)  # field types from the data
    votes = apply_table(spec, table)
    output = None
    if model is not None:
        if isinstance(model, (str, Path)):
            from .engine.train import load_model
            model = load_model(model, schema=table.schema)
        output = model_output(model, table, votes)
    return build_ledger(spec, ids, votes, gold=None if gold is None else np.asarray(gold), seed=seed,
                        model_output=output, fields=row_fields(spec, table))
