"""One event for every change: the after-commit hooks and the durable change cursor.

Every audit action postflow can write reaches ``postflow_after_change`` exactly once,
after its transaction committed, never for a call that was vetoed or lost a
compare-and-set; every post transition (the worker's too) reaches
``postflow_after_transition``; a consumer of ``ws.changes`` that died misses nothing.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

import postflow
from conftest import add_team
from postflow.engine import AUDIT_ACTIONS, NOT_TRANSITIONS
from postflow.hookspecs import hookimpl
from postflow.models import AuditEntry, Post
from postflow.publishing import Outgoing, Published
from postflow.testing import FixedClock

MakeWs = Callable[..., postflow.Workspace]


class Recorder:
    """Records both after-commit hooks, checking at call time that the change is stored."""

    def __init__(self) -> None:
        self.changes: list[list[AuditEntry]] = []
        self.transitions: list[tuple[int, str, str, str]] = []
        self.uncommitted: list[str] = []
        self.sent: list[int] = []

    @hookimpl
    def postflow_after_change(self, workspace: postflow.Workspace,
                              entries: Sequence[AuditEntry]) -> None:
        stored = {e.id for e in workspace.storage.audit_log(after_id=entries[0].id - 1)}
        self.uncommitted += [e.action for e in entries if e.id not in stored]
        self.changes.append(list(entries))

    @hookimpl
    def postflow_after_transition(self, post: Post, previous: Post, trigger: str) -> None:
        self.transitions.append((post.id, trigger, previous.state, post.state))

    @hookimpl
    def postflow_register_publishers(self, register: Callable[[str, Any], None]) -> None:
        register("x", self)
        register("linkedin", self)

    def publish(self, item: Outgoing) -> Published:
        self.sent.append(item.post_id)
        return Published(f"r-{item.post_id}", f"https://x.example/{item.post_id}")

    def actions(self) -> list[str]:
        return [e.action for group in self.changes for e in group]


@pytest.fixture(name="recorder")
def _recorder() -> Recorder:
    return Recorder()


@pytest.fixture(name="rws")
def _rws(url: str, make_ws: MakeWs, recorder: Recorder) -> postflow.Workspace:
    return make_ws(url, plugins=[recorder])


def every_action(ws: postflow.Workspace, clock: FixedClock) -> None:
    """Drive the workspace through every audit action postflow writes."""
    add_team(ws)
    ws.team.update("aaron", email="aaron@example.org")
    ws.channels.update("acme-li", handle="acme-gmbh")
    ws.campaigns.update("spring", goal="600 sign-ups")
    post = ws.posts.create(author="ana", text="Launch", channels=["acme-x"])
    ws.edit(post.id, by="ana", text="Launch day")
    ws.plan(post.id, on=date(2030, 1, 5), by="ana")
    ws.comment(post.id, by="ben", text="Looks good")
    ws.submit(post.id, by="ana")
    ws.request_changes(post.id, by="ben", comment="shorter")
    ws.submit(post.id, by="ana")
    ws.withdraw(post.id, by="ana")
    ws.submit(post.id, by="ana")
    ws.approve(post.id, by="ben")
    ws.schedule(post.id, at=clock.now() + timedelta(hours=1), by="cy")
    ws.unschedule(post.id, by="cy")
    ws.schedule(post.id, at=clock.now() + timedelta(hours=1), by="cy")
    ws.pause(by="cy", reason="crisis")
    ws.resume(by="cy")
    clock.advance(hours=2)
    ws.publish_due(worker="w1")  # claim, then the worker's publish
    ws.archive(post.id, by="dee")
    ws.restore(post.id, by="dee")
    series, _ = ws.posts.create_series(author="ana", text="Weekly", channels=["acme-x"],
                                       rrule="FREQ=WEEKLY",
                                       start=clock.now() + timedelta(days=1))
    ws.scheduling.end_series(series.id, by="ana")
    ws.feeds.create("team")
    ws.feeds.rotate("team")
    ws.feeds.revoke("team")
    ws.calendar.import_ical(
        b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nBEGIN:VEVENT\r\n"
        b"UID:h1@example.org\r\nDTSTAMP:20300101T000000Z\r\nDTSTART;VALUE=DATE:20300110\r\n"
        b"SUMMARY:Holiday\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    # a post the worker cannot send (no publisher for it) fails: the worker's 'fail'
    ws.channels.add("acme-ma", network="mastodon")
    failing = ws.posts.create(author="ana", text="Toot", channels=["acme-ma"])
    ws.submit(failing.id, by="ana")
    ws.approve(failing.id, by="ben")
    ws.schedule(failing.id, at=clock.now() + timedelta(minutes=5), by="cy")
    clock.advance(minutes=10)
    ws.publish_due(worker="w1")
    ws.fire(failing.id, "retry", by="cy")
    ws.unschedule(failing.id, by="cy")
    ws.schedule(failing.id, at=clock.now() + timedelta(minutes=5), by="cy")
    clock.advance(minutes=10)
    ws.publish_due(worker="w1", stop=lambda: True)  # claimed, then released
    now = ws.posts.create(author="ana", text="Now", channels=["acme-ma"])
    ws.submit(now.id, by="ana")
    # an escalation adds an approver to that post's stage (notifications.deadlines)
    ws.engine.escalate(now.id, ws.workflow.stages[0].name, "bea", by="dee")
    ws.approve(now.id, by="ben")
    ws.publish(now.id, by="cy")  # publish_now, its claim, and the outcome
    ws.apply_workflow(postflow.Workflow.from_dict({"extends": "default", "name": "house"}),
                      by="dee")
    ws.rekey(by="dee")
    ws.notifications.configure({"rules": [{"name": "reviewers", "events": ["post.submitted"],
                                           "to": ["approvers"], "channels": ["inbox"]}]},
                               by="dee")
    ws.notifications.set_preferences("ana", {"digest": "daily 08:00"}, by="ana")


class TestAfterChange:
    """``postflow_after_change`` sees every committed change once."""

    def test_every_audit_action_reaches_the_hook_once_after_commit(
            self, rws: postflow.Workspace, recorder: Recorder, clock: FixedClock) -> None:
        """The scenario writes every action; each stored entry reaches the hook once."""
        every_action(rws, clock)
        seen = recorder.actions()
        expected = (AUDIT_ACTIONS - {"retry_wait", "delivery.resolve"}) | {
            "submit", "approve", "request_changes", "withdraw", "schedule", "unschedule",
            "publish", "fail", "retry", "archive", "restore"}
        assert expected <= set(seen), expected - set(seen)
        stored = rws.audit_log()
        assert sorted(e.id for g in recorder.changes for e in g) == [e.id for e in stored]
        assert recorder.uncommitted == []
        for group in recorder.changes:  # one call, one correlation id
            assert len({e.correlation_id for e in group}) == 1

    def test_retry_wait_and_resolve_reach_the_hook(
            self, url: str, make_ws: MakeWs, clock: FixedClock) -> None:
        """The worker's retry wait and a person's resolve are changes too."""
        class Flaky(Recorder):
            def publish(self, item: Outgoing) -> Published:
                raise postflow.RetryableError("try later")

        flaky = Flaky()
        ws = make_ws(url, plugins=[flaky])
        add_team(ws)
        post = ws.posts.create(author="ana", text="Hi", channels=["acme-x"])
        ws.submit(post.id, by="ana")
        ws.approve(post.id, by="ben")
        ws.schedule(post.id, at=clock.now() + timedelta(minutes=5), by="cy")
        clock.advance(minutes=10)
        ws.publish_due(worker="w1")
        assert "retry_wait" in flaky.actions()
        assert all(t[1] != "retry_wait" for t in flaky.transitions)

    def test_vetoed_and_conflicting_calls_announce_nothing(
            self, rws: postflow.Workspace, recorder: Recorder) -> None:
        """A veto, a refusal or a lost compare-and-set writes nothing and tells no one."""
        add_team(rws)
        post = rws.posts.create(author="ana", text="Launch", channels=["acme-x"])
        before = len(recorder.changes)
        with pytest.raises(postflow.ConflictError):
            rws.submit(post.id, by="ana", expected_version=post.version + 5)
        rws.submit(post.id, by="ana")
        before = len(recorder.changes)
        with pytest.raises(postflow.PermissionDenied):
            rws.approve(post.id, by="ana")  # four eyes
        with pytest.raises(postflow.ValidationFailed):
            rws.team.add("ana", roles={"author"})  # the name is taken
        with pytest.raises(postflow.InvalidTransition):
            rws.resume(by="cy")  # nothing is paused
        assert len(recorder.changes) == before

    def test_a_plugin_veto_announces_nothing(
            self, url: str, make_ws: MakeWs, recorder: Recorder) -> None:
        """``postflow_before_transition`` raising stops the change before any hook."""

        class Veto:
            @hookimpl
            def postflow_before_transition(self, trigger: str) -> None:
                if trigger == "submit":
                    raise postflow.ValidationFailed.single("post", "house-rule", "no")

        ws = make_ws(url, plugins=[recorder, Veto()])
        add_team(ws)
        post = ws.posts.create(author="ana", text="Launch", channels=["acme-x"])
        before = (len(recorder.changes), len(recorder.transitions))
        with pytest.raises(postflow.ValidationFailed):
            ws.submit(post.id, by="ana")
        assert (len(recorder.changes), len(recorder.transitions)) == before
        assert ws.posts.get(post.id).state == "draft"


class TestAfterTransition:
    """``postflow_after_transition`` fires for every transition, the worker's included."""

    def test_worker_publish_and_fail_are_transitions(
            self, rws: postflow.Workspace, recorder: Recorder, clock: FixedClock) -> None:
        """The worker's outcomes reach the hook; its claim and release do not."""
        every_action(rws, clock)
        triggers = [t[1] for t in recorder.transitions]
        assert "publish" in triggers
        assert "fail" in triggers
        assert not NOT_TRANSITIONS.intersection(triggers)
        published = [t for t in recorder.transitions if t[1] == "publish"]
        assert published[0][2:] == ("scheduled", "published")
        transitions_in_trail = [e for e in rws.audit_log()
                                if e.post_id is not None and e.action not in NOT_TRANSITIONS
                                and e.action not in ("create", "comment", "escalate")]
        assert len(recorder.transitions) == len(transitions_in_trail)


class TestChangeCursor:
    """``ws.changes``: a durable cursor over the audit trail."""

    def test_consume_hands_each_call_once_and_remembers(
            self, url: str, make_ws: MakeWs) -> None:
        """A consumer sees every call once; a second pass sees only what is new."""
        ws = make_ws(url)
        add_team(ws)
        seen: list[list[AuditEntry]] = []
        assert ws.changes.consume("notify", seen.append) == len(seen) > 0
        assert [e.id for g in seen for e in g] == [e.id for e in ws.audit_log()]
        seen.clear()
        assert ws.changes.consume("notify", seen.append) == 0
        post = ws.posts.create(author="ana", text="Hi", channels=["acme-x"])
        ws.submit(post.id, by="ana")
        assert ws.changes.consume("notify", seen.append) == 2
        assert [[e.action for e in g] for g in seen] == [["create"], ["submit"]]
        assert ws.changes.position("notify") == ws.audit_log()[-1].id
        assert ws.changes.position("other") == 0

    def test_a_failing_handler_leaves_the_call_for_next_time(
            self, url: str, make_ws: MakeWs) -> None:
        """An exception stops the pass before the failed call, which comes again."""
        ws = make_ws(url)
        ws.changes.acknowledge("mail", ws.audit_log())  # the stored workflow: not mail
        ws.team.add("ana", roles={"author"})
        ws.team.add("ben", roles={"approver"})
        calls: list[str] = []

        def handler(group: Sequence[AuditEntry]) -> None:
            calls.append(group[0].data["member"])
            if group[0].data["member"] == "ben" and calls.count("ben") == 1:
                raise RuntimeError("mail server down")

        with pytest.raises(RuntimeError):
            ws.changes.consume("mail", handler)
        assert ws.changes.consume("mail", handler) == 1
        assert calls == ["ana", "ben", "ben"]

    def test_small_limits_never_split_a_call(self, url: str, make_ws: MakeWs,
                                             clock: FixedClock) -> None:
        """A batch limit that cuts a call holds the call back whole."""
        ws = make_ws(url)
        add_team(ws)
        ws.posts.create_series(author="ana", text="Daily", channels=["acme-x"],
                               rrule="FREQ=DAILY", start=clock.now() + timedelta(hours=1),
                               ahead=timedelta(days=5))
        groups: list[list[AuditEntry]] = []
        ws.changes.consume("small", groups.append, limit=3)
        assert [e.id for g in groups for e in g] == [e.id for e in ws.audit_log()]
        occurrences = [g for g in groups if g[0].action == "create"]
        assert len(occurrences) == 1
        assert len(occurrences[0]) == 5

    def test_two_readers_of_one_consumer_never_both_advance(
            self, url: str, make_ws: MakeWs) -> None:
        """The cursor is a compare-and-set."""
        ws = make_ws(url)
        ws.team.add("ana", roles={"author"})
        entries = ws.audit_log()
        assert ws.changes.acknowledge("c", entries) == entries[-1].id
        assert entries[-1].id > 1
        with pytest.raises(postflow.ConflictError):
            ws.storage.save_cursor("c", entries[-1].id + 5, expected=0)
        with pytest.raises(ValueError, match="cannot move back"):
            ws.storage.save_cursor("c", 0, expected=entries[-1].id)

    @pytest.mark.parametrize("name", ["", "a b", "x" * 101, None, "ä"])
    def test_bad_consumer_names(self, name: Any) -> None:
        """A consumer name is a short slug."""
        ws = postflow.open("memory://", entry_points=False)
        with pytest.raises(postflow.ValidationFailed, match="consumer"):
            ws.changes.position(name)


KILLED_AFTER_COMMIT = """
import os, signal, sys
import postflow
from postflow.hookspecs import hookimpl

class DieAfterCommit:
    @hookimpl
    def postflow_after_change(self, entries):
        if entries[0].action == "submit":
            os.kill(os.getpid(), signal.SIGKILL)  # the commit is done; nobody was told

ws = postflow.open(sys.argv[1], plugins=[DieAfterCommit()], entry_points=False)
ws.team.add("ana", roles={"author"})
ws.channels.add("acme-x", network="x")
post = ws.posts.create(author="ana", text="Launch", channels=["acme-x"])
ws.changes.consume("notify", lambda group: None)  # caught up before the crash
ws.submit(post.id, by="ana")
"""


class TestKilledAfterCommit:
    """A process killed right after a commit loses no change for a durable consumer."""

    def test_consumer_catches_up(self, tmp_path: Path) -> None:
        """The submit committed, the process died; the next consumer pass sees it."""
        url = f"sqlite:///{tmp_path / 'killed.db'}"
        script = tmp_path / "die.py"
        script.write_text(textwrap.dedent(KILLED_AFTER_COMMIT))
        result = subprocess.run([sys.executable, str(script), url], capture_output=True,
                                timeout=120)
        assert result.returncode == -9, result.stderr
        with postflow.open(url, entry_points=False) as ws:
            post = ws.posts.list()[0]
            assert post.state == "review"
            seen: list[str] = []
            assert ws.changes.consume("notify", lambda g: seen.append(g[0].action)) == 1
            assert seen == ["submit"]


class TestClaimVeto:
    """Plugins veto the worker's publish before anything is sent, never after."""

    def test_a_vetoed_claim_sends_nothing_and_fails_the_post(
            self, url: str, make_ws: MakeWs, clock: FixedClock) -> None:
        """``postflow_before_transition`` raising for ``publish`` stops the send."""
        network = Recorder()

        class LegalHold:
            def __init__(self) -> None:
                self.seen: list[tuple[str, str]] = []

            @hookimpl
            def postflow_before_transition(self, trigger: str, actor: str,
                                           post: Post) -> None:
                self.seen.append((trigger, actor))
                if trigger == "publish" and "embargo" in post.text:
                    raise postflow.ValidationFailed.single(
                        f"post {post.id}", "embargo", "under embargo")

        hold = LegalHold()
        ws = make_ws(url, plugins=[network, hold])
        add_team(ws)
        ids = []
        for text in ("embargo news", "fine news"):
            post = ws.posts.create(author="ana", text=text, channels=["acme-x"])
            ws.submit(post.id, by="ana")
            ws.approve(post.id, by="ben")
            ids.append(ws.schedule(post.id, at=clock.now() + timedelta(minutes=5),
                                   by="cy").id)
        clock.advance(minutes=10)
        outcomes = {o.post_id: o for o in ws.publish_due(worker="w1")}
        assert network.sent == [ids[1]]
        assert outcomes[ids[0]].result == "failed"
        assert "embargo" in outcomes[ids[0]].detail
        assert ws.posts.get(ids[0]).state == "failed"
        assert ws.posts.get(ids[1]).state == "published"
        assert ("publish", "w1") in hold.seen
        last = ws.history(ids[0])[-1]
        assert (last.action, last.data["reason"]) == ("fail", "vetoed")
        assert ws.deliveries(ids[0]) == []
