"""Pieces every verb shares: options, loading spec + data, gold labels, progress, output."""
from __future__ import annotations

import contextlib
import json
import math
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow as pa

from ..compiler.checker import load_spec
from ..compiler.spec import Spec
from ..engine.apply import resolve_id_column
from ..engine.datasets import open_source
from ..engine.gold import GoldRequest
from ..engine.io import DataSource, check_output
from ..engine.report import fmt_number
from ..engine.votes import collect_votes, open_engine
from ..errors import DataError, MteachError, did_you_mean


PROJECT_FILE = "mteach.toml"


def add_spec_data_arguments(p, data=True):
    """SPEC and DATA, which may be left out when ./mteach.toml names them in [project]."""
    p.add_argument("spec", nargs="?", metavar="SPEC",
                   help="the spec file (.mt); default: [project] spec in mteach.toml (a data file given alone "
                        "is taken as DATA)")
    if data:
        add_data_argument(p)
    p.set_defaults(from_project=("spec", "data") if data else ("spec",))


def add_data_argument(p):
    p.add_argument("data", nargs="?", metavar="DATA",
                   help="a .parquet, .csv or .jsonl file, or a Parquet dataset (a folder, a glob in quotes, "
                        "or files joined by commas); default: [project] data in mteach.toml")
    p.set_defaults(from_project=("data",))


def is_data_path(path) -> bool:
    from ..engine.io import FORMATS
    return Path(str(path).split(",")[0]).suffix.lower() in FORMATS


def fill_from_project(args):
    """Fill the spec, data, id column and gold file a verb was not given from [project]
    of ./mteach.toml (or --config); paths there are relative to that file."""
    required = getattr(args, "from_project", ())
    given_spec = getattr(args, "spec", None)
    if "data" in required and given_spec and is_data_path(given_spec):
        if args.data is not None:
            raise DataError(f"{given_spec}: a data file where the spec (.mt) goes; give the spec first: SPEC DATA")
        args.spec, args.data = None, given_spec  # `mteach stats data.csv`: the one path given is the data
    wants = list(required) + [a for a in ("id_column", "gold") if hasattr(args, a)]
    missing = [a for a in wants if getattr(args, a) in (None, [])]
    if not missing:
        return
    path = getattr(args, "config", None) or (PROJECT_FILE if Path(PROJECT_FILE).is_file() else None)
    project = None
    if path:
        from ..settings import SettingsError, load_settings
        try:
            settings = load_settings(path)
        except SettingsError as err:
            raise DataError(str(err)) from None
        project = settings.project
        specs = [str(settings.resolve(s)) for s in project.spec]
        if "specs" in missing and specs:
            args.specs = specs
        if "spec" in missing and specs:
            if len(specs) > 1:
                raise DataError(f"{path} lists several specs in [project]; name the one to use")
            args.spec = specs[0]
        if "data" in missing and project.data:
            args.data = str(settings.resolve(project.data))
        if "id_column" in missing and project.id_column and not getattr(args, "gold_column", None):
            args.id_column = project.id_column
        if "gold" in missing and project.gold and not getattr(args, "gold_column", None):
            args.gold = str(settings.resolve(project.gold))
    for name in required:
        if getattr(args, name) in (None, []):
            where = f"{path} has no [project] {name.rstrip('s')}" if path else f"there is no {PROJECT_FILE} here"
            raise DataError(f"give {name.rstrip('s').upper()} on the command line ({where})")


# Arguments that name inputs; an output is refused when it would overwrite one of them.
INPUT_ARGUMENTS = ("spec", "specs", "data", "gold", "model", "config", "ledger", "reference", "new", "queue")


def guard_output(args) -> None:
    """Refuse a verb's -o, before any work, when it names an input — the data, the spec, a file
    the spec uses or a lexicon it reads, a gold file, a model — or the wrong kind of thing
    (``engine.io.check_output``). A verb says what its -o is with ``set_defaults(output_kind=
    "file" | "model" | "folder", output_writes=(names written into the folder))``."""
    kind, output = getattr(args, "output_kind", None), getattr(args, "output", None)
    if not kind or not output:
        return
    if kind == "file" and writes_parts(args):  # a folder of parts, replaced whole
        kind = "parts"
    def given(name):
        value = getattr(args, name, None)
        return value if isinstance(value, list) else [value] if value else []
    inputs = [path for name in INPUT_ARGUMENTS for path in given(name)]
    for spec_path in [p for p in given("spec") + given("specs") if Path(p).is_file()]:
        try:
            spec = load_spec(spec_path)
        except MteachError:
            continue  # the verb reports it
        inputs += [spec.root / rel for rel in spec.files]
    check_output(output, inputs, kind, getattr(args, "output_writes", ()))


def add_data_options(p, gold=True):
    p.add_argument("--id", dest="id_column", metavar="COLUMN",
                   help="the data column that identifies a row (default: row numbers from 0)")
    if gold:
        g = p.add_argument_group("gold labels (optional)")
        g.add_argument("--gold", metavar="FILE",
                       help="a CSV/Parquet/JSONL file with columns id,label (label = a spec label); needs --id")
        g.add_argument("--gold-column", metavar="COLUMN", help="a column of the data holding gold labels")
        g.add_argument("--gold-map", metavar="MAP",
                       help="with --gold-column: how its values map to labels, e.g. 1=SPAM,0=HAM "
                            "(default: the values are label names)")


def add_run_options(p, threads: bool = False, quiet: str = "no progress bar or summary"):
    """-q (and --threads for verbs that apply rules), worded the same for every verb."""
    if threads:
        p.add_argument("--threads", type=int, default=2, metavar="N", help="batches evaluated at once (default 2)")
    p.add_argument("-q", "--quiet", action="store_true", help=quiet)


def add_engine_options(p, output: str = ""):
    """--engine and --scheduler, for the verbs that compute votes (default: [engine] in mteach.toml)."""
    g = p.add_argument_group("engine (optional; default: [engine] in mteach.toml, else local)")
    g.add_argument("--engine", choices=("local", "dask"), default=None,
                   help="local: threads on this machine; dask: a Dask cluster (pip install 'mteach[dask]'), "
                        "the data a Parquet file or dataset" + (f"; {output}" if output else "") +
                        ("; an -o folder is replaced whole once the new one is complete (a previous output of "
                         "mteach's; any other non-empty folder is refused)" if "folder" in output else ""))
    g.add_argument("--scheduler", metavar="ADDRESS",
                   help="with --engine dask: the scheduler, e.g. tcp://10.0.0.5:8786 (default: start a local "
                        "cluster of 2 workers)")


def engine_choice(args) -> tuple:
    """(engine name, scheduler address) from the flags, else [engine] of mteach.toml, else local."""
    name, scheduler = getattr(args, "engine", None), getattr(args, "scheduler", None)
    if name is None and hasattr(args, "engine"):
        path = getattr(args, "config", None) or (PROJECT_FILE if Path(PROJECT_FILE).is_file() else None)
        if path:
            from ..settings import SettingsError, load_settings
            try:
                section = load_settings(path).engine
            except SettingsError as err:
                raise DataError(str(err)) from None
            name, scheduler = section.name, scheduler or section.scheduler
    return name or "local", scheduler


@contextlib.contextmanager
def engine_for(args, threads: int = 2):
    """The engine the flags (else [engine] of mteach.toml) ask for, stopped on exit."""
    name, scheduler = engine_choice(args)
    if name == "dask":
        from ..extras import require_extra
        require_extra("dask")
    with open_engine(name, scheduler, threads) as engine:
        yield engine


def writes_parts(args) -> bool:
    """Whether this run's outputs are partitioned folders (a part per partition and a manifest,
    replacing a previous output of mteach's whole): on the Dask engine."""
    return engine_choice(args)[0] == "dask"


def add_format_option(p):
    p.add_argument("--format", choices=("table", "json"), default="table",
                   help="table for people (default), json for machines")


@contextlib.contextmanager
def progress_bar(total: Optional[int], description: str, enabled: bool = True):
    """A progress bar on stderr when it is a terminal; a no-op callback otherwise."""
    if not (enabled and sys.stderr.isatty()):
        yield lambda n: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.console import Console
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


@dataclass
class Loaded:
    spec: Spec
    source: DataSource
    id_column: Optional[str]


def load(spec_path, data_path, id_column=None) -> Loaded:
    source = open_source(data_path)
    spec = load_spec(spec_path, source.schema)
    print_warnings(spec)
    return Loaded(spec, source, resolve_id_column(source, id_column))


def load_model(folder, spec=None, schema=None):
    """``engine.train.load_model``, then the cyclic garbage collector told to leave alone what
    the process holds so far (``gc.freeze``): the modules imported and the model live until
    the command exits, and each full collection walked them all again (~0.1 s each, holding
    the GIL; 0.4 s of `label --model` on 1M rows)."""
    import gc
    from ..engine.train import load_model as load
    model = load(folder, spec, schema)
    gc.freeze()
    return model


def print_warnings(spec: Spec):
    for w in spec.warnings:
        print(w.format(spec.sources), file=sys.stderr)


def gold_request(args) -> GoldRequest:
    """The gold labels the flags ask for (--gold, --gold-column, --gold-map)."""
    return GoldRequest(getattr(args, "gold", None), getattr(args, "gold_column", None), getattr(args, "gold_map", None))


def gold_asked(args) -> bool:
    """Whether any gold flag was given (then a verb reads every row; without, it may stream)."""
    return any(getattr(args, flag, None) for flag in ("gold", "gold_column", "gold_map"))


def votes_and_gold(args, loaded: Loaded, columns=(), threads=2, quiet=False, description="applying rules",
                   rule_columns=True):
    """All rows' votes (a ``VoteBatch`` holding the gold column, ``columns`` and, with
    ``rule_columns``, the rules' columns) and the gold labels the flags ask for (None without),
    from one read of the data, with a progress bar."""
    gold = gold_request(args)
    gold.check(loaded.source.schema, loaded.id_column, loaded.source.path)
    with progress_bar(loaded.source.num_rows, description, not quiet) as advance, \
            engine_for(args, threads) as engine:
        batch = collect_votes(loaded.spec, loaded.source, loaded.id_column, columns=gold.columns + tuple(columns),
                              threads=threads, progress=advance, engine=engine, rule_columns=rule_columns)
    return batch, gold.resolve(loaded.spec.labels, batch.ids, batch.table, loaded.source.path, loaded.id_column)


def terminal_width() -> int:
    """Columns a text table may use: $COLUMNS, else the terminal's width when stdout is one,
    else 80."""
    return shutil.get_terminal_size((80, 24)).columns


def clip(text: str, width: int, keep_end: bool = False) -> str:
    """``text`` cut to ``width`` characters with an ellipsis (at the start with ``keep_end``)."""
    if len(text) <= width:
        return text
    return "…" + text[len(text) - width + 1:] if keep_end else text[:width - 1] + "…"


def flow(parts: list, width: int) -> str:
    """Join phrases with spaces, starting an indented line before a phrase that would cross
    ``width``: prose that fits the terminal and never breaks inside a phrase or a number."""
    lines = [parts[0]]
    for part in parts[1:]:
        if len(lines[-1]) + 1 + len(part) <= width:
            lines[-1] += " " + part
        else:
            lines.append("  " + part)
    return "\n".join(lines)


def print_table(rows: list, columns: list, out=None, right=None, width=None, short=None, shrink=None,
                keep_end=()):
    """A plain aligned text table (no colours, so it pipes and diffs cleanly).

    With ``width``, a table wider than that first takes the ``short`` header names (column ->
    name), then clips the ``shrink`` columns (column -> its narrowest width; the first is
    clipped first) with an ellipsis, at the start for those in ``keep_end``, and if that is not
    enough puts one space between columns instead of two. Other cells, numbers above all, are
    never cut. True when it took the short names."""
    out = out or sys.stdout
    right = set(right or [])
    cells = [[fmt_number(r.get(c)) if not isinstance(r.get(c), str) else r.get(c) for c in columns] for r in rows]
    heads = list(columns)

    def fit(gap):
        """Column widths, the shrink columns clipped as far as needed at this gap; and whether
        the table fits."""
        w = [max([len(heads[i])] + [len(row[i]) for row in cells]) for i in range(len(columns))]
        if width is None:
            return w, True
        for c, narrowest in (shrink or {}).items():
            excess = sum(w) + gap * (len(w) - 1) - width
            if excess <= 0:
                break
            i = columns.index(c)
            w[i] = max(w[i] - excess, narrowest, len(heads[i]))
        return w, sum(w) + gap * (len(w) - 1) <= width

    shortened, gap = False, 2
    w, fits = fit(gap)
    if not fits and short:
        heads, shortened = [short.get(c, c) for c in columns], True
        w, fits = fit(gap)
    if not fits:
        gap = 1
        w, _ = fit(gap)
    for i, c in enumerate(columns):
        for row in cells:
            row[i] = clip(row[i], w[i], keep_end=c in keep_end)
    line = lambda vals: (" " * gap).join(v.rjust(n) if columns[i] in right else v.ljust(n)
                                         for i, (v, n) in enumerate(zip(vals, w))).rstrip()
    print(line(heads), file=out)
    print(line(["-" * n for n in w]), file=out)
    for row in cells:
        print(line(row), file=out)
    return shortened


def dump_json(obj, out=None):
    out = out or sys.stdout
    def default(o):
        if isinstance(o, np.integer):
            return int(o)
        if isinstance(o, np.floating):
            return None if np.isnan(o) else float(o)
        if isinstance(o, np.ndarray):
            return o.tolist()
        raise TypeError(type(o))

    def clean(o):
        if isinstance(o, float) and math.isnan(o):
            return None
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, list):
            return [clean(v) for v in o]
        return o
    json.dump(clean(obj), out, indent=2, default=default)
    out.write("\n")
