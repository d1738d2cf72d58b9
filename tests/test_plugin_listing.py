"""A broken installed plugin: named in the ConfigError, listed (not fatal) by describe_plugins.

Installed distributions are faked by replacing ``importlib.metadata.distributions``, as
pluggy's own tests do; nothing is installed.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Sequence

import pluggy
import pytest

import postflow
from postflow import hookimpl
from postflow._plugins import (
    BLOCK_ENV,
    BUILTIN_PLUGINS,
    PluginInfo,
    describe_plugins,
    make_plugin_manager,
)
from postflow.models import Member, Post


class FakeEntryPoint:
    """Just enough of ``importlib.metadata.EntryPoint``: ``load`` returns or raises."""

    def __init__(self, name: str, plugin: object, *, error: Exception | None = None,
                 group: str = "postflow") -> None:
        self.name = name
        self.group = group
        self.value = f"{name.replace('-', '_')}_module"
        self._plugin = plugin
        self._error = error

    def load(self) -> object:
        if self._error is not None:
            raise self._error
        return self._plugin


class FakeDistribution:
    """Just enough of ``importlib.metadata.Distribution`` for pluggy and postflow."""

    def __init__(self, name: str, version: str, entry_points: Sequence[FakeEntryPoint]):
        self.metadata = {"name": name}
        self.version = version
        self.entry_points = tuple(entry_points)


Install = Callable[..., None]


@pytest.fixture(name="install")
def _install(monkeypatch: pytest.MonkeyPatch) -> Install:
    """``install(ep_name, plugin, dist=..., error=...)`` fakes one installed distribution."""
    dists: list[FakeDistribution] = []
    monkeypatch.setattr(importlib.metadata, "distributions", lambda: list(dists))
    monkeypatch.delenv(BLOCK_ENV, raising=False)

    def install(name: str, plugin: object = None, *, dist: str = "postflow-fake",
                version: str = "1.0", error: Exception | None = None,
                group: str = "postflow") -> None:
        ep = FakeEntryPoint(name, plugin, error=error, group=group)
        dists.append(FakeDistribution(dist, version, [ep]))

    return install


class Fine:
    """A valid plugin with one hook."""

    @hookimpl
    def postflow_authorize(self, member: Member, action: str, post: Post | None) -> None:
        """No objection."""


class Misspelled:
    """Implements a hook that does not exist."""

    @hookimpl
    def postflow_autorize(self) -> None:
        """Never called."""


class BadArgument:
    """Asks for an argument its hook does not pass."""

    @hookimpl
    def postflow_after_transition(self, post: Post, mood: str) -> None:
        """Never called."""


class Wrapping:
    """A postflow_after_transition wrapper, which postflow refuses."""

    @pluggy.HookimplMarker("postflow")(wrapper=True)
    def postflow_after_transition(self):  # type: ignore[no-untyped-def]
        """Never called."""
        return (yield)


def _by_name(rows: list[PluginInfo]) -> dict[str, PluginInfo]:
    return {row.name: row for row in rows}


class TestBrokenPluginIsNamed:
    """``make_plugin_manager`` names the entry point and distribution that failed."""

    def test_import_error_names_entry_point_and_distribution(self, install: Install) -> None:
        """The ConfigError says which plugin, from which distribution, and how to block it."""
        install("fine", Fine(), dist="postflow-fine")
        install("shaky", dist="postflow-shaky", version="0.3",
                error=ImportError("No module named 'requests'"))
        install("later", Fine(), dist="postflow-later")
        with pytest.raises(postflow.ConfigError) as info:
            make_plugin_manager()
        message = str(info.value)
        assert "'shaky'" in message
        assert "postflow-shaky 0.3" in message
        assert "shaky_module" in message
        assert "No module named 'requests'" in message
        assert f"{BLOCK_ENV}=shaky" in message
        assert "postflow-fine" not in message
        assert "postflow-later" not in message

    def test_open_raises_the_same(self, install: Install) -> None:
        """``postflow.open`` reports it the same way; blocking the plugin lets it open."""
        install("shaky", dist="postflow-shaky", error=RuntimeError("boom at import"))
        with pytest.raises(postflow.ConfigError, match=r"'shaky'.*postflow-shaky 1\.0.*boom"):
            postflow.open("memory://")

    def test_blocked_broken_plugin_is_skipped(
        self, install: Install, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A blocked broken plugin is neither loaded nor blamed for a later failure."""
        install("shaky", dist="postflow-shaky", error=ImportError("half-installed"))
        install("worse", dist="postflow-worse", error=ImportError("also broken"))
        monkeypatch.setenv(BLOCK_ENV, "shaky")
        with pytest.raises(postflow.ConfigError) as info:
            make_plugin_manager()
        assert "'worse'" in str(info.value)
        assert "postflow-worse" in str(info.value)
        assert "shaky" not in str(info.value).split(";")[0]

    def test_registration_failure_names_the_distribution(self, install: Install) -> None:
        """A plugin that imports but fails validation is named with its distribution."""
        install("fine", Fine(), dist="postflow-fine")
        install("moody", BadArgument(), dist="postflow-moody", version="2.1")
        with pytest.raises(postflow.ConfigError) as info:
            make_plugin_manager()
        assert "'moody'" in str(info.value)
        assert "postflow-moody 2.1" in str(info.value)
        assert "mood" in str(info.value)


class TestDescribePlugins:
    """``describe_plugins`` lists every plugin with a status and never raises for one."""

    def test_lists_broken_blocked_and_fine_plugins(
        self, install: Install, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Each entry point gets a row; a broken one says why; built-ins follow."""
        install("fine", Fine(), dist="postflow-fine", version="1.2")
        install("shaky", dist="postflow-shaky", error=ImportError("half-installed"))
        install("quiet", Fine(), dist="postflow-quiet")
        install("other-group", Fine(), group="not-postflow")
        monkeypatch.setenv(BLOCK_ENV, "quiet")
        rows = describe_plugins()
        assert [r.name for r in rows] == ["fine", "shaky", "quiet", *BUILTIN_PLUGINS]
        by_name = _by_name(rows)
        assert by_name["fine"] == PluginInfo(
            "fine", "postflow-fine 1.2", ("postflow_authorize",), "ok")
        assert by_name["shaky"].origin == "postflow-shaky 1.0"
        assert by_name["shaky"].status == "broken: ImportError: half-installed"
        assert by_name["shaky"].hooks == ()
        assert by_name["quiet"].status == "blocked"
        for name in BUILTIN_PLUGINS:
            assert by_name[name].origin == "built-in"
            assert by_name[name].status == "ok"
        assert by_name["postflow.storage.memory"].hooks == ("postflow_storage",)

    @pytest.mark.parametrize(
        ("plugin", "reason"),
        [
            (Misspelled(), "unknown hook 'postflow_autorize'"),
            (BadArgument(), "mood"),
            (Wrapping(), "cannot be a wrapper"),
        ],
        ids=["misspelled-hook", "unknown-argument", "wrapper"],
    )
    def test_invalid_plugins_are_broken_not_fatal(
        self, install: Install, plugin: object, reason: str
    ) -> None:
        """What ``make_plugin_manager`` refuses is listed as broken, and the rest as ok."""
        install("invalid", plugin, dist="postflow-invalid")
        install("fine", Fine(), dist="postflow-fine")
        with pytest.raises(postflow.ConfigError):
            make_plugin_manager()
        by_name = _by_name(describe_plugins())
        assert by_name["invalid"].status.startswith("broken: ")
        assert reason in by_name["invalid"].status
        assert by_name["fine"].status == "ok"

    def test_second_entry_point_with_a_taken_name_is_ignored(self, install: Install) -> None:
        """Like pluggy, the first entry point of a name wins; the listing says so."""
        install("same", Fine(), dist="postflow-first")
        install("same", Fine(), dist="postflow-second")
        rows = [r for r in describe_plugins() if r.name == "same"]
        assert [(r.origin, r.status.split(":")[0]) for r in rows] == [
            ("postflow-first 1.0", "ok"), ("postflow-second 1.0", "ignored")]

    def test_in_process_plugins_and_no_entry_points(self, install: Install) -> None:
        """``plugins`` are listed as in-process; ``entry_points=False`` skips installed ones."""
        install("fine", Fine(), dist="postflow-fine")
        rows = describe_plugins([Fine()], entry_points=False)
        assert [r.origin for r in rows] == ["in-process", *["built-in"] * len(BUILTIN_PLUGINS)]
        assert rows[0].hooks == ("postflow_authorize",)

    def test_blocked_builtin(self, install: Install, monkeypatch: pytest.MonkeyPatch) -> None:
        """A built-in listed in the block variable is shown as blocked."""
        monkeypatch.setenv(BLOCK_ENV, "postflow.publishers")
        assert _by_name(describe_plugins())["postflow.publishers"].status == "blocked"
