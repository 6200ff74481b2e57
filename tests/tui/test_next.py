"""The studio's guidance: the Next pane (insert a suggested rule, see its rows), the rows
pane's wrong-against-gold filter and grouped uncovered rows, the coverage table's sorts,
and review in ranked order."""
import numpy as np
from textual.worker import WorkerCancelled

from mteach.tui.app import StudioApp
from mteach.tui.components.coverage import CoverageTable
from mteach.tui.components.editor import SpecEditor
from mteach.tui.components.next import NextPane, NextTable
from mteach.tui.components.review import ReviewPane
from mteach.tui.components.rows import RowsPane


async def settle(app, pilot, wait=0.0):
    """The analysis, then the suggestions it starts."""
    if wait:
        await pilot.pause(wait)
    for _ in range(2):
        while True:
            try:
                await app.workers.wait_for_complete()
                break
            except WorkerCancelled:  # replaced by a newer run of its group (seen under load): wait for that
                await pilot.pause()
        await pilot.pause()


def studio(make_session):
    app = StudioApp(make_session(gold_column="CLASS", gold_map="1=SPAM,0=HAM"), cursor_blink=False,
                    contributions=False)
    app.animation_level = "none"
    return app


async def test_next_pane_inserts_a_suggested_rule_with_its_evidence(make_session):
    app = studio(make_session)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        pane = app.query_one(NextPane)
        kinds = [s.kind for s in pane.items]
        assert kinds and kinds[0] == "rule" and kinds == sorted(kinds, key=["rule", "group", "fix", "review"].index)
        first = pane.items[0]
        reading = app.query_one(ReviewPane).current
        await pilot.press("f8")
        assert app.query_one("#tabs").active == "next" and isinstance(app.focused, NextTable)
        await pilot.press("i")
        await settle(app, pilot, 0.6)
        text = app.query_one(SpecEditor).text
        assert text.endswith(f"\n# suggested: precision {first.estimated_precision:.2f} "
                             f"[{first.precision_interval[0]:.2f}, {first.precision_interval[1]:.2f}] from gold"
                             f" on {first.evidence_rows:,.0f} rows; +{first.new_rows:,} new rows, "
                             f"{first.conflicts:,} conflicting\n{first.spec_line}\n")
        a = app.session.last
        name = first.spec_line.split()[1]
        assert a.spec.rule_names[-1] == name and not app.errors
        assert (a.votes[:, -1] != -1).sum() == first.rows
        # the line's comment is its description, as for any rule
        assert a.spec.rules[-1].rule.description.startswith("suggested: precision")
        assert first.spec_line not in [s.spec_line for s in app.query_one(NextPane).items]
        # new suggestions do not move the row the expert is reviewing
        assert app.query_one(ReviewPane).current == reading


async def test_example_rows_wrong_filter_sorts_and_ranked_review(make_session):
    app = studio(make_session)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        pane = app.query_one(NextPane)
        await pilot.press("f8")
        group = next(n for n, s in enumerate(pane.items) if s.kind == "group")
        app.query_one(NextTable).move_cursor(row=group)
        await pilot.press("x")
        await pilot.pause()
        rows = app.query_one(RowsPane)
        assert app.query_one("#tabs").active == "rows" and rows.mode == "picked"
        assert rows.shown == pane.items[group].example_rows
        # uncovered rows come grouped: each group's rows together, largest group first
        await pilot.press("u")
        await pilot.pause()
        groups = app.session.guidance.groups
        assert rows.shown[:groups[0].size] == sorted(groups[0].rows.tolist(), key=groups[0].rows.tolist().index)
        # wrong against gold: the rules' majority vote decides and disagrees with gold
        await pilot.press("w")
        await pilot.pause()
        a = app.session.last
        gold = app.session.gold()
        assert rows.shown == list(np.flatnonzero((a.verdict != -1) & (a.verdict != gold)))
        # coverage sorts: by coverage, most first; enter still opens the chosen rule's rows
        await pilot.press("f3", "s")
        await pilot.pause()
        table = app.query_one(CoverageTable)
        coverage = (a.votes != -1).mean(axis=0)
        assert str(table.get_row_at(0)[0]) == a.spec.rule_names[int(np.argmax(coverage))]
        await pilot.press("down", "enter")
        await pilot.pause()
        second = app.query_one("#coverage-pane").order[1]
        assert rows.mode == "rule" and rows.rule == second
        # review takes its sample in the ranked order by default
        review = app.query_one(ReviewPane)
        assert review.mode == "ranked"
        order = app.session.guidance.review_order
        assert review.current == next(int(i) for i in order if not app.session.excluded()[i])


async def test_i_on_a_fix_rewrites_the_rule_in_place(make_session):
    # a rest rule that knows only "check", then SPAM rules on other phrases: the Next pane
    # offers its rewrite, and `i` puts it where the rule was (its evidence line above it)
    app = studio(make_session)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        editor = app.query_one(SpecEditor)
        old = 'rule rest : words(text) <= 30 unless text has any("check") => HAM'
        editor.insert(f"\n{old}\nrule mine : text has \"my\" => SPAM\n", editor.document.end)
        await settle(app, pilot, 0.6)
        pane = app.query_one(NextPane)
        at = next(n for n, s in enumerate(pane.items) if s.kind == "fix" and s.replaces == "rest")
        fix = pane.items[at]
        assert '"check", "subscribe", "sub", "my"' in fix.spec_line
        await pilot.press("f8")
        app.query_one(NextTable).move_cursor(row=at)
        assert str(app.query_one(NextTable).get_row_at(at)[-1]) == fix.title[:90]  # what it does, not the long line
        await pilot.press("i")
        await settle(app, pilot, 0.6)
        lines = app.query_one(SpecEditor).text.split("\n")
        assert old not in lines and lines.count(fix.spec_line) == 1
        assert lines[lines.index(fix.spec_line) - 1] == f"# fixed: {fix.evidence}"
        assert lines[lines.index(fix.spec_line) + 1] == 'rule mine : text has "my" => SPAM'
        a = app.session.last
        assert not app.errors and a.spec.rule_names[-2:] == ["rest", "mine"]
        assert (a.votes[:, -2] != -1).sum() == fix.rows
        assert not [s for s in app.query_one(NextPane).items if s.replaces == "rest"]
