"""Importing postflow's own export: its events are recognised, not planned a second time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import icalendar
import pytest

import postflow
from conftest import add_team
from postflow.calendar import CalendarSettings, own_uid
from postflow.testing import FixedClock

OTHER = b"""BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//test//EN\r
BEGIN:VEVENT\r
UID:launch@acme.test\r
DTSTAMP:20300101T000000Z\r
DTSTART:20300115T160000Z\r
DTEND:20300115T170000Z\r
SUMMARY:Product launch\r
END:VEVENT\r
END:VCALENDAR\r
"""


def _scheduled(ws: postflow.Workspace, clock: FixedClock, text: str,
               channels: list[str]) -> postflow.Post:
    post = ws.posts.create(author="ana", text=text, channels=channels)
    ws.submit(post.id, by="ana")
    ws.approve(post.id, by="ben")
    return ws.schedule(post.id, at=clock.now() + timedelta(days=1), by="cy")


def _uids(data: bytes) -> list[str]:
    return [str(e["uid"]) for e in icalendar.Calendar.from_ical(data).walk("VEVENT")]


class TestOwnExportImportedBack:
    """Export, then import the export: no new planning entries."""

    def test_export_then_import_adds_nothing(
        self, ws: postflow.Workspace, clock: FixedClock
    ) -> None:
        """Posts' and planning entries' events come back as ``own``; nothing is added."""
        first = _scheduled(ws, clock, "Launch day", ["acme-x", "acme-li"])
        planned = ws.posts.create(author="ana", text="Idea", channels=["acme-x"])
        ws.plan(planned.id, on=clock.now().date() + timedelta(days=3), by="ana")
        ws.calendar.import_ical(OTHER)
        before = ws.storage.list_planning_entries()
        exported = ws.calendar.ical()
        assert len(_uids(exported)) == 4  # two channels, one planned post, one entry

        report = ws.calendar.import_ical(exported)
        assert (report.added, report.updated, report.skipped) == ((), (), ())
        assert sorted(report.own) == sorted(_uids(exported))
        assert f"post-{first.id}-acme-li@postflow.invalid" in report.own
        assert ws.storage.list_planning_entries() == before
        assert ws.calendar.ical().count(b"BEGIN:VEVENT") == 4  # no doubled events
        assert [e.action for e in ws.audit_log()].count("calendar.import") == 1

    def test_prune_keeps_entries_whose_event_came_back(
        self, ws: postflow.Workspace, clock: FixedClock
    ) -> None:
        """An imported entry exported and imported back with ``prune=True`` is kept."""
        ws.calendar.import_ical(OTHER)
        report = ws.calendar.import_ical(ws.calendar.ical(), prune=True)
        assert report.removed == ()
        assert [e.uid for e in ws.storage.list_planning_entries()] == ["launch@acme.test"]

    def test_another_domain_is_imported(
        self, make_ws: Callable[..., postflow.Workspace], clock: FixedClock
    ) -> None:
        """Another postflow's export (another calendar domain) is planned like any file."""
        theirs = make_ws("memory://", calendar=CalendarSettings(domain="other.example"))
        add_team(theirs)
        _scheduled(theirs, clock, "Their launch", ["acme-x"])
        ours = make_ws("memory://")
        add_team(ours)
        report = ours.calendar.import_ical(theirs.calendar.ical())
        assert report.added == ("post-1-acme-x@other.example",)
        assert report.own == ()


@pytest.mark.parametrize(
    ("uid", "expected"),
    [
        ("post-12-acme-x@postflow.invalid", ("post", "12-acme-x")),
        ("post-12-acme-x@POSTFLOW.invalid", ("post", "12-acme-x")),
        ("planning-0123456789abcdef01234567@postflow.invalid",
         ("planning", "0123456789abcdef01234567")),
        ("post-12-acme-x@other.example", (None, "")),
        ("post-x-acme@postflow.invalid", (None, "")),
        ("planning-short@postflow.invalid", (None, "")),
        ("launch@acme.test", (None, "")),
        ("post-1-a@b@postflow.invalid", (None, "")),
    ],
)
def test_own_uid(uid: str, expected: tuple[str | None, str]) -> None:
    """Only UIDs of the shapes postflow renders, with this domain, are its own."""
    assert own_uid(uid, "postflow.invalid") == expected
