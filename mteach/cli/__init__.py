"""The ``mteach`` command line: stdout carries data, stderr carries diagnostics.

Exit codes: 0 success; 1 the spec has errors (or its examples fail); 2 usage or
data errors (bad option, unreadable or unsuitable data file, ...); 3 drift flagged
(`mteach drift`); 70 an internal error — a bug: one line says what and asks for a report
(MTEACH_DEBUG=1 shows the traceback); 130 interrupted.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from ..errors import MteachError, SpecError

EXIT_INTERNAL = 70  # BSD sysexits' EX_SOFTWARE: not 1 (spec errors) nor 2 (usage or data errors)

# Each module registers its verbs with `register(subparsers)`.
VERB_MODULES = ("core", "learn", "provenance", "studio", "drift", "suggest")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mteach",
        description="Teach a model with a concept spec instead of labels: check a spec, apply its "
                    "rules to data, see what each rule does, train, and trace every label to its spec line.",
        epilog="Exit codes: 0 ok, 1 spec errors, 2 usage or data errors, 3 drift flagged (drift), "
               "70 internal error (a bug: please report it). `mteach VERB --help` for each verb.")
    from .._version import __version__
    parser.add_argument("--version", action="version", version=f"mteach {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for name in VERB_MODULES:
        try:
            module = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as err:
            if err.name == f"{__name__}.{name}":
                continue  # that part of the CLI is not built in this version
            raise
        module.register(sub)
    return parser


def no_huge_page_advice() -> None:
    """Stop numpy asking for transparent huge pages for arrays of 4 MiB or more (what
    NUMPY_MADVISE_HUGEPAGE=0 does, read only when numpy is first imported; a user's setting
    wins). A verb frees and allocates the same large arrays batch after batch, and each new
    one then faulted in and zeroed fresh 2 MiB pages (perf: 29% of `apply`'s CPU samples on 1M
    rows were in that zeroing, numpy's and Arrow's). Only the CLI does this: the API leaves
    its host process alone. (Keeping freed memory in glibc, or Arrow allocating through it,
    saved more time but raised peak memory at 10M rows past the 1.5x of 1M rows allowed.)"""
    if "NUMPY_MADVISE_HUGEPAGE" in os.environ:
        return
    try:
        from numpy._core.multiarray import _set_madvise_hugepage
    except ImportError:
        try:
            from numpy.core.multiarray import _set_madvise_hugepage  # numpy 1.x
        except ImportError:
            return
    _set_madvise_hugepage(False)


def main(argv=None) -> int:
    no_huge_page_advice()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return run_verb(args)
    except Exception as err:  # a bug: one line, not a traceback (MTEACH_DEBUG=1 shows it)
        if os.environ.get("MTEACH_DEBUG"):
            raise
        if isinstance(err, OSError) and err.filename is not None:  # a file the system would not give us
            print(f"error: {err.filename}: {err.strerror or err}", file=sys.stderr)
            return 2
        what = str(err).splitlines()[0] if str(err) else ""
        print(f"internal error: {type(err).__name__}{': ' + what if what else ''} — this is a bug in mteach; "
              f"please report it with the command line (MTEACH_DEBUG=1 shows the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


def run_verb(args) -> int:
    """Run the verb; the errors a user is meant to read become their message and exit code."""
    try:
        from ..extras import require_extra
        from .common import fill_from_project, guard_output
        require_extra(args.verb)
        fill_from_project(args)
        guard_output(args)
        return args.run(args) or 0
    except SpecError as err:
        print(err.format(), file=sys.stderr)
        n = len(err.errors)
        print(f"{n} error{'s' if n != 1 else ''} in the spec", file=sys.stderr)
        return err.exit_code
    except MteachError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except ModuleNotFoundError as err:
        from ..extras import extra_for, missing_extra_message
        extra = extra_for(err, args.verb)
        if extra is None:
            raise
        print(missing_extra_message(args.verb, extra), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; no output was written", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
