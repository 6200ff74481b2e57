"""Dispatch on AST node classes: one method per node type, as Jinja's ``NodeVisitor`` does.

``visitor.visit(node)`` calls ``visitor.visit_<ClassName>(node)``. A visitor lists the
node classes it never meets in ``not_applicable``; tests/grammar/test_visitor.py checks
that every node class of ``grammar.ast`` is either handled or listed by every visitor,
so a new node type cannot reach a visitor that forgot it. Should one still arrive
(a bug), :class:`UnhandledNode` names the visitor, the node type and where it was written.
"""
from __future__ import annotations

from . import ast


class UnhandledNode(TypeError):
    """A visitor was given a node type it has no ``visit_`` method for."""


class NodeVisitor:
    #: Names of the ast node classes this visitor never meets (each with the reason in a comment).
    not_applicable: frozenset = frozenset()

    def visit(self, node: ast.Node, *args):
        name = type(node).__name__
        method = getattr(self, "visit_" + name, None)
        if method is None:
            where = getattr(node, "span", None)
            why = " (it is declared not applicable)" if name in self.not_applicable else ""
            raise UnhandledNode(f"{type(self).__name__} cannot handle a {name} node"
                                f"{f' at {where}' if where else ''}{why}: add visit_{name}")
        return method(node, *args)
