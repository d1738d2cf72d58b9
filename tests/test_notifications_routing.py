"""Routing changes to the outbox: rules, recipients, preferences, quiet hours across DST,
digests, and nothing lost or queued twice."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest

import postflow
from conftest import add_team
from postflow.notices import Notice
from postflow.notifications.events import Event, events_from
from postflow.notifications.routing import CONSUMER, dedup_key, notices_for
from postflow.testing import FixedClock

MakeWs = Callable[..., postflow.Workspace]


def rule(name: str, events: list[str], to: list[str], channels: list[str] | None = None,
         **extra: Any) -> dict[str, Any]:
    return {"name": name, "events": events, "to": to, "channels": channels or ["null"],
            **extra}


def configure(ws: postflow.Workspace, *rules: dict[str, Any], **settings: Any) -> None:
    ws.notifications.configure({"rules": list(rules), "settings": settings}, by="dee")


def submitted(ws: postflow.Workspace, author: str = "ana") -> int:
    post = ws.posts.create(author=author, text="Hello", channels=["acme-x"])
    ws.submit(post.id, by=author)
    return post.id


def rows(ws: postflow.Workspace) -> set[tuple[str, str, str]]:
    return {(n.event, n.recipient, n.channel) for n in ws.notifications.outbox()}


class TestRules:
    def test_submission_reaches_the_approvers(self, ws: postflow.Workspace) -> None:
        configure(ws, rule("reviewers", ["post.submitted"], ["approvers"], ["null", "inbox"]))
        submitted(ws)
        assert ws.notifications.route() == 4
        assert rows(ws) == {("post.submitted", m, c) for m in ("ben", "bea")
                            for c in ("null", "inbox")}
        notice = ws.notifications.outbox()[0]
        assert notice.dedup_key == dedup_key(notice.event_key, notice.recipient,
                                             notice.channel)
        assert notice.payload["data"]["text"] == "Hello"
        assert notice.not_before == notice.created_at
        assert notice.digest is None

    def test_targets(self, ws: postflow.Workspace) -> None:
        ws.notifications.set_preferences("al", {"campaigns": ["spring"]}, by="al")
        configure(ws, rule("author", ["post.approved"], ["author"]),
                  rule("admins", ["post.approved"], ["role:admin", "member:cy"]),
                  rule("actor", ["post.approved"], ["actor"], ["inbox"]),
                  rule("campaign", ["post.approved"], ["campaign"], ["inbox"]),
                  rule("mentioned", ["member.mentioned"], ["mentioned"]))
        post = ws.posts.create(author="ana", text="x", channels=["acme-x"], campaign="spring")
        ws.submit(post.id, by="ana")
        ws.approve(post.id, by="ben", comment="fine, @aaron and @ben")
        ws.notifications.route()
        assert rows(ws) == {
            ("post.approved", "ana", "null"), ("post.approved", "dee", "null"),
            ("post.approved", "cy", "null"), ("post.approved", "ben", "inbox"),
            ("post.approved", "al", "inbox"), ("member.mentioned", "aaron", "null")}

    def test_the_actor_and_inactive_members_hear_nothing(self, ws: postflow.Workspace
                                                         ) -> None:
        ws.team.add("ida", roles={"approver"})
        ws.team.update("bea", active=False)
        configure(ws, rule("all", ["*"], ["role:approver", "role:author"]))
        submitted(ws)
        ws.notifications.route()
        assert {n.recipient for n in ws.notifications.outbox()} == {"ben", "ida", "aaron"}

    def test_approvers_under_four_eyes_and_stages(self, url: str, make_ws: MakeWs) -> None:
        workflow = postflow.Workflow.from_dict({
            "extends": "default", "name": "two",
            "stages": [{"name": "review", "roles": ["approver", "author"], "quorum": 1},
                       {"name": "legal", "members": ["dee"]}]})
        ws = make_ws(url, workflow=workflow)
        add_team(ws)
        configure(ws, rule("r", ["post.submitted", "post.approved"], ["approvers"]))
        post_id = submitted(ws)
        ws.approve(post_id, by="ben")
        ws.notifications.route()
        assert rows(ws) == {  # never the author; after review, legal's approvers
            ("post.submitted", "aaron", "null"), ("post.submitted", "bea", "null"),
            ("post.submitted", "ben", "null"), ("post.approved", "dee", "null")}

    def test_override_targets_and_channels(self, ws: postflow.Workspace,
                                           clock: FixedClock) -> None:
        configure(ws)
        post_id = submitted(ws)
        event = Event(f"approval.overdue:{post_id}:review:1", "approval.overdue",
                      clock.now(), None, post_id, "review", {"due_at": "soon"})
        notices = notices_for(ws, ws.notifications.config(), event, clock.now(),
                              targets=["role:admin", "approvers"], channels=["inbox"])
        assert {(n.recipient, n.channel) for n in notices} == {
            ("dee", "inbox"), ("ben", "inbox"), ("bea", "inbox")}
        assert notices_for(ws, ws.notifications.config(), event, clock.now()) == []

    def test_no_configuration_queues_nothing_but_moves_on(self, ws: postflow.Workspace
                                                           ) -> None:
        submitted(ws)
        assert ws.notifications.route() == 0
        assert ws.changes.position(CONSUMER) == ws.audit_log()[-1].id


class TestNothingLostNothingTwice:
    def test_routing_twice_queues_nothing_new(self, ws: postflow.Workspace) -> None:
        configure(ws, rule("all", ["*"], ["role:admin"]))
        submitted(ws)
        assert ws.notifications.route() == 2
        assert ws.notifications.route() == 0
        # the same events routed again (a crash between enqueue and cursor) add nothing
        config = ws.notifications.config()
        again: list[Notice] = []
        for entry in ws.changes.log():
            for event in events_from([entry], ws):
                again += notices_for(ws, config, event, ws.clock.now())
        assert len(again) == 2
        assert ws.storage.enqueue_notifications(again) == []
        assert len(ws.notifications.outbox()) == 2

    def test_a_process_dying_after_commit_loses_nothing(
            self, tmp_path: Path, make_ws: MakeWs) -> None:
        url = f"sqlite:///{tmp_path / 'pf.db'}"
        first = make_ws(url)
        add_team(first)
        configure(first, rule("all", ["post.submitted"], ["approvers"]))
        submitted(first)
        first.close()  # "dies" before any route
        second = make_ws(url)
        assert second.notifications.route() == 2
        assert {n.recipient for n in second.notifications.outbox()} == {"ben", "bea"}

    def test_a_failed_route_is_repeated_whole(self, ws: postflow.Workspace,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
        configure(ws, rule("all", ["*"], ["role:admin"]))
        submitted(ws)

        def crash(*args: object, **kwargs: object) -> None:
            raise OSError("killed")

        with monkeypatch.context() as patch:
            patch.setattr(ws.storage, "enqueue_notifications", crash)
            with pytest.raises(OSError, match="killed"):
                ws.notifications.route()
        assert ws.notifications.outbox() == []
        assert ws.notifications.route() == 2


class TestPreferences:
    def test_mutes(self, ws: postflow.Workspace) -> None:
        ws.notifications.set_preferences("ben", {"mute_events": ["post.submitted"]}, by="ben")
        ws.notifications.set_preferences("bea", {"mute_channels": ["null"]}, by="bea")
        configure(ws, rule("r", ["post.submitted"], ["approvers"], ["null", "inbox"]))
        submitted(ws)
        ws.notifications.route()
        assert rows(ws) == {("post.submitted", "bea", "inbox")}


class TestQuietHoursAcrossDST:
    """Berlin moves to summer time on 2030-03-31 and back on 2030-10-27."""

    QUIET: ClassVar[dict[str, str]] = {"quiet_hours": "22:00-07:00", "timezone": "Europe/Berlin"}

    def held_until(self, ws: postflow.Workspace, clock: FixedClock, at: datetime,
                   prefs: dict[str, Any], event: str = "submitted") -> datetime:
        ws.notifications.set_preferences("ben", prefs, by="ben")
        clock.set(at)
        if event == "submitted":
            submitted(ws)
        else:
            ws.pause(by="cy", reason="outage")
        ws.notifications.route()
        (notice,) = ws.notifications.outbox(recipient="ben")
        return notice.not_before

    @pytest.mark.parametrize(("at", "released"), [
        # 22:30 CET, the night summer time starts: 07:00 CEST is 05:00 UTC
        (datetime(2030, 3, 30, 21, 30, tzinfo=UTC), datetime(2030, 3, 31, 5, 0, tzinfo=UTC)),
        # 23:00 CEST, the night winter time starts: 07:00 CET is 06:00 UTC
        (datetime(2030, 10, 26, 21, 0, tzinfo=UTC), datetime(2030, 10, 27, 6, 0, tzinfo=UTC)),
        # 03:30 CEST after the change: the same morning
        (datetime(2030, 3, 31, 1, 30, tzinfo=UTC), datetime(2030, 3, 31, 5, 0, tzinfo=UTC)),
        # 12:00 CEST: not quiet
        (datetime(2030, 3, 31, 10, 0, tzinfo=UTC), datetime(2030, 3, 31, 10, 0, tzinfo=UTC)),
    ])
    def test_held_until_local_end(self, ws: postflow.Workspace, clock: FixedClock,
                                  at: datetime, released: datetime) -> None:
        configure(ws, rule("r", ["post.submitted"], ["approvers"]))
        assert self.held_until(ws, clock, at, self.QUIET) == released

    def test_released_at_the_right_instant(self, ws: postflow.Workspace,
                                           clock: FixedClock) -> None:
        configure(ws, rule("r", ["post.submitted"], ["approvers"]))
        release = self.held_until(ws, clock, datetime(2030, 3, 30, 21, 30, tzinfo=UTC),
                                  self.QUIET)
        assert ws.notifications.deliver(release - timedelta(seconds=1)).sent == 1  # bea
        assert ws.notifications.outbox(recipient="ben")[0].status == "pending"
        assert ws.notifications.deliver(release).sent == 1
        assert ws.notifications.outbox(recipient="ben")[0].status == "sent"

    def test_urgent_bypasses_quiet_hours_when_allowed(self, ws: postflow.Workspace,
                                                      clock: FixedClock) -> None:
        configure(ws, rule("r", ["publishing.paused"], ["member:ben"]))
        night = datetime(2030, 3, 30, 23, 0, tzinfo=UTC)
        assert self.held_until(ws, clock, night, self.QUIET, "paused") == night

    def test_urgent_held_when_bypass_is_off(self, ws: postflow.Workspace,
                                            clock: FixedClock) -> None:
        configure(ws, rule("r", ["publishing.paused"], ["member:ben"]))
        night = datetime(2030, 3, 30, 23, 0, tzinfo=UTC)
        held = self.held_until(ws, clock, night, {**self.QUIET, "urgent_bypass": False},
                               "paused")
        assert held == datetime(2030, 3, 31, 5, 0, tzinfo=UTC)

    def test_a_rule_marks_events_urgent(self, ws: postflow.Workspace,
                                        clock: FixedClock) -> None:
        configure(ws, rule("r", ["post.submitted"], ["approvers"], urgent=True))
        night = datetime(2030, 3, 30, 23, 0, tzinfo=UTC)
        assert self.held_until(ws, clock, night, self.QUIET) == night
        assert ws.notifications.outbox(recipient="ben")[0].urgent


class TestDigests:
    def test_hourly_and_burst_windows(self, ws: postflow.Workspace, clock: FixedClock
                                      ) -> None:
        ws.notifications.set_preferences("ben", {"digest": "hourly",
                                                 "timezone": "Asia/Kolkata"}, by="ben")
        ws.notifications.set_preferences("bea", {"digest": "burst"}, by="bea")
        configure(ws, rule("r", ["post.submitted"], ["approvers"], ["null", "inbox"]),
                  burst_window="2m")
        clock.set(datetime(2030, 1, 1, 9, 10, tzinfo=UTC))  # 14:40 in Kolkata
        submitted(ws)
        ws.notifications.route()
        clock.advance(minutes=1)
        submitted(ws)
        ws.notifications.route()
        clock.advance(minutes=2)  # the burst window closed: a new one opens
        submitted(ws)
        ws.notifications.route()
        groups = defaultdict(list)
        for n in ws.notifications.outbox():
            if n.channel == "inbox":
                assert n.digest is None  # the inbox holds nothing back
                continue
            groups[n.recipient, n.digest].append(n.not_before)
        assert groups == {
            ("ben", "hourly:2030-01-01T14:00:00+05:30"): [
                datetime(2030, 1, 1, 9, 30, tzinfo=UTC)] * 3,
            ("bea", "burst:2030-01-01T09:10:00+00:00"): [
                datetime(2030, 1, 1, 9, 12, tzinfo=UTC)] * 2,
            ("bea", "burst:2030-01-01T09:13:00+00:00"): [
                datetime(2030, 1, 1, 9, 15, tzinfo=UTC)],
        }

    def test_a_burst_of_1000_events_gives_10_daily_digests(
            self, url: str, make_ws: MakeWs, clock: FixedClock) -> None:
        ws = make_ws(url)
        ws.team.add("dee", roles={"admin"})
        ws.team.add("writer", roles={"author"})
        ws.channels.add("acme-x", network="x")
        members = [f"m{i}" for i in range(10)]
        for name in members:
            ws.team.add(name, roles={"analyst"})
            ws.notifications.set_preferences(name, {"digest": "daily 08:00",
                                                    "timezone": "Europe/Berlin"}, by=name)
        configure(ws, rule("everything", ["post.created"], ["role:analyst"]))
        clock.set(datetime(2030, 3, 30, 12, 0, tzinfo=UTC))
        for i in range(1000):
            ws.posts.create(author="writer", text=f"post {i}", channels=["acme-x"])
        assert ws.notifications.route() == 10_000
        groups = defaultdict(list)
        for notice in ws.notifications.outbox():
            groups[notice.recipient, notice.channel, notice.digest].append(notice)
        assert sorted(groups) == [(m, "null", "daily:2030-03-31") for m in members]
        for notices in groups.values():
            assert len({n.event_key for n in notices}) == len(notices) == 1000
            # 08:00 in Berlin on the morning summer time starts is 06:00 UTC
            assert {n.not_before for n in notices} == {
                datetime(2030, 3, 31, 6, 0, tzinfo=UTC)}
        assert ws.notifications.deliver(datetime(2030, 3, 31, 5, 59, tzinfo=UTC),
                                         limit=1000).claimed == 0
        report = ws.notifications.deliver(datetime(2030, 3, 31, 6, 0, tzinfo=UTC),
                                          limit=1000)
        assert (report.messages, report.sent) == (1, 1)  # a digest group is claimed whole
        sent = 1
        while sent < 10:
            report = ws.notifications.deliver(datetime(2030, 3, 31, 6, 0, tzinfo=UTC),
                                              limit=1000)
            assert report.sent == 1
            sent += 1
        assert ws.notifications.outbox(status="pending") == []


class TestInbox:
    def test_inbox_and_mark_read(self, ws: postflow.Workspace) -> None:
        configure(ws, rule("r", ["post.submitted"], ["approvers"], ["inbox"]))
        first, second = submitted(ws), submitted(ws)
        report = ws.notifications.run_once()
        assert report.routed == 4
        items = ws.inbox("ben", unread=True)
        assert [item.post_id for item in items] == [second, first]  # newest first
        assert ws.mark_read("ben", [items[0].id]) == 1
        assert [item.post_id for item in ws.inbox("ben", unread=True)] == [first]
        assert ws.mark_read("ben") == 1
        assert ws.inbox("ben", unread=True) == []
        assert len(ws.inbox("bea", unread=True)) == 2
        with pytest.raises(postflow.NotFound, match="zed"):
            ws.inbox("zed")
        with pytest.raises(postflow.NotFound, match="zed"):
            ws.mark_read("zed")
