"""The ``mteach`` command line: stdout carries data, stderr carries diagnostics.

Exit codes: 0 success; 1 the spec has errors (or its examples fail); 2 usage or
data errors (bad option, unreadable or unsuitable data file, ...).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import MteachError, SpecError

# Each module registers its verbs with `register(subparsers)`.
VERB_MODULES = ("core", "learn", "provenance", "studio", "drift", "suggest")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mteach",
        description="Teach a model with a concept spec instead of labels: check a spec, apply its "
                    "rules to data, see what each rule does, train, and trace every label to its spec line.",
        epilog="Exit codes: 0 ok, 1 spec errors, 2 usage or data errors. `mteach VERB --help` for each verb.")
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


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        from ..extras import require_extra
        from .common import fill_from_project
        require_extra(args.verb)
        fill_from_project(args)
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
