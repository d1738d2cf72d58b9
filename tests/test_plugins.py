"""The plugin system: every hook in ``postflow.hookspecs``, discovery, blocking, isolation."""

from __future__ import annotations

import importlib.metadata
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import pluggy
import pytest
from click.testing import CliRunner

import postflow
import postflow.cli
from conftest import add_team
from postflow import hookimpl, hookspecs
from postflow._plugins import BLOCK_ENV, BUILTIN_PLUGINS, Hooks, make_plugin_manager
from postflow.models import Member, Post
from postflow.storage import Storage
from postflow.storage.memory import MemoryStorage
from postflow.testing import FixedClock, RecordingPlugin
from postflow.workflow import DEFAULT_WORKFLOW, Workflow

SRC = Path(postflow.__file__).parent

MakeWs = Callable[..., postflow.Workspace]


# -- helpers -------------------------------------------------------------------------


class FakeEntryPoint:
    """Just enough of ``importlib.metadata.EntryPoint`` for pluggy (as pluggy's tests do)."""

    def __init__(self, name: str, plugin: object, group: str) -> None:
        self.name = name
        self.group = group
        self.value = f"fake_module:{name}"
        self._plugin = plugin

    def load(self) -> object:
        return self._plugin


class FakeDistribution:
    """Just enough of ``importlib.metadata.Distribution`` for pluggy and ``postflow plugins``."""

    def __init__(self, name: str, version: str, entry_points: Sequence[FakeEntryPoint]):
        self.metadata = {"name": name}
        self.version = version
        self.entry_points = tuple(entry_points)


Install = Callable[..., None]


@pytest.fixture(name="install")
def _install(monkeypatch: pytest.MonkeyPatch) -> Install:
    """Fake installed distributions: ``install(ep_name, plugin)`` adds one to the group."""
    dists: list[FakeDistribution] = []
    monkeypatch.setattr(importlib.metadata, "distributions", lambda: list(dists))
    monkeypatch.delenv(BLOCK_ENV, raising=False)

    def install(name: str, plugin: object, *, dist: str = "postflow-fake",
                version: str = "1.0", group: str = "postflow") -> None:
        dists.append(FakeDistribution(dist, version, [FakeEntryPoint(name, plugin, group)]))

    return install


@pytest.fixture(name="cli_group")
def _cli_group(monkeypatch: pytest.MonkeyPatch) -> click.Group:
    """The real ``postflow`` group, with its command table restored after the test."""
    group = postflow.cli.cli
    monkeypatch.setattr(group, "commands", dict(group.commands))
    return group


def approved_post(ws: postflow.Workspace) -> Post:
    """A post by ana, submitted and approved by ben."""
    post = ws.posts.create(author="ana", text="Spring is here", channels=["acme-x"])
    ws.submit(post.id, by="ana")
    return ws.approve(post.id, by="ben")


class TakeoverStorage(MemoryStorage):
    """A MemoryStorage subclass a plugin hands out, to tell which plugin won."""


class SchemePlugin:
    """Claims ``test://`` URLs."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    @hookimpl
    def postflow_storage(self, url: str) -> Storage | None:
        self.urls.append(url)
        return TakeoverStorage(url) if url.startswith("test://") else None


class MemoryTakeover:
    """Claims the built-in ``memory://`` scheme."""

    @hookimpl
    def postflow_storage(self, url: str) -> Storage | None:
        return TakeoverStorage(url) if url.startswith("memory://") else None


class DenyMember:
    """Denies every action of one member."""

    def __init__(self, name: str) -> None:
        self.name = name

    @hookimpl
    def postflow_authorize(self, member: Member) -> str | None:
        return f"{self.name} is on leave" if member.name == self.name else None


class NoObjection:
    """Never objects, and records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int | None]] = []

    @hookimpl
    def postflow_authorize(
        self, workspace: postflow.Workspace, member: Member, action: str, post: Post | None
    ) -> str | None:
        assert isinstance(workspace, postflow.Workspace)
        self.calls.append((member.name, action, post.id if post else None))
        return None


class WeekendRule:
    """No scheduling at weekends (by the workspace clock)."""

    @hookimpl
    def postflow_authorize(self, workspace: postflow.Workspace, action: str) -> str | None:
        if action == "schedule" and workspace.clock.now().weekday() >= 5:
            return "nothing is scheduled at weekends"
        return None


class Embargo(postflow.PostflowError):
    """A plugin's own veto error."""


class BeforeRecorder:
    """Records every before-transition call, and vetoes triggers listed in ``veto``."""

    def __init__(self, veto: Sequence[str] = ()) -> None:
        self.calls: list[dict[str, Any]] = []
        self.veto = set(veto)
        self.error: Embargo | None = None

    @hookimpl
    def postflow_before_transition(
        self, workspace: postflow.Workspace, post: Post, trigger: str, source: str,
        dest: str, actor: str, data: Mapping[str, Any],
    ) -> None:
        self.calls.append({"post": post, "trigger": trigger, "source": source, "dest": dest,
                           "actor": actor, "data": dict(data)})
        if trigger in self.veto:
            self.error = Embargo(f"post {post.id}: {trigger} is under embargo")
            raise self.error


class BrokenAfter:
    """An after-transition hook that always fails."""

    @hookimpl
    def postflow_after_transition(self, post: Post) -> None:
        raise RuntimeError(f"notifier down for post {post.id}")


# -- postflow_storage ----------------------------------------------------------------


class TestStorageHook:
    """``postflow_storage``: the first plugin that claims a URL's scheme opens it."""

    def test_custom_scheme_is_opened_by_the_plugin(self, make_ws: MakeWs) -> None:
        """A plugin claiming ``test://`` returns the storage the workspace then uses."""
        plugin = SchemePlugin()
        ws = make_ws("test://bucket", plugins=[plugin])
        assert type(ws.storage) is TakeoverStorage
        assert plugin.urls == ["test://bucket"]
        add_team(ws)
        post = ws.posts.create(author="ana", text="hello", channels=["acme-x"])
        assert ws.storage.get_post(post.id) == post

    def test_plugin_returning_none_leaves_builtins_working(
        self, make_ws: MakeWs, tmp_path: Path
    ) -> None:
        """A postflow_storage plugin declining a URL lets the built-in sqlite backend open it."""
        plugin = SchemePlugin()
        ws = make_ws(f"sqlite:///{tmp_path / 'a.db'}", plugins=[plugin])
        assert type(ws.storage).__name__ == "SQLiteStorage"
        assert plugin.urls == [f"sqlite:///{tmp_path / 'a.db'}"]

    def test_in_process_plugin_takes_over_memory(self, make_ws: MakeWs) -> None:
        """The built-in memory backend is trylast, so a plugin can claim ``memory://``."""
        ws = make_ws("memory://", plugins=[MemoryTakeover()])
        assert type(ws.storage) is TakeoverStorage

    def test_installed_plugin_takes_over_memory(self, install: Install) -> None:
        """An entry-point plugin's postflow_storage wins over the built-in for ``memory://``."""
        install("takeover", MemoryTakeover())
        with postflow.open("memory://") as ws:
            assert type(ws.storage) is TakeoverStorage
        with postflow.open("memory://", entry_points=False) as ws:
            assert type(ws.storage) is MemoryStorage

    def test_unknown_scheme_is_a_config_error_naming_it(self, make_ws: MakeWs) -> None:
        """No plugin claiming the scheme gives ConfigError that names the scheme."""
        with pytest.raises(postflow.ConfigError, match="'nosuchdb'"):
            make_ws("nosuchdb://host/x")

    def test_hooks_facade_returns_none_for_unclaimed_url(self) -> None:
        """The facade's storage() is None when nobody claims a URL."""
        hooks = Hooks(make_plugin_manager(entry_points=False))
        assert hooks.storage("ftp://x") is None
        assert isinstance(hooks.storage("memory://"), MemoryStorage)


# -- postflow_authorize --------------------------------------------------------------


class TestAuthorizeHook:
    """``postflow_authorize``: plugins add deny rules; any deny wins."""

    def test_weekend_schedule_is_denied_with_the_plugin_reason(
        self, url: str, make_ws: MakeWs, clock: FixedClock
    ) -> None:
        """A postflow_authorize rule refusing 'schedule' on Saturday raises PermissionDenied."""
        ws = make_ws(url, plugins=[WeekendRule()])
        add_team(ws)
        post = approved_post(ws)
        before = ws.history(post.id)
        clock.set(datetime(2030, 1, 5, 10, 0, tzinfo=UTC))  # a Saturday
        with pytest.raises(postflow.PermissionDenied,
                           match="nothing is scheduled at weekends") as info:
            ws.schedule(post.id, at=clock.now() + timedelta(days=2), by="cy")
        assert info.value.member == "cy"
        assert info.value.action == "schedule"
        assert ws.posts.get(post.id) == post
        assert ws.history(post.id) == before
        clock.set(datetime(2030, 1, 7, 10, 0, tzinfo=UTC))  # the Monday after
        scheduled = ws.schedule(post.id, at=clock.now() + timedelta(days=1), by="cy")
        assert scheduled.state == "scheduled"

    def test_a_specific_member_is_denied(self, url: str, make_ws: MakeWs) -> None:
        """A rule against one member stops them while another approver still may approve."""
        ws = make_ws(url, plugins=[DenyMember("bea")])
        add_team(ws)
        post = ws.posts.create(author="ana", text="hi", channels=["acme-x"])
        post = ws.submit(post.id, by="ana")
        with pytest.raises(postflow.PermissionDenied, match="bea is on leave"):
            ws.approve(post.id, by="bea")
        assert ws.posts.get(post.id).approvals == ()
        assert ws.approve(post.id, by="ben").state == "approved"

    def test_create_is_asked_with_no_post_and_a_deny_stores_nothing(
        self, make_ws: MakeWs
    ) -> None:
        """postflow_authorize sees action 'create' with post None; a deny creates nothing."""
        recorder = NoObjection()
        ws = make_ws("memory://", plugins=[recorder, DenyMember("aaron")])
        add_team(ws)
        ws.posts.create(author="ana", text="ok", channels=["acme-x"])
        assert ("ana", "create", None) in recorder.calls
        with pytest.raises(postflow.PermissionDenied, match="aaron is on leave"):
            ws.posts.create(author="aaron", text="nope", channels=["acme-x"])
        assert ws.posts.count() == 1
        assert ws.posts.count(author="aaron") == 0

    @pytest.mark.parametrize("deny_first", [True, False])
    def test_any_deny_wins_over_no_objection(self, make_ws: MakeWs, deny_first: bool) -> None:
        """One plugin's None does not outvote another plugin's deny, whatever the order."""
        plugins: list[object] = [DenyMember("ana"), NoObjection()]
        if not deny_first:
            plugins.reverse()
        ws = make_ws("memory://", plugins=plugins)
        add_team(ws)
        with pytest.raises(postflow.PermissionDenied, match="ana is on leave"):
            ws.posts.create(author="ana", text="hi", channels=["acme-x"])

    def test_reasons_of_several_plugins_are_all_given(self, make_ws: MakeWs) -> None:
        """When two plugins deny, the error carries both reasons."""

        class Freeze:
            @hookimpl
            def postflow_authorize(self) -> str:
                return "content freeze"

        ws = make_ws("memory://", plugins=[Freeze(), DenyMember("ana")])
        add_team(ws)
        with pytest.raises(postflow.PermissionDenied) as info:
            ws.posts.create(author="ana", text="hi", channels=["acme-x"])
        assert "content freeze" in str(info.value)
        assert "ana is on leave" in str(info.value)

    def test_allowed_hides_the_denied_trigger(self, make_ws: MakeWs, clock: FixedClock) -> None:
        """allowed() leaves out what postflow_authorize denies and keeps the rest."""
        clock.set(datetime(2030, 1, 5, 10, 0, tzinfo=UTC))  # a Saturday
        plain = make_ws("memory://")
        add_team(plain)
        ruled = make_ws("memory://", plugins=[WeekendRule()])
        add_team(ruled)
        assert "schedule" in plain.allowed(approved_post(plain).id, by="cy")
        allowed = ruled.allowed(approved_post(ruled).id, by="cy")
        assert "schedule" not in allowed
        assert {"publish", "archive"} <= set(allowed)

    def test_comment_is_authorized_too(self, make_ws: MakeWs) -> None:
        """A deny for 'comment' stops a comment being added to the trail."""
        ws = make_ws("memory://", plugins=[DenyMember("al")])
        add_team(ws)
        post = ws.posts.create(author="ana", text="hi", channels=["acme-x"])
        with pytest.raises(postflow.PermissionDenied, match="al is on leave"):
            ws.comment(post.id, by="al", text="nice")
        assert [e.action for e in ws.history(post.id)] == ["create"]


# -- postflow_before_transition ------------------------------------------------------


class TestBeforeTransitionHook:
    """``postflow_before_transition``: plugins see every planned change and may veto it."""

    def test_veto_reaches_caller_unchanged_and_stores_nothing(
        self, url: str, make_ws: MakeWs
    ) -> None:
        """A PostflowError raised in postflow_before_transition is the caller's error, as is."""
        plugin = BeforeRecorder(veto=["schedule"])
        ws = make_ws(url, plugins=[plugin])
        add_team(ws)
        post = approved_post(ws)
        history = ws.history(post.id)
        with pytest.raises(Embargo) as info:
            ws.schedule(post.id, at=ws.clock.now() + timedelta(days=1), by="cy")
        assert info.value is plugin.error
        assert ws.posts.get(post.id) == post
        assert ws.history(post.id) == history

    def test_recording_plugin_veto(self, make_ws: MakeWs) -> None:
        """RecordingPlugin.veto refuses every transition and nothing is recorded after it."""
        recorder = RecordingPlugin()
        ws = make_ws("memory://", plugins=[recorder])
        add_team(ws)
        post = ws.posts.create(author="ana", text="hi", channels=["acme-x"])
        recorder.veto = Embargo("frozen")
        with pytest.raises(Embargo, match="frozen"):
            ws.submit(post.id, by="ana")
        with pytest.raises(Embargo, match="frozen"):
            ws.edit(post.id, by="ana", text="changed")
        assert ws.posts.get(post.id) == post
        assert recorder.transitions == []
        recorder.veto = None
        assert ws.submit(post.id, by="ana").state == "review"
        assert recorder.triggers == ["submit"]

    def test_receives_source_dest_actor_trigger_and_data(self, url: str, make_ws: MakeWs) -> None:
        """The hook gets the stored post, the trigger, both states, the actor and extra data."""
        plugin = BeforeRecorder()
        ws = make_ws(url, plugins=[plugin])
        add_team(ws)
        post = ws.posts.create(author="ana", text="hi", channels=["acme-x"])
        ws.fire(post.id, "submit", by="ana", ticket="T-7")
        [call] = plugin.calls
        assert call["post"] == post
        assert (call["trigger"], call["source"], call["dest"], call["actor"]) == (
            "submit", "draft", "review", "ana")
        assert call["data"]["ticket"] == "T-7"

    def test_partial_approval_has_dest_equal_to_source(self, make_ws: MakeWs) -> None:
        """With two approvals needed, the first approve is announced as review -> review."""
        plugin = BeforeRecorder()
        two = Workflow.from_dict({**DEFAULT_WORKFLOW, "stages": [
            {"name": "editorial", "roles": ["approver"], "quorum": 2}]})
        ws = make_ws("memory://", plugins=[plugin], workflow=two)
        add_team(ws)
        post = ws.posts.create(author="ana", text="hi", channels=["acme-x"])
        ws.submit(post.id, by="ana")
        ws.approve(post.id, by="ben")
        ws.approve(post.id, by="bea")
        approvals = [c for c in plugin.calls if c["trigger"] == "approve"]
        assert [(c["source"], c["dest"], c["actor"]) for c in approvals] == [
            ("review", "review", "ben"), ("review", "approved", "bea")]
        assert approvals[0]["data"]["stage"] == "editorial"

    def test_edit_is_announced_as_edit(self, make_ws: MakeWs) -> None:
        """An edit after submission reaches the hook as trigger 'edit' from review to draft."""
        plugin = BeforeRecorder()
        ws = make_ws("memory://", plugins=[plugin])
        add_team(ws)
        post = ws.posts.create(author="ana", text="hi", channels=["acme-x"])
        ws.submit(post.id, by="ana")
        ws.edit(post.id, by="ana", text="hello")
        assert (plugin.calls[-1]["trigger"], plugin.calls[-1]["source"],
                plugin.calls[-1]["dest"]) == ("edit", "review", "draft")

    def test_not_called_when_permissions_refuse(self, make_ws: MakeWs) -> None:
        """A refused call never reaches postflow_before_transition."""
        plugin = BeforeRecorder()
        ws = make_ws("memory://", plugins=[plugin])
        add_team(ws)
        post = ws.posts.create(author="ana", text="hi", channels=["acme-x"])
        with pytest.raises(postflow.PermissionDenied):
            ws.submit(post.id, by="ben")
        with pytest.raises(postflow.InvalidTransition):
            ws.approve(post.id, by="ben")
        assert plugin.calls == []


# -- postflow_after_transition -------------------------------------------------------


class TestAfterTransitionHook:
    """``postflow_after_transition``: plugins hear about committed changes."""

    def test_called_once_with_new_previous_and_entries(self, url: str, make_ws: MakeWs) -> None:
        """RecordingPlugin gets the new snapshot, the one it replaced and the audit entry."""
        recorder = RecordingPlugin()
        ws = make_ws(url, plugins=[recorder])
        add_team(ws)
        post = ws.posts.create(author="ana", text="hi", channels=["acme-x"])
        submitted = ws.submit(post.id, by="ana")
        [seen] = recorder.transitions
        assert seen.post == submitted
        assert seen.previous == post
        assert (seen.trigger, seen.actor) == ("submit", "ana")
        [entry] = seen.entries
        stored = ws.history(post.id)[-1]
        assert (entry.action, entry.from_state, entry.to_state) == ("submit", "draft", "review")
        assert entry == stored

    def test_edit_and_partial_approval_are_reported(self, make_ws: MakeWs) -> None:
        """Edits and approvals that keep the state still reach postflow_after_transition."""
        recorder = RecordingPlugin()
        two = Workflow.from_dict({**DEFAULT_WORKFLOW, "stages": [
            {"name": "editorial", "roles": ["approver"], "quorum": 2}]})
        ws = make_ws("memory://", plugins=[recorder], workflow=two)
        add_team(ws)
        post = ws.posts.create(author="ana", text="hi", channels=["acme-x"])
        ws.edit(post.id, by="ana", text="hello")
        ws.submit(post.id, by="ana")
        ws.approve(post.id, by="ben")
        assert recorder.triggers == ["edit", "submit", "approve"]
        assert recorder.transitions[0].post.revision == 2
        assert recorder.transitions[-1].post.state == "review"
        assert len(recorder.transitions[-1].post.approvals) == 1

    def test_not_called_for_a_no_op_edit_or_a_failed_call(self, make_ws: MakeWs) -> None:
        """Nothing committed means no after-transition call."""
        recorder = RecordingPlugin()
        ws = make_ws("memory://", plugins=[recorder])
        add_team(ws)
        post = ws.posts.create(author="ana", text="hi", channels=["acme-x"])
        ws.edit(post.id, by="ana", text="hi")
        with pytest.raises(postflow.InvalidTransition):
            ws.mark_published(post.id, by="cy")
        assert recorder.transitions == []

    def test_runs_after_commit(self, tmp_path: Path, make_ws: MakeWs) -> None:
        """Inside the hook, another connection to the SQLite file already sees the change."""
        url = f"sqlite:///{tmp_path / 'commit.db'}"
        seen: list[str] = []

        class Observer:
            @hookimpl
            def postflow_after_transition(self, post: Post) -> None:
                with postflow.open(url, entry_points=False) as other:
                    seen.append(other.posts.get(post.id).state)

        ws = make_ws(url, plugins=[Observer()])
        add_team(ws)
        post = ws.posts.create(author="ana", text="hi", channels=["acme-x"])
        ws.submit(post.id, by="ana")
        assert seen == ["review"]

    def test_exception_is_logged_not_raised_and_others_still_run(
        self, url: str, make_ws: MakeWs, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A failing postflow_after_transition is logged on 'postflow'; the change stays."""
        recorder = RecordingPlugin()
        ws = make_ws(url, plugins=[BrokenAfter(), recorder])
        add_team(ws)
        post = ws.posts.create(author="ana", text="hi", channels=["acme-x"])
        with caplog.at_level(logging.ERROR, logger="postflow"):
            submitted = ws.submit(post.id, by="ana")
        assert submitted.state == "review"
        assert ws.posts.get(post.id).state == "review"
        assert ws.history(post.id)[-1].action == "submit"
        assert recorder.triggers == ["submit"]
        [record] = [r for r in caplog.records if r.name == "postflow"]
        assert record.levelno == logging.ERROR
        assert "postflow_after_transition" in record.getMessage()
        assert f"post {post.id}" in record.getMessage()
        assert record.exc_info is not None
        assert isinstance(record.exc_info[1], RuntimeError)

    def test_failing_plugin_registered_last_does_not_stop_earlier_ones(
        self, make_ws: MakeWs, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Whatever the registration order, the healthy after-hook still runs."""
        recorder = RecordingPlugin()
        ws = make_ws("memory://", plugins=[recorder, BrokenAfter()])
        add_team(ws)
        post = ws.posts.create(author="ana", text="hi", channels=["acme-x"])
        with caplog.at_level(logging.ERROR, logger="postflow"):
            ws.submit(post.id, by="ana")
        assert recorder.triggers == ["submit"]
        [record] = [r for r in caplog.records if r.name == "postflow"]
        assert record.exc_info is not None
        assert str(record.exc_info[1]) == f"notifier down for post {post.id}"


# -- postflow_register_commands ------------------------------------------------------


class HelloCommands:
    """Adds ``postflow hello``."""

    @hookimpl
    def postflow_register_commands(self, cli: click.Group) -> None:
        @cli.command()
        @click.option("--name", default="world")
        def hello(name: str) -> None:
            """Say hello from a plugin."""
            click.echo(f"hello, {name}")


class TestRegisterCommandsHook:
    """``postflow_register_commands``: plugins add commands to the CLI."""

    def test_in_process_plugin_adds_a_command(self) -> None:
        """The facade hands the group to the plugin, whose command then runs."""
        group = click.Group("postflow")
        Hooks(make_plugin_manager([HelloCommands()], entry_points=False)).register_commands(
            group)
        assert "hello" in group.commands
        result = CliRunner().invoke(group, ["hello", "--name", "ana"])
        assert result.exit_code == 0
        assert result.output == "hello, ana\n"

    def test_installed_plugin_command_is_in_help_and_runs(
        self, install: Install, cli_group: click.Group, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An entry-point plugin's command appears in ``postflow --help`` and can be run."""
        install("hello", HelloCommands(), dist="postflow-hello")
        assert postflow.cli.main(["--help"]) == 0
        help_text = capsys.readouterr().out
        assert re.search(r"^\s+hello\s+Say hello from a plugin\.", help_text, re.MULTILINE)
        assert re.search(r"^\s+board\s", help_text, re.MULTILINE)
        postflow.cli.main(["hello", "--name", "bea"])
        assert capsys.readouterr().out == "hello, bea\n"

    def test_without_the_plugin_there_is_no_command(
        self, install: Install, cli_group: click.Group, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """With nothing installed, ``postflow --help`` lists no plugin command."""
        postflow.cli.main(["--help"])
        assert "hello" not in capsys.readouterr().out
        assert "hello" not in cli_group.commands


# -- discovery, blocking, isolation, validation ----------------------------------------


class TestEntryPointDiscovery:
    """Plugins installed under the ``postflow`` entry-point group are found."""

    def test_entry_point_plugin_is_registered_under_its_name(self, install: Install) -> None:
        """A fake distribution's entry point in group 'postflow' is loaded, named by the entry."""
        recorder = RecordingPlugin()
        install("recorder", recorder)
        pm = make_plugin_manager()
        assert pm.get_plugin("recorder") is recorder
        with postflow.open("memory://") as ws:
            add_team(ws)
            post = ws.posts.create(author="ana", text="hi", channels=["acme-x"])
            ws.submit(post.id, by="ana")
        assert recorder.triggers == ["submit"]

    def test_other_groups_are_ignored(self, install: Install) -> None:
        """An entry point in another group is not loaded."""
        install("stranger", DenyMember("ana"), group="pytest11")
        pm = make_plugin_manager()
        assert pm.get_plugin("stranger") is None

    def test_entry_points_false_skips_installed_plugins(self, install: Install) -> None:
        """``postflow.open(..., entry_points=False)`` ignores what is installed."""
        install("deny-ana", DenyMember("ana"))
        with postflow.open("memory://", entry_points=False) as ws:
            add_team(ws)
            assert ws.posts.create(author="ana", text="hi", channels=["acme-x"]).id == 1
        with postflow.open("memory://") as ws:
            add_team(ws)
            with pytest.raises(postflow.PermissionDenied):
                ws.posts.create(author="ana", text="hi", channels=["acme-x"])

    def test_load_order_external_then_in_process_then_builtins(self, install: Install) -> None:
        """Entry-point plugins register first, in-process next, built-ins last."""
        external, local = RecordingPlugin(), RecordingPlugin()
        install("external", external)
        pm = make_plugin_manager([local])
        names = [name for name, _ in pm.list_name_plugin()]
        assert names.index("external") < names.index(pm.get_name(local))  # type: ignore[arg-type]
        assert names[-len(BUILTIN_PLUGINS):] == list(BUILTIN_PLUGINS)


class TestBlockingPlugins:
    """``POSTFLOW_DISABLE_PLUGINS`` blocks plugins by name."""

    def test_entry_point_plugin_is_blocked(
        self, install: Install, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A blocked entry-point plugin is neither loaded nor consulted."""
        install("deny-ana", DenyMember("ana"))
        monkeypatch.setenv(BLOCK_ENV, " something-else , deny-ana")
        pm = make_plugin_manager()
        assert pm.get_plugin("deny-ana") is None
        assert pm.is_blocked("deny-ana")
        with postflow.open("memory://") as ws:
            add_team(ws)
            assert ws.posts.create(author="ana", text="hi", channels=["acme-x"]).state == "draft"

    def test_blocking_builtin_sqlite_makes_sqlite_unsupported(
        self, install: Install, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """Blocking 'postflow.storage.sqlite' leaves sqlite URLs unclaimed (ConfigError)."""
        monkeypatch.setenv(BLOCK_ENV, "postflow.storage.sqlite")
        with pytest.raises(postflow.ConfigError, match="'sqlite'"):
            postflow.open(f"sqlite:///{tmp_path / 'x.db'}")
        assert not (tmp_path / "x.db").exists()
        with postflow.open("memory://") as ws:
            assert isinstance(ws.storage, MemoryStorage)


class TestNoGlobalPluginManager:
    """Every workspace builds its own plugin manager."""

    def test_workspaces_do_not_share_plugins(self, make_ws: MakeWs) -> None:
        """Two workspaces opened with different plugins never see each other's."""
        first, second = RecordingPlugin(), RecordingPlugin()
        ws1 = make_ws("memory://", plugins=[first])
        ws2 = make_ws("memory://", plugins=[second, DenyMember("aaron")])
        assert ws1.hooks.pm is not ws2.hooks.pm
        assert not ws1.hooks.pm.is_registered(second)
        assert not ws2.hooks.pm.is_registered(first)
        for ws in (ws1, ws2):
            add_team(ws)
        p1 = ws1.posts.create(author="aaron", text="one", channels=["acme-x"])
        ws1.submit(p1.id, by="aaron")
        with pytest.raises(postflow.PermissionDenied):
            ws2.posts.create(author="aaron", text="two", channels=["acme-x"])
        p2 = ws2.posts.create(author="ana", text="two", channels=["acme-x"])
        ws2.submit(p2.id, by="ana")
        assert [(t.actor, t.post.text) for t in first.transitions] == [("aaron", "one")]
        assert [(t.actor, t.post.text) for t in second.transitions] == [("ana", "two")]

    def test_later_workspace_is_clean(self, make_ws: MakeWs) -> None:
        """A workspace opened after one with plugins has only the built-ins."""
        make_ws("memory://", plugins=[DenyMember("ana"), RecordingPlugin()])
        ws = make_ws("memory://")
        assert [name for name, _ in ws.hooks.pm.list_name_plugin()] == list(BUILTIN_PLUGINS)


class TestPluginValidation:
    """Broken plugins are refused when the workspace opens."""

    def test_misspelled_hook_is_caught_by_check_pending(self) -> None:
        """A @hookimpl named postflow_befor_transition fails postflow.open."""

        class Typo:
            @hookimpl
            def postflow_befor_transition(self, post: Post) -> None:
                """Never called: the name is wrong."""

        with pytest.raises(postflow.ConfigError, match="postflow_befor_transition"):
            postflow.open("memory://", plugins=[Typo()], entry_points=False)

    def test_misspelled_installed_hook_is_caught(self, install: Install) -> None:
        """The same typo in an entry-point plugin is caught too."""

        class Typo:
            @hookimpl
            def postflow_autorize(self) -> None:
                """Never called: the name is wrong."""

        install("typo", Typo())
        with pytest.raises(postflow.ConfigError, match="postflow_autorize"):
            postflow.open("memory://")

    def test_unknown_argument_is_refused(self) -> None:
        """A hook implementation asking for an argument the hook does not pass is refused."""

        class Greedy:
            @hookimpl
            def postflow_after_transition(self, post: Post, mood: str) -> None:
                """Never called: 'mood' is not an argument of the hook."""

        with pytest.raises(postflow.ConfigError, match="mood"):
            postflow.open("memory://", plugins=[Greedy()], entry_points=False)

    def test_plugin_failing_to_import_is_a_config_error(
        self, install: Install, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An installed plugin whose import fails is named in a ConfigError, and blocking it
        lets the workspace open."""

        class Broken(FakeEntryPoint):
            def load(self) -> object:
                raise ImportError("half-installed")

        install("fine", NoObjection())
        dists = importlib.metadata.distributions()
        dists.append(FakeDistribution("postflow-broken", "0.1",
                                      [Broken("broken", None, "postflow")]))
        monkeypatch.setattr(importlib.metadata, "distributions", lambda: list(dists))
        with pytest.raises(postflow.ConfigError, match="half-installed"):
            postflow.open("memory://")
        monkeypatch.setenv(BLOCK_ENV, "broken")
        postflow.open("memory://").close()

    def test_registering_a_plugin_twice_is_a_config_error(self) -> None:
        """The same plugin object passed twice is refused with a ConfigError."""
        plugin = NoObjection()
        with pytest.raises(postflow.ConfigError, match="plugin problem"):
            postflow.open("memory://", plugins=[plugin, plugin], entry_points=False)

    @pytest.mark.parametrize("style", ["wrapper", "hookwrapper"])
    def test_after_transition_wrapper_is_refused(self, style: str) -> None:
        """postflow_after_transition implementations cannot be (hook)wrappers, which the
        per-plugin error isolation would never run."""

        class Wrapping:
            @pluggy.HookimplMarker("postflow")(**{style: True})
            def postflow_after_transition(self):  # type: ignore[no-untyped-def]
                """Never called."""
                return (yield)

        with pytest.raises(postflow.ConfigError, match="cannot be a wrapper"):
            postflow.open("memory://", plugins=[Wrapping()], entry_points=False)


class TestPluginsCommand:
    """``postflow plugins`` lists what is loaded."""

    def test_lists_builtins_and_installed_plugins_with_hooks(
        self, install: Install, cli_group: click.Group, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Built-ins show postflow_storage; an installed plugin shows its distribution."""
        install("recorder", RecordingPlugin(), dist="postflow-recorder", version="2.5")
        postflow.cli.main(["plugins"])
        out = capsys.readouterr().out.splitlines()
        for name in BUILTIN_PLUGINS:
            i = out.index(f"{name}  (built-in)")
            expected = {"postflow.calendar": "postflow_calendar_event",
                        "postflow.publishers": "postflow_register_publishers",
                        "postflow.notifications.channels":
                            "postflow_register_notification_channels",
                        "postflow.storage.sqlite": "postflow_schema"}.get(
                name, "postflow_storage")
            assert out[i + 1] == f"    {expected}"
        i = out.index("recorder  (postflow-recorder 2.5)")
        assert out[i + 1:i + 3] == ["    postflow_after_transition",
                                    "    postflow_before_transition"]

    def test_describe_marks_in_process_plugins(self) -> None:
        """The facade's describe() tells in-process plugins from built-ins."""
        hooks = Hooks(make_plugin_manager([NoObjection()], entry_points=False))
        rows = {name: (origin, hooks_) for name, origin, hooks_ in hooks.describe()}
        assert [row for row in rows.values() if row[0] == "in-process"] == [
            ("in-process", ["postflow_authorize"])]
        assert rows["postflow.storage.sqlite"] == ("built-in",
                                                   ["postflow_schema", "postflow_storage"])
        assert rows["postflow.calendar"] == ("built-in", ["postflow_calendar_event"])


class TestTypedFacade:
    """``postflow._plugins.Hooks`` is the only caller of ``pm.hook``."""

    def test_no_module_but_the_facade_calls_pm_hook(self) -> None:
        """No source file other than _plugins.py mentions pm.hook or .hook."""
        offenders = [
            f"{path.relative_to(SRC)}:{n}"
            for path in sorted(SRC.rglob("*.py")) if path.name != "_plugins.py"
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
            if "pm.hook" in line or ".hook." in line
        ]
        assert offenders == []
        assert "pm.hook." in (SRC / "_plugins.py").read_text(encoding="utf-8")

    def test_facade_has_a_method_per_hook(self) -> None:
        """Every hook in hookspecs has a Hooks method named after it."""
        hooks = sorted(n for n in dir(hookspecs) if n.startswith("postflow_"))
        assert hooks == ["postflow_after_change", "postflow_after_transition",
                         "postflow_authorize",
                         "postflow_before_transition", "postflow_calendar_event",
                         "postflow_register_commands",
                         "postflow_register_notification_channels",
                         "postflow_register_publishers", "postflow_schema",
                         "postflow_storage"]
        for name in hooks:
            assert callable(getattr(Hooks, name.removeprefix("postflow_")))

