"""Load a spec (with the files it ``use``s and its lexicons), check it, and resolve it.

Checking reports every problem at once. Resolving inlines defines and lexicons, so
the compiler sees only: Match(source, Regex), Has/Near(source, Phrases), Compare,
Between, In, Missing, Truth(field), And/Or/Not, Measure and Window — with field
references still by spec name (``Spec.fields`` maps them to columns).
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Optional

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import Diagnostic, SpecError, did_you_mean
from ..grammar import ast
from ..grammar.parser import parse
from ..grammar.visitor import NodeVisitor
from ..spans import Span
from .spec import CompiledRule, Spec, field_kind, regex_pattern


_INTERPOLATION = re.compile(r"(?<!\\)\{([A-Za-z_][A-Za-z0-9_]*)\}")


def regex_error(regex: ast.Regex) -> Optional[str]:
    """RE2's complaint about a pattern, or None when it compiles."""
    try:
        pc.match_substring_regex(pa.array([""], pa.string()), regex_pattern(regex))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        return str(err).replace("Invalid regular expression: ", "")
    return None


def _display(path: Path) -> str:
    """The path as the user will recognise it: relative to the working folder when inside it."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(Path(path).resolve()) if rel.startswith("..") else rel


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


_LINE_BREAK = re.compile("\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def _offset_span(display: str, before: str) -> Span:
    """The span of the character that follows the text ``before``."""
    parts = _LINE_BREAK.split(before)  # the line breaks of str.splitlines, as the parser counts
    line, column = len(parts), len(parts[-1]) + 1
    return Span(display, line, column, line, column + 1)


_KIND_WORDS = {"text": "text", "number": "number", "boolean": "yes/no (boolean)",
               "other": "other (not text, number or boolean)"}


def _a_kind(kind) -> str:
    return "an other" if kind == "other" else f"a {_KIND_WORDS.get(kind, kind)}"


def read_lexicon(path: Path) -> tuple:
    """One phrase a line; blank lines and lines starting with # are skipped."""
    text = path.read_text(encoding="utf-8")
    return tuple(dict.fromkeys(s.strip() for s in text.splitlines() if s.strip() and not s.lstrip().startswith("#")))


class _Checker(NodeVisitor):
    """Checks a spec's statements (in ``run``) and resolves its predicates and values
    (the ``visit_`` methods), collecting every problem."""
    # Statements are checked by ``run`` in the order the language needs (labels before
    # the rules that name them); a whole file by ``read``.
    not_applicable = frozenset({"Concept", "Labels", "Field", "Define", "Rule", "Hint", "Example", "Use",
                                "SpecFile"})

    def __init__(self, path: Path, schema: Optional[pa.Schema], text: Optional[str] = None):
        self.path = path
        self.text = text  # the main file's text, when it comes from an editor buffer
        self.root = path.parent
        self.schema = schema
        self.diags: list[Diagnostic] = []
        self.sources: dict[str, str] = {}
        self.hashed: dict[str, bytes] = {}  # root-relative path -> bytes
        self.file_of_display: dict[str, Path] = {}

    def error(self, span, message, hint=""):
        self.diags.append(Diagnostic(span, message, hint=hint))

    def warn(self, span, message, hint=""):
        self.diags.append(Diagnostic(span, message, severity="warning", hint=hint))

    # -- files -----------------------------------------------------------------------
    def read(self, path: Path, span) -> Optional[ast.SpecFile]:
        display = _display(path)
        try:
            raw = self.text.encode("utf-8") if self.text is not None and path == self.path else path.read_bytes()
            text = raw.decode("utf-8")
        except FileNotFoundError:
            self.error(span, f"spec file not found: {display}")
            return None
        except UnicodeDecodeError as err:
            self.error(_offset_span(display, raw[:err.start].decode("utf-8", "replace")),
                       f"{display} is not UTF-8 text (byte {err.start})", hint="save the file as UTF-8")
            return None
        except UnicodeEncodeError as err:  # a lone surrogate in an editor buffer
            self.error(_offset_span(display, self.text[:err.start]),
                       f"character {err.object[err.start]!r} is not valid Unicode text",
                       hint="delete it or retype it")
            return None
        except OSError as err:
            self.error(span, f"cannot read {display}: {err.strerror}")
            return None
        self.sources[display] = text
        self.file_of_display[display] = path
        self.hashed[path.resolve().relative_to(self.root.resolve()).as_posix()] = raw
        parsed, diags = parse(text, display)
        self.diags.extend(diags)
        return parsed

    def load(self) -> list:
        """Statements of the main file, plus the defines of every used file."""
        main = self.read(self.path, None)
        if main is None:
            return []
        statements = list(main.statements)
        seen = {self.path.resolve()}
        queue = [(s, self.path) for s in main.statements if isinstance(s, ast.Use)]
        while queue:
            use, from_path = queue.pop(0)
            target = (from_path.parent / use.path)
            if not _inside(target, self.root):
                self.error(use.span, f'"{use.path}" is outside the spec\'s folder',
                           hint="used files must live in the spec's folder or below it")
                continue
            if target.resolve() in seen:
                continue
            seen.add(target.resolve())
            used = self.read(target, use.span)
            if used is None:
                continue
            for s in used.statements:
                if isinstance(s, ast.Define):
                    statements.append(s)
                elif isinstance(s, ast.Use):
                    queue.append((s, target))
                else:
                    self.error(s.span, f"a used file holds only define and use lines (this one is used by {use.span.file})")
        return statements

    def lexicon(self, node: ast.Lexicon) -> Optional[ast.Phrases]:
        base = self.file_of_display.get(node.span.file, self.path).parent
        target = base / node.path
        if not _inside(target, self.root):
            self.error(node.span, f'lexicon "{node.path}" is outside the spec\'s folder',
                       hint="keep lexicon files in the spec's folder or below it")
            return None
        try:
            raw = target.read_bytes()
            phrases = read_lexicon(target)
        except FileNotFoundError:
            self.error(node.span, f'lexicon file not found: {_display(target)}',
                       hint="create it (one phrase a line) or fix the path; it is relative to the spec file")
            return None
        except (UnicodeDecodeError, OSError) as err:
            self.error(node.span, f"cannot read lexicon {_display(target)}: {err}")
            return None
        if not phrases:
            self.error(node.span, f"lexicon {_display(target)} has no phrases", hint="one phrase a line")
            return None
        self.hashed[target.resolve().relative_to(self.root.resolve()).as_posix()] = raw
        return ast.Phrases(phrases, node.mode, node.span)

    # -- the whole spec --------------------------------------------------------------
    def run(self) -> Spec:
        statements = self.load()
        by_type = lambda t: [s for s in statements if isinstance(s, t)]
        top = Span(_display(self.path), 1, 1, 1, 2)

        concepts = by_type(ast.Concept)
        # A file of only defines (and uses) is a library for other specs to `use`.
        library = not concepts and not by_type(ast.Labels) and not by_type(ast.Rule)
        if not concepts and self.sources and not library:
            self.error(top, "the spec has no concept line", hint='start with: concept NAME "what it means"')
        for extra in concepts[1:]:
            self.error(extra.span, "one concept per file", hint="put each concept in its own spec file")
        concept = concepts[0] if concepts else ast.Concept("unnamed", "", top)

        labels_stmts = by_type(ast.Labels)
        labels: list[str] = []
        if not labels_stmts and self.sources and not library:
            self.error(top, "the spec has no labels line", hint="e.g. labels SPAM, HAM")
        for extra in labels_stmts[1:]:
            self.error(extra.span, "labels are given once", hint="list every label on one labels line")
        if labels_stmts:
            stmt = labels_stmts[0]
            for name, span in zip(stmt.names, stmt.spans):
                if name in labels:
                    self.error(span, f"label {name} is listed twice")
                elif name.lower() == "abstain":
                    self.error(span, "abstain is implicit and is not a label")
                else:
                    labels.append(name)
            if len(labels) < 2:
                self.error(stmt.span, "a concept needs two or more labels", hint="e.g. labels SPAM, HAM")
        self.labels = labels

        self.fields: dict[str, ast.Field] = {}
        self.kinds: dict[str, Optional[str]] = {}
        columns = list(self.schema.names) if self.schema is not None else []
        for f in by_type(ast.Field):
            if f.name in self.fields:
                self.error(f.span, f"field {f.name} is defined twice (first at line {self.fields[f.name].span.line})")
                continue
            self.fields[f.name] = f
            if self.schema is None:
                self.kinds[f.name] = None
            elif f.column not in columns:
                self.kinds[f.name] = None
                self.error(f.span, f'column "{f.column}" is not in the data{did_you_mean(f.column, columns)}',
                           hint="columns: " + ", ".join(columns[:12]) + (" ..." if len(columns) > 12 else ""))
            else:
                self.kinds[f.name] = field_kind(self.schema.field(f.column).type)

        self.defines: dict[str, ast.Define] = {}
        for d in by_type(ast.Define):
            if d.name in self.defines:
                first = self.defines[d.name].span
                self.error(d.span, f"{d.name} is defined twice (first at {first.file}:{first.line})")
            elif d.name in self.fields:
                self.error(d.span, f"{d.name} is already a field name", hint="give the define another name")
            else:
                self.defines[d.name] = d
        self.resolved_defines: dict[str, object] = {}
        self.resolving: list[str] = []
        for name in self.defines:
            self.define_value(name, self.defines[name].span)

        rules = []
        seen_rules: dict[str, ast.Rule] = {}
        for r in by_type(ast.Rule):
            if r.name in seen_rules:
                self.error(r.span, f"rule {r.name} is defined twice (first at line {seen_rules[r.name].span.line})",
                           hint="rule names must be unique: they are how labels are traced back")
                continue
            seen_rules[r.name] = r
            label_index = self.label(r.label, r.label_span)
            pred = self.predicate(r.predicate)
            if r.unless is not None:
                pred = ast.And((pred, ast.Not(self.predicate(r.unless), r.unless.span)), r.span)
            rules.append(CompiledRule(len(rules), r, label_index, pred))
        if not rules and self.sources and not library:
            self.warn(top, "the spec has no rules yet", hint="add one: rule NAME : PREDICATE => LABEL")

        hints = []
        for h in by_type(ast.Hint):
            self.label(h.label, h.label_span)
            if h.kind == "measure":
                h = replace(h, measure=self.measure(h.measure))
            hints.append(h)

        examples = [self.example(e) for e in by_type(ast.Example)]

        h = hashlib.sha256()
        for rel in sorted(self.hashed):
            h.update(rel.encode() + b"\0" + hashlib.sha256(self.hashed[rel]).digest())
        errors = [d for d in self.diags if d.severity == "error"]
        if errors:
            raise SpecError(self.diags, self.sources)
        return Spec(self.path, self.root, concept, tuple(labels), self.fields, self.kinds, self.defines,
                    rules, hints, examples, self.sources, h.hexdigest(), sorted(self.hashed),
                    [d for d in self.diags if d.severity == "warning"])

    def label(self, name, span) -> int:
        if name in self.labels:
            return self.labels.index(name)
        if self.labels:
            self.error(span, f"unknown label {name}{did_you_mean(name, self.labels)}",
                       hint="labels: " + ", ".join(self.labels))
        return -1

    # -- names -----------------------------------------------------------------------
    def define_value(self, name, span):
        if name in self.resolved_defines:
            return self.resolved_defines[name]
        if name in self.resolving:
            cycle = " -> ".join(self.resolving[self.resolving.index(name):] + [name])
            self.error(span, f"defines refer to each other in a circle: {cycle}")
            return None
        self.resolving.append(name)
        value = self.defines[name].value
        if isinstance(value, ast.Ref):
            value = self.define_value(value.name, value.span) if value.name in self.defines else self.unknown(value)
        elif isinstance(value, ast.Lexicon):
            value = self.lexicon(value)
        elif isinstance(value, ast.Regex):
            value = self.regex(value)
        elif isinstance(value, ast.Phrases):
            value = self.phrases(value)
        elif value is not None:
            value = ("predicate", self.predicate(value))
        self.resolving.pop()
        self.resolved_defines[name] = value
        return value

    def unknown(self, ref: ast.Ref, what="field or define"):
        names = list(self.fields) + list(self.defines)
        self.error(ref.span, f"unknown {what} {ref.name}{did_you_mean(ref.name, names)}")
        return None

    def source(self, node):
        """A text source: a text field or first/last(...) of one."""
        if isinstance(node, ast.Window):
            inner = self.source(node.source)
            return replace(node, source=inner) if inner is not None else None
        if node.name in self.fields:
            kind = self.kinds[node.name]
            if kind not in ("text", None):
                self.error(node.span, f"{node.name} is {_a_kind(kind)} field; this needs text",
                           hint=f'column "{self.fields[node.name].column}" holds {_KIND_WORDS[kind]} values')
            return node
        if node.name in self.defines:
            self.error(node.span, f"{node.name} is a define, not a field; a text field goes here")
            return None
        return self.unknown(node, "field")

    def regex(self, node: ast.Regex):
        node = self.interpolate(node)
        problem = regex_error(node)
        if problem:
            hint = "RE2 has no lookaround or backreferences; rewrite without them" \
                if "perl operator" in problem or "escape sequence" in problem else ""
            self.error(node.span, f"invalid regex: {problem}", hint=hint)
            return None
        return node

    def interpolate(self, node: ast.Regex) -> ast.Regex:
        """``{name}`` in a regex, where name is a phrase-list define, stands for any of its
        phrases (escaped; spaces match any whitespace). ``\\{`` is a literal brace."""
        def substitute(m):
            name = m.group(1)
            if name not in self.defines:
                near = did_you_mean(name, [n for n in self.defines])
                self.warn(node.span, f"{{{name}}} in this regex is not a define, so it matches literally{near}",
                          hint="write \\{ for a literal brace")
                return m.group(0)
            value = self.define_value(name, node.span)
            if not isinstance(value, ast.Phrases):
                if value is not None:
                    self.error(node.span, f"{{{name}}} in a regex needs a phrase list; {name} is not one")
                return m.group(0)
            return "(?:" + "|".join(r"\s+".join(re.escape(w) for w in p.split()) for p in value.phrases) + ")"
        pattern = _INTERPOLATION.sub(substitute, node.pattern)
        return node if pattern == node.pattern else replace(node, pattern=pattern)

    def phrases(self, node: ast.Phrases):
        empty = [p for p in node.phrases if not p.strip()]
        if empty:
            self.error(node.span, "a phrase cannot be empty")
            return None
        return node

    def named(self, ref: ast.Ref, want: tuple, what: str):
        """A define of one of the wanted node types (e.g. a regex define for `~`)."""
        if ref.name in self.defines:
            value = self.define_value(ref.name, ref.span)
            if value is None:
                return None
            if isinstance(value, want):
                return value
            kind = {ast.Regex: "a regex", ast.Phrases: "a phrase list"}.get(type(value), "a test")
            self.error(ref.span, f"{ref.name} is {kind}; {what} goes here")
            return None
        if ref.name in self.fields:
            self.error(ref.span, f"{ref.name} is a field; {what} goes here")
            return None
        return self.unknown(ref, "define")

    def regex_arg(self, node):
        return self.regex(node) if isinstance(node, ast.Regex) else self.named(node, (ast.Regex,), "a regex")

    def phrases_arg(self, node):
        if isinstance(node, ast.Lexicon):
            return self.lexicon(node)
        if isinstance(node, ast.Phrases):
            return self.phrases(node)
        if node.name in self.defines and isinstance(self.define_value(node.name, node.span), ast.Regex):
            self.error(node.span, f"{node.name} is a regex; `has` takes phrases", hint=f"write `~ {node.name}`")
            return None
        return self.named(node, (ast.Phrases,), "a phrase list")

    # -- predicates and values (visit_<Node>: see grammar/visitor.py) ----------------
    def predicate(self, node):
        return self.visit(node)

    def visit_And(self, node):
        return replace(node, items=tuple(self.predicate(i) for i in node.items))

    visit_Or = visit_And

    def visit_Not(self, node):
        return replace(node, item=self.predicate(node.item))

    def visit_Match(self, node):
        return replace(node, source=self.source(node.source), regex=self.regex_arg(node.regex))

    def visit_Has(self, node):
        return replace(node, source=self.source(node.source), phrases=self.phrases_arg(node.phrases))

    def visit_Near(self, node):
        return replace(node, source=self.source(node.source), left=self.phrases_arg(node.left),
                       right=self.phrases_arg(node.right))

    def visit_Compare(self, node):
        left, right = self.value(node.left), self.value(node.right)
        lk, rk = self.value_kind(left), self.value_kind(right)
        odd = [v for v, k in ((left, lk), (right, rk)) if k in ("boolean", "other")]
        if odd:
            self.not_comparable(odd[0])
        elif "string" in (lk, rk):
            if node.op not in ("==", "!="):
                self.error(node.span, f"`{node.op}` compares numbers; text can only be tested with == or !=")
            elif {lk, rk} - {"string", "text", None}:
                self.error(node.span, "this compares a number with text", hint="quote both or neither")
        elif "text" in (lk, rk) and None not in (lk, rk):
            self.error(node.span, "a text field cannot be compared as a number",
                       hint="compare a measure of it instead, e.g. len(text) > 10")
        return replace(node, left=left, right=right)

    def visit_Between(self, node):
        parts = [self.value(v) for v in (node.value, node.low, node.high)]
        for v in parts:
            if self.value_kind(v) in ("boolean", "other"):
                self.not_comparable(v)
                break
            if self.value_kind(v) in ("string", "text"):
                self.error(node.span, "between compares numbers")
                break
        return replace(node, value=parts[0], low=parts[1], high=parts[2])

    def visit_In(self, node):
        src = node.source
        if not isinstance(src, ast.Ref) or src.name not in self.fields:
            if isinstance(src, ast.Ref):
                self.unknown(src, "field")
            else:
                self.error(src.span, "`in { ... }` tests a field's value")
            return node
        kind = self.kinds[src.name]
        kinds = {"string" if isinstance(v, ast.String) else "number" for v in node.values}
        if kind in ("boolean", "other"):
            self.not_comparable(src)
        elif kind == "number" and "string" in kinds or kind == "text" and "number" in kinds:
            self.error(node.span, f"{src.name} holds {kind} values; quote the values to match" if kind == "text"
                       else f"{src.name} holds numbers; write the values without quotes")
        return node

    def visit_Missing(self, node):
        if not isinstance(node.source, ast.Ref) or node.source.name not in self.fields:
            if isinstance(node.source, ast.Ref):
                self.unknown(node.source, "field")
            else:
                self.error(node.source.span, "`is missing` tests a field")
        return node

    def visit_Truth(self, node):
        name = node.ref.name
        if name in self.fields:
            if self.kinds[name] not in ("boolean", None):
                self.error(node.span, f"{name} is {_a_kind(self.kinds[name])} field, not a yes/no test",
                           hint=f'write a test on it, e.g. `{name} has "..."`' if self.kinds[name] == "text" else "")
            return node
        if name in self.defines:
            value = self.define_value(name, node.span)
            if isinstance(value, tuple):
                return value[1]
            if value is not None:
                self.error(node.span, f"{name} is a {'regex' if isinstance(value, ast.Regex) else 'phrase list'}, not a test",
                           hint=f"use it in a test: `text {'~' if isinstance(value, ast.Regex) else 'has'} {name}`")
            return None
        return self.unknown(node.ref)

    def not_comparable(self, ref: ast.Ref):
        """A boolean or other (date, list, ...) field used where a value is compared."""
        if self.kinds[ref.name] == "boolean":
            self.error(ref.span, f"{ref.name} is a yes/no field; it is a test on its own",
                       hint=f"write `{ref.name}` or `not {ref.name}`")
        else:
            self.error(ref.span, f"{ref.name} is neither text nor a number; only `is missing` can test it",
                       hint=f'column "{self.fields[ref.name].column}" holds {_KIND_WORDS["other"]} values')

    def value(self, node):
        """A compared value: a field, a measure, a number or a quoted string."""
        return self.visit(node)

    def visit_Ref(self, node):
        if node.name in self.fields:
            return node
        if node.name in self.defines:
            self.error(node.span, f"{node.name} is a define; a field, measure or number goes here")
            return None
        return self.unknown(node, "field")

    def visit_Number(self, node):
        return node

    visit_String = visit_Number

    def visit_Measure(self, node):
        return self.measure(node)

    def not_a_value(self, node):
        """A regex, phrase list, lexicon or first/last(...) where a value is compared."""
        self.error(node.span, "this is not a value that can be compared",
                   hint="compare a field, a measure such as len(text), a number or a quoted string")
        return None

    visit_Regex = visit_Phrases = visit_Lexicon = visit_Window = not_a_value

    def measure(self, node: ast.Measure):
        arg = node.arg
        if node.func == "number":
            arg = self.regex_arg(arg)
        elif node.func == "count":
            arg = self.regex_arg(arg) if isinstance(arg, ast.Regex) or (
                isinstance(arg, ast.Ref) and isinstance(self.defines.get(arg.name) and self.define_value(arg.name, arg.span), ast.Regex)
            ) else self.phrases_arg(arg)
        return replace(node, source=self.source(node.source), arg=arg)

    def value_kind(self, node):
        if isinstance(node, ast.String):
            return "string"
        if isinstance(node, (ast.Number, ast.Measure)):
            return "number"
        if isinstance(node, ast.Ref) and node.name in self.fields:
            return self.kinds[node.name]
        return None

    def example(self, e: ast.Example) -> ast.Example:
        if e.label is not None:
            self.label(e.label, e.label_span)
        inputs = []
        for name, value in e.inputs:
            if name is None:
                text_fields = [n for n, k in self.kinds.items() if k in ("text", None)]
                if not text_fields:
                    self.error(e.span, "a bare example string needs a text field", hint="write {field: value}")
                    continue
                name = text_fields[0]
            elif name not in self.fields:
                self.error(e.span, f"example names unknown field {name}{did_you_mean(name, self.fields)}")
                continue
            kind = self.kinds.get(name)
            if kind == "number" and isinstance(value, str):
                self.error(e.span, f"example gives {name} the text {value!r}, but {name} holds numbers",
                           hint="write the number without quotes")
            elif kind == "text" and not isinstance(value, str):
                self.error(e.span, f"example gives {name} a number, but {name} holds text", hint="quote the value")
            elif kind == "boolean" and value not in ("true", "false", 0.0, 1.0):
                self.error(e.span, f"example gives {name} {value!r}, but {name} is a yes/no field",
                           hint='write "true" or "false"')
            elif kind == "other":
                self.error(e.span, f"example cannot give {name} a value: it is neither text nor a number")
            inputs.append((name, value))
        return replace(e, inputs=tuple(inputs))


def load_spec(path, schema: Optional[pa.Schema] = None, text: Optional[str] = None) -> Spec:
    """Parse and check a spec file. Raises ``SpecError`` listing every problem.

    With ``schema`` (the data's Arrow schema), fields are checked against its columns
    and types; without it, types are checked where the spec alone tells them.
    ``text`` replaces the file's content (an unsaved editor buffer); ``use`` and
    ``lexicon`` paths still resolve from ``path``'s folder.
    """
    path = Path(path)
    if text is None and not path.is_file():
        from ..errors import DataError
        raise DataError(f"{path}: no such spec file" if not path.exists() else f"{path}: is not a file")
    return _Checker(path, schema, text).run()
