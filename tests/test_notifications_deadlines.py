"""Timed notification events and escalations (``ws.notifications.scan``).

Due soon, overdue, not approved in time and a series running out are each emitted once
per post, stage and kind, however often the scan runs; an escalation notifies its
targets and adds a named approver to that post's stage only, both audited, once.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import date, timedelta
from typing import Any

import pytest

import postflow
from conftest import add_team
from postflow.hookspecs import hookimpl
from postflow.testing import FixedClock
from postflow.workflow import DEFAULT_WORKFLOW

MakeWs = Callable[..., postflow.Workspace]

CONFIG: dict[str, Any] = {
    "settings": {"due_soon": "4h"},
    "rules": [
        {"name": "deadlines reach the approvers",
         "events": ["approval.due_soon", "approval.overdue"], "to": ["approvers"],
         "channels": ["inbox"]},
        {"name": "authors hear of late posts and ending series",
         "events": ["post.not_approved_in_time", "series.running_out"], "to": ["author"],
         "channels": ["inbox"]},
    ],
    "escalations": [
        {"name": "legal is late", "stage": "legal", "after": "1h", "notify": ["role:admin"],
         "channels": ["inbox"], "add_approver": "al"},
    ],
}


def two_stages() -> postflow.Workflow:
    data = copy.deepcopy(dict(DEFAULT_WORKFLOW))
    data.update(name="two_stages", roles=["legal"], stages=[
        {"name": "editorial", "roles": ["approver"], "due": "24h"},
        {"name": "legal", "roles": ["legal"], "due": "24h"},
    ])
    return postflow.Workflow.from_dict(data)


@pytest.fixture(name="dws")
def _dws(url: str, make_ws: MakeWs) -> postflow.Workspace:
    """A workspace with two approval stages due in 24 h each and the deadline rules."""
    ws = make_ws(url, workflow=two_stages())
    add_team(ws)
    ws.team.add("lou", roles={"legal"})
    ws.notifications.configure(CONFIG, by="dee")
    return ws


def kinds(ws: postflow.Workspace) -> Counter[tuple[str, int | None, str | None, str]]:
    """(event, post, stage, recipient) of every outbox row."""
    return Counter((n.event, n.payload.get("post_id"), n.payload.get("stage"), n.recipient)
                   for n in ws.notifications.outbox())


def escalations(ws: postflow.Workspace) -> list[postflow.AuditEntry]:
    return [e for e in ws.audit_log() if e.action == "escalate"]


def submitted(ws: postflow.Workspace, text: str, **kwargs: Any) -> postflow.Post:
    post = ws.posts.create(author="ana", text=text, channels=["acme-x"], **kwargs)
    return ws.submit(post.id, by="ana")


class TestApprovalDeadlines:
    def test_due_soon_then_overdue_once_each(self, dws: postflow.Workspace,
                                            clock: FixedClock) -> None:
        ws = dws
        post = submitted(ws, "Launch")
        clock.advance(hours=19)
        assert ws.notifications.scan() == 0  # due in 5 h: not yet "soon"
        clock.advance(hours=1, minutes=30)  # due in 3.5 h
        assert ws.notifications.scan() == 2  # both approvers of the editorial stage
        assert ws.notifications.scan() == 0
        clock.advance(hours=3)
        assert ws.notifications.scan() == 0  # still soon: nothing new
        clock.advance(hours=1)  # 24.5 h: overdue
        assert ws.notifications.scan() == 2
        clock.advance(hours=5)
        assert ws.notifications.scan() == 0
        assert kinds(ws) == Counter({
            ("approval.due_soon", post.id, "editorial", "ben"): 1,
            ("approval.due_soon", post.id, "editorial", "bea"): 1,
            ("approval.overdue", post.id, "editorial", "ben"): 1,
            ("approval.overdue", post.id, "editorial", "bea"): 1})
        assert [a.overdue for a in ws.approvals(overdue=True)] == [True]

    def test_a_later_stage_is_due_from_when_the_post_reached_it(
            self, dws: postflow.Workspace, clock: FixedClock) -> None:
        ws = dws
        post = submitted(ws, "Launch")
        clock.advance(hours=10)
        ws.approve(post.id, by="ben")  # now at legal, due 24 h from here
        (pending,) = ws.approvals()
        assert pending.stage == "legal"
        assert pending.due_at == clock.now() + timedelta(hours=24)
        clock.advance(hours=19)
        assert ws.notifications.scan() == 0
        clock.advance(hours=2)
        ws.notifications.scan()
        assert set(kinds(ws)) == {("approval.due_soon", post.id, "legal", "lou")}

    def test_a_new_revision_is_a_new_deadline(self, dws: postflow.Workspace,
                                              clock: FixedClock) -> None:
        ws = dws
        post = submitted(ws, "Launch")
        clock.advance(hours=25)
        assert ws.notifications.scan() == 2
        ws.withdraw(post.id, by="ana")
        ws.edit(post.id, by="ana", text="Launch, take two")
        ws.submit(post.id, by="ana")
        assert ws.notifications.scan() == 0  # the new revision waits from now
        clock.advance(hours=25)
        assert ws.notifications.scan() == 2


class TestNotApprovedInTime:
    def test_a_planned_post_still_in_draft_once(self, dws: postflow.Workspace,
                                                clock: FixedClock) -> None:
        ws = dws
        post = ws.posts.create(author="ana", text="Holiday greetings", channels=["acme-x"],
                               planned_for=date(2030, 1, 3))
        on_time = ws.posts.create(author="ana", text="Approved in time", channels=["acme-x"],
                                  planned_for=date(2030, 1, 3))
        ws.submit(on_time.id, by="ana")
        ws.approve(on_time.id, by="ben")
        ws.approve(on_time.id, by="lou")
        assert ws.notifications.scan() == 0
        clock.advance(days=1, hours=14)  # 2030-01-02 23:00 UTC: not yet
        ws.notifications.scan()
        assert not [k for k in kinds(ws) if k[0] == "post.not_approved_in_time"]
        clock.advance(hours=2)
        ws.notifications.scan()
        ws.notifications.scan()
        late = [(k, n) for k, n in kinds(ws).items() if k[0] == "post.not_approved_in_time"]
        assert late == [(("post.not_approved_in_time", post.id, None, "ana"), 1)]

    def test_a_post_in_review_counts_too(self, dws: postflow.Workspace,
                                         clock: FixedClock) -> None:
        ws = dws
        post = submitted(ws, "Review me", planned_for=date(2030, 1, 2))
        clock.advance(days=1)
        ws.notifications.scan()
        assert kinds(ws)[("post.not_approved_in_time", post.id, None, "ana")] == 1


class TestSeriesRunningOut:
    def test_once_per_count_left(self, dws: postflow.Workspace, clock: FixedClock) -> None:
        ws = dws
        series, _ = ws.posts.create_series(
            author="ana", text="Daily tip", channels=["acme-x"],
            rrule="FREQ=DAILY;COUNT=6", start=clock.now() + timedelta(days=1))
        ws.notifications.scan()
        assert not [k for k in kinds(ws) if k[0] == "series.running_out"]
        clock.advance(days=3, hours=1)  # occurrences on days 4, 5, 6 left
        ws.notifications.scan()
        ws.notifications.scan()
        rows = [n for n in ws.notifications.outbox() if n.event == "series.running_out"]
        assert [(n.recipient, n.payload["data"]["occurrences_left"],
                 n.payload["data"]["series"]) for n in rows] == [("ana", 3, series.id)]

    def test_an_endless_or_ended_series_never_runs_out(self, dws: postflow.Workspace,
                                                       clock: FixedClock) -> None:
        ws = dws
        ws.posts.create_series(author="ana", text="Weekly", channels=["acme-x"],
                               rrule="FREQ=WEEKLY", start=clock.now() + timedelta(days=1))
        ended, _ = ws.posts.create_series(author="ana", text="Twice", channels=["acme-x"],
                                          rrule="FREQ=DAILY;COUNT=2",
                                          start=clock.now() + timedelta(days=1))
        ws.scheduling.end_series(ended.id, by="ana")
        ws.notifications.scan()
        assert not [n for n in ws.notifications.outbox() if n.event == "series.running_out"]


class TestEscalation:
    def test_notifies_admins_and_adds_an_approver_for_that_post_only(
            self, dws: postflow.Workspace, clock: FixedClock) -> None:
        ws = dws
        late = submitted(ws, "Needs legal")
        ws.approve(late.id, by="ben")  # at legal from now
        other = submitted(ws, "Also needs legal")
        ws.approve(other.id, by="bea")
        clock.advance(hours=24, minutes=30)  # overdue, but not yet 1 h past due
        ws.notifications.scan()
        assert not escalations(ws)
        assert "al" not in ws.approvals()[0].waiting_on
        clock.advance(hours=1)
        ws.notifications.scan()
        ws.notifications.scan()
        entries = escalations(ws)
        # per post: the approver added, then whom the escalation notified; both audited
        assert [(e.post_id, e.actor, e.data["stage"], e.data.get("member"),
                 e.data.get("escalation"), e.data.get("notified")) for e in entries] == [
            (late.id, "system", "legal", "al", None, None),
            (late.id, "system", "legal", None, "legal is late", ("role:admin",)),
            (other.id, "system", "legal", "al", None, None),
            (other.id, "system", "legal", None, "legal is late", ("role:admin",))]
        assert postflow.replay(ws.history(late.id)) == ws.posts.get(late.id)
        escalated = [n for n in ws.notifications.outbox()
                     if n.event_key.startswith("escalation:")]
        assert sorted((n.recipient, n.payload["post_id"]) for n in escalated) == [
            ("dee", late.id), ("dee", other.id)]
        assert escalated[0].payload["data"]["added"] == "al"
        assert ws.posts.get(late.id).extra_approvers == (("legal", "al"),)
        waiting = {p.post_id: p.waiting_on for p in ws.approvals()}
        assert "al" in waiting[late.id]

        # al approves that post's legal stage; the next post's editorial stage is not his
        assert ws.approve(late.id, by="al").state == "approved"
        third = submitted(ws, "Editorial first")
        with pytest.raises(postflow.PermissionDenied):
            ws.approve(third.id, by="al")

    def test_only_the_named_stage_escalates(self, dws: postflow.Workspace,
                                            clock: FixedClock) -> None:
        ws = dws
        submitted(ws, "Stuck at editorial")
        clock.advance(days=3)
        ws.notifications.scan()
        assert not escalations(ws)
        assert {k[0] for k in kinds(ws)} == {"approval.overdue"}


class Recorder:
    """A notification channel plugin (``postflow_register_notification_channels``)
    that keeps what it is sent."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    @hookimpl
    def postflow_register_notification_channels(
            self, register: Callable[[str, Any], None]) -> None:
        register("recorder", self)

    def configure(self, settings: Mapping[str, Any]) -> None:
        assert dict(settings) in ({}, {"label": "ops"})

    def send(self, message: Any) -> None:
        self.sent.append(message)


def test_escalations_reach_a_plugin_channel(url: str, make_ws: MakeWs,
                                            clock: FixedClock) -> None:
    """An escalation's notification is delivered through the channel a plugin
    registered, by the same pass that scanned it."""
    recorder = Recorder()
    ws = make_ws(url, workflow=two_stages(), plugins=[recorder])
    add_team(ws)
    ws.team.add("lou", roles={"legal"})
    config = copy.deepcopy(CONFIG)
    config["escalations"][0]["channels"] = ["recorder"]
    config["channels"] = {"recorder": {"label": "ops"}}
    ws.notifications.configure(config, by="dee")
    post = submitted(ws, "Needs legal")
    ws.approve(post.id, by="ben")
    clock.advance(hours=26)
    ws.notifications.run_once(worker="w1")
    ws.notifications.run_once(worker="w1")
    assert [(m.recipient.name, m.channel, [e["kind"] for e in m.events])
            for m in recorder.sent] == [("dee", "recorder", ["approval.overdue"])]
    assert recorder.sent[0].events[0]["data"]["escalation"] == "legal is late"


def test_deadlines_older_than_the_retention_are_old_news(dws: postflow.Workspace,
                                                         clock: FixedClock) -> None:
    """A deadline that passed before the retention (whose mark may be pruned) is not
    announced again, nor for the first time."""
    ws = dws
    post = submitted(ws, "Forgotten", planned_for=date(2030, 1, 2))
    clock.advance(days=40)
    ws.notifications.scan()
    assert not [k for k in kinds(ws) if k[1] == post.id]
    assert ws.approvals(overdue=True)[0].post_id == post.id


def test_the_scan_judges_by_the_now_it_is_given(dws: postflow.Workspace,
                                                clock: FixedClock) -> None:
    post = submitted(dws, "Launch")
    assert dws.notifications.scan(now=clock.now() + timedelta(hours=25)) == 2
    assert set(kinds(dws)) == {("approval.overdue", post.id, "editorial", "ben"),
                               ("approval.overdue", post.id, "editorial", "bea")}
