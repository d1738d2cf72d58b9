"""The range of dates and times postflow accepts, and calendars robust to what is stored.

A planned day of ``date.max`` or a post scheduled for 9999-12-31 used to make every
calendar and feed raise ``OverflowError``: any author could take the team's calendar
down. Times and days outside 1970-01-01 … 2999-12-31 are now refused where they come in,
and rendering leaves out (and logs) what was stored before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

import postflow
from conftest import add_team
from postflow._time import EARLIEST, LATEST
from postflow.models import Post, Revision
from postflow.storage import NewEntry
from postflow.testing import FixedClock

MakeWs = Callable[..., postflow.Workspace]
FAR = datetime(9999, 12, 31, 23, 59, tzinfo=UTC)


@pytest.fixture(name="approved")
def _approved(ws: postflow.Workspace) -> Post:
    post = ws.posts.create(author="ana", text="Launch", channels=["acme-x"])
    ws.submit(post.id, by="ana")
    return ws.approve(post.id, by="ben")


def stored_state(ws: postflow.Workspace) -> tuple[Any, ...]:
    return (ws.posts.list(), ws.audit_log())


class TestRefusedWhereTheyComeIn:
    """Every way a far date enters is a ValidationFailed naming the field."""

    @pytest.mark.parametrize(("call", "field"), [
        (lambda ws, p: ws.posts.create(author="ana", text="x", channels=["acme-x"],
                                       planned_for=date.max), "planned_for"),
        (lambda ws, p: ws.plan(p.id, on=date.max, by="ana"), "planned_for"),
        (lambda ws, p: ws.plan(p.id, on=date(1969, 12, 31), by="ana"), "planned_for"),
        (lambda ws, p: ws.schedule(p.id, at=FAR, by="cy"), "at"),
        (lambda ws, p: ws.schedule(p.id, at=LATEST + timedelta(microseconds=1), by="cy"),
         "at"),
        (lambda ws, p: ws.suggest_slots("acme-x", after=FAR), "after"),
        (lambda ws, p: ws.calendar.ical(start=datetime(1, 1, 1, tzinfo=UTC)), "start"),
        (lambda ws, p: ws.posts.create_series(author="ana", text="x", channels=["acme-x"],
                                              rrule="FREQ=DAILY", start=FAR), "start"),
    ], ids=["create", "plan-max", "plan-min", "schedule", "just-after", "suggest", "ical",
            "series"])
    def test_refused(self, ws: postflow.Workspace, approved: Post,
                     call: Callable[..., Any], field: str) -> None:
        """The error names the field and the range; nothing stored changes."""
        before = stored_state(ws)
        with pytest.raises(postflow.ValidationFailed) as caught:
            call(ws, approved)
        problem = caught.value.problems[0]
        assert (problem.code, problem.field) == ("out-of-range", field)
        assert "2999-12-31" in str(caught.value)
        assert stored_state(ws) == before

    def test_the_edges_are_accepted(self, ws: postflow.Workspace, approved: Post,
                                    clock: FixedClock) -> None:
        """The last accepted instant and day work, and the calendar shows them."""
        post = ws.schedule(approved.id, at=LATEST, by="cy")
        assert post.scheduled_at == LATEST
        other = ws.posts.create(author="ana", text="Plan", channels=["acme-x"],
                                planned_for=LATEST.date())
        feed = ws.calendar.ical(start=clock.now(), end=None)
        assert f"post-{post.id}-acme-x@".encode() in feed
        assert f"post-{other.id}-acme-x@".encode() in feed
        assert clock.now() > EARLIEST


class TestRenderingIsRobustToWhatIsStored:
    """Data stored before the range existed never breaks a calendar."""

    def test_a_stored_far_date_is_left_out_and_logged(
            self, ws: postflow.Workspace, clock: FixedClock,
            caplog: pytest.LogCaptureFixture) -> None:
        """A post planned for date.max (written before the check) is skipped, not fatal."""
        now = clock.now()
        bad = Post(0, 1, "draft", "ana", "old", ("acme-x",), 1, now, now, now,
                   planned_for=date.max)
        stored = ws.storage.insert_post(bad, Revision(0, 1, "old", ("acme-x",), None, "ana",
                                                      now), [NewEntry("create", "ana", now,
                                                                      "legacy")])
        good = ws.posts.create(author="ana", text="Fine", channels=["acme-x"],
                               planned_for=now.date() + timedelta(days=3))
        with caplog.at_level(logging.WARNING, logger="postflow.calendar"):
            feed = ws.calendar.ical(start=now - timedelta(days=1), end=None)
        assert f"post-{good.id}-acme-x@".encode() in feed
        assert f"post-{stored.id}-acme-x@".encode() not in feed
        assert f"post {stored.id}" in caplog.text

    def test_cadence_channel_near_the_end_of_the_range(
            self, url: str, make_ws: MakeWs) -> None:
        """Cadence windows around the last day stay representable."""
        clock = FixedClock(datetime(2999, 12, 30, 9, tzinfo=UTC))
        ws = make_ws(url, clock=clock)
        add_team(ws)
        ws.channels.add("slow", network="x", cadence=postflow.Cadence(max_per_day=1))
        slots = ws.suggest_slots("slow", count=3)
        assert slots
        assert all(s.astimezone(UTC) <= LATEST for s in slots)
        post = ws.posts.create(author="ana", text="Last", channels=["slow"])
        ws.submit(post.id, by="ana")
        ws.approve(post.id, by="ben")
        ws.schedule(post.id, at=datetime(2999, 12, 31, 23, tzinfo=UTC), by="cy")
        assert b"BEGIN:VEVENT" in ws.calendar.ical(start=clock.now(), end=None)
