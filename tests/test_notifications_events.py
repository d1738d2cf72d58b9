"""Notification events from real calls: every change kind, stages, mentions, urgency."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

import postflow
from conftest import add_team
from postflow.changes import group_by_call
from postflow.hookspecs import hookimpl
from postflow.notifications.events import (
    EVENT_KINDS,
    URGENT_KINDS,
    Event,
    events_from,
    mentions,
)
from postflow.publishing import OutcomeUnknownError, Outgoing, Published
from postflow.testing import FixedClock

MakeWs = Callable[..., postflow.Workspace]
TIMED_KINDS = {"approval.due_soon", "approval.overdue", "post.not_approved_in_time",
               "series.running_out"}


class Publishers:
    """``x`` publishes, ``linkedin`` answers with an unknown outcome."""

    @hookimpl
    def postflow_register_publishers(self, register: Callable[[str, Any], None]) -> None:
        register("x", self)
        register("linkedin", Unknown())

    def publish(self, item: Outgoing) -> Published:
        return Published(f"r-{item.post_id}", f"https://x.example/{item.post_id}")


class Unknown:
    def publish(self, item: Outgoing) -> Published:
        raise OutcomeUnknownError("connection dropped after sending")


def all_events(ws: postflow.Workspace) -> list[Event]:
    return [event for group in group_by_call(ws.audit_log())
            for event in events_from(group, ws)]


@pytest.fixture(name="two_stage")
def _two_stage(url: str, make_ws: MakeWs) -> postflow.Workspace:
    workflow = postflow.Workflow.from_dict({
        "extends": "default", "name": "two",
        "stages": [{"name": "review", "roles": ["approver"]},
                   {"name": "legal", "members": ["dee"]}]})
    ws = make_ws(url, plugins=[Publishers()], workflow=workflow)
    add_team(ws)
    return ws


def lifecycle(ws: postflow.Workspace, clock: FixedClock) -> None:
    """Every change kind, once or more."""
    post = ws.posts.create(author="ana", text="Launch <b>day</b>", channels=["acme-x"],
                           campaign="spring")
    ws.comment(post.id, by="ben", text="Nice. @bea, @nobody and @dee. please look")
    ws.submit(post.id, by="ana")
    ws.request_changes(post.id, by="ben", comment="shorter, @ana")
    ws.submit(post.id, by="ana")
    ws.withdraw(post.id, by="ana")
    ws.submit(post.id, by="ana")
    ws.approve(post.id, by="ben")
    ws.edit(post.id, by="ana", text="Launch!")  # voids the review approval
    ws.submit(post.id, by="ana")
    ws.approve(post.id, by="ben")
    ws.approve(post.id, by="dee")
    ws.schedule(post.id, at=clock.now() + timedelta(hours=1), by="cy")
    ws.unschedule(post.id, by="cy")
    ws.schedule(post.id, at=clock.now() + timedelta(hours=1), by="cy")
    ws.pause(by="cy", reason="crisis")
    ws.resume(by="cy")
    clock.advance(hours=2)
    ws.publish_due(worker="w1")
    for channel, text in (("acme-li", "Unknown outcome"), ("acme-ma", "Toot")):
        if channel == "acme-ma":
            ws.channels.add("acme-ma", network="mastodon")
        other = ws.posts.create(author="ana", text=text, channels=[channel])
        ws.submit(other.id, by="ana")
        ws.approve(other.id, by="ben")
        ws.approve(other.id, by="dee")
        ws.schedule(other.id, at=clock.now() + timedelta(minutes=5), by="cy")
        clock.advance(minutes=10)
        ws.publish_due(worker="w1")


class TestEventsFromChanges:
    def test_every_change_kind_from_real_calls(self, two_stage: postflow.Workspace,
                                               clock: FixedClock) -> None:
        lifecycle(two_stage, clock)
        kinds = {event.kind for event in all_events(two_stage)}
        assert kinds == set(EVENT_KINDS) - TIMED_KINDS

    def test_event_details(self, two_stage: postflow.Workspace, clock: FixedClock) -> None:
        lifecycle(two_stage, clock)
        events = all_events(two_stage)
        by_kind: dict[str, list[Event]] = {}
        for event in events:
            by_kind.setdefault(event.kind, []).append(event)
        approved = by_kind["post.approved"]
        assert [(e.stage, e.data["final"]) for e in approved] == [
            ("review", False), ("review", False), ("legal", True), ("review", False),
            ("legal", True), ("review", False), ("legal", True)]
        published = by_kind["post.published"][0]
        assert published.data["urls"] == {"acme-x": "https://x.example/1"}
        assert published.data["campaign"] == "spring"
        assert published.data["author"] == "ana"
        failed = by_kind["post.failed"][0]
        assert failed.urgent
        assert failed.data["reason"] == "rejected"
        assert "no publisher" in failed.data["errors"]["acme-ma"]
        assert by_kind["post.unconfirmed"][0].urgent
        paused = by_kind["publishing.paused"][0]
        assert paused.urgent
        assert paused.data["reason"] == "crisis"
        assert not by_kind["publishing.resumed"][0].urgent
        assert by_kind["post.changes_requested"][0].data["comment"] == "shorter, @ana"
        assert by_kind["post.submitted"][0].stage == "review"
        assert by_kind["post.approvals_voided"][0].actor == "ana"
        assert by_kind["post.scheduled"][0].data["scheduled_at"]
        assert {e.kind for e in events if e.urgent} == URGENT_KINDS
        assert len({e.key for e in events}) == len(events)

    def test_mentions_of_members_only(self, two_stage: postflow.Workspace,
                                      clock: FixedClock) -> None:
        lifecycle(two_stage, clock)
        mentioned = [(e.data["mentioned"], e.data["comment"][:5]) for e in
                     all_events(two_stage) if e.kind == "member.mentioned"]
        assert mentioned == [("bea", "Nice."), ("dee", "Nice."), ("ana", "short")]

    def test_mentions_in_trigger_comments(self, ws: postflow.Workspace) -> None:
        post = ws.posts.create(author="ana", text="x", channels=["acme-x"])
        ws.submit(post.id, by="ana")
        ws.approve(post.id, by="ben", comment="ok for @cy")
        events = all_events(ws)
        mention = next(e for e in events if e.kind == "member.mentioned")
        assert mention.data["mentioned"] == "cy"
        assert mention.stage == "review"
        assert mention.key.endswith(":member.mentioned:cy")

    def test_no_events_for_team_changes(self, ws: postflow.Workspace) -> None:
        assert all_events(ws) == []


class TestMentions:
    @pytest.mark.parametrize(("text", "expected"), [
        ("@ana", ["ana"]), ("hi @ana.", ["ana"]), ("@ana @ana @ben", ["ana", "ben"]),
        ("mail ana@example.org", []), ("@@ana", []), ("@anastasia", []), (None, []),
        ("(@ben)", ["ben"]),
    ])
    def test_mentions(self, text: str | None, expected: list[str]) -> None:
        assert mentions(text, ["ana", "ben"]) == expected
