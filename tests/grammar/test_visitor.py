"""Every visitor handles every AST node type, or says it never meets it.

The node classes are discovered from ``mteach.grammar.ast`` itself, so adding a node
type there fails this test until each visitor has a ``visit_`` method for it or lists
it in ``not_applicable``.
"""
import inspect

import pyarrow as pa
import pytest

from mteach.compiler.checker import _Checker
from mteach.compiler.evaluator import BatchEvaluator
from mteach.engine.hints import _HintCompiler
from mteach.errors import SpecError
from mteach.grammar import ast
from mteach.grammar.visitor import NodeVisitor, UnhandledNode
from mteach.spans import Span
import mteach

VISITORS = [_Checker, BatchEvaluator, _HintCompiler]
NODE_TYPES = sorted(name for name, cls in vars(ast).items()
                    if inspect.isclass(cls) and issubclass(cls, ast.Node) and cls is not ast.Node
                    and cls.__module__ == ast.__name__)


def test_node_types_are_discovered():
    # a guard on the discovery itself: it finds the statements, predicates and values
    assert {"Rule", "Hint", "Match", "Near", "Measure", "Window", "SpecFile"} <= set(NODE_TYPES)


@pytest.mark.parametrize("visitor", VISITORS, ids=lambda v: v.__name__)
def test_every_node_type_is_handled_or_declared_not_applicable(visitor):
    missing = [n for n in NODE_TYPES if not hasattr(visitor, f"visit_{n}") and n not in visitor.not_applicable]
    assert not missing, f"{visitor.__name__} neither visits nor declares not applicable: {missing}"
    both = [n for n in NODE_TYPES if hasattr(visitor, f"visit_{n}") and n in visitor.not_applicable]
    assert not both, f"{visitor.__name__} visits and declares not applicable: {both}"
    stale = sorted(set(visitor.not_applicable) - set(NODE_TYPES))
    assert not stale, f"{visitor.__name__}.not_applicable names no node type: {stale}"


def test_an_unhandled_node_names_its_type_and_place():
    class OnlyNumbers(NodeVisitor):
        def visit_Number(self, node):
            return node.value

    v = OnlyNumbers()
    assert v.visit(ast.Number(2.0)) == 2.0
    with pytest.raises(UnhandledNode, match=r"OnlyNumbers cannot handle a String node at spec\.mt:3:7: add visit_String"):
        v.visit(ast.String("x", Span("spec.mt", 3, 7, 3, 10)))


def test_a_not_applicable_node_says_so():
    span = Span("spec.mt", 4, 1, 4, 9)
    with pytest.raises(UnhandledNode, match=r"BatchEvaluator cannot handle a Rule node at spec\.mt:4:1 "
                                            r"\(it is declared not applicable\)"):
        BatchEvaluator.visit(BatchEvaluator.__new__(BatchEvaluator), ast.Rule("r", None, "A", span=span))


@pytest.mark.parametrize("operand", ['first(text, 3)', '/ab/', 'any("a")', 'lexicon("l.txt")'])
def test_a_non_value_compared_is_a_check_error_not_a_crash_at_apply(spec_file, operand):
    path = spec_file('concept c\nlabels A, B\nfield text = "text"\n'
                     f'rule r : {operand} == "abc" => A\n', files={"l.txt": "a\n"})
    with pytest.raises(SpecError) as err:
        mteach.load_spec(path, schema=pa.schema([("text", pa.string())]))
    assert [(d.span.line, d.span.column, d.message) for d in err.value.errors] == \
        [(4, 10, "this is not a value that can be compared")]
