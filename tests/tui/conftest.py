import asyncio
import inspect
import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def studio_files(tmp_path, monkeypatch):
    """A copy of the mini spec and the 30-row CSV in a temp folder (the gold file goes there)."""
    shutil.copy(FIXTURES / "mini.mt", tmp_path / "mini.mt")
    shutil.copy(FIXTURES / "comments.csv", tmp_path / "comments.csv")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def make_session(studio_files):
    from mteach.tui.session import Session

    def make(**kw):
        kw.setdefault("id_column", "COMMENT_ID")
        kw.setdefault("reviewer", "tester")
        return Session.open(studio_files / "mini.mt", studio_files / "comments.csv", **kw)
    return make


@pytest.fixture
def app_of(make_session):
    """app_of(**session options) -> a StudioApp for pilot tests (no blinking, no animation)."""
    from mteach.tui.app import StudioApp

    def make(**kw):
        app = StudioApp(make_session(**kw), cursor_blink=False, contributions=False, suggestions=False)
        app.animation_level = "none"
        return app
    return make


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """Run ``async def`` tests in a fresh event loop (no async plugin needed)."""
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
        asyncio.run(pyfuncitem.obj(**args))
        return True
    return None
