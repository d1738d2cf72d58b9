"""Acceptance tests of ``postflow calendar`` and ``postflow feed`` (the console script)."""

from __future__ import annotations

import shutil
from pathlib import Path

import icalendar
import pytest

from test_calendar import HOLIDAYS
from test_cli import Run, _demo_dir, _run, assert_clean_error, demo_url, open_demo

pytestmark = pytest.mark.acceptance
__all__ = ["_demo_dir", "_run"]  # fixtures shared with test_cli


@pytest.fixture(name="own_demo")
def _own_demo(demo_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the demo database (these tests write to it)."""
    folder = tmp_path / "own"
    folder.mkdir()
    shutil.copy(demo_dir / "postflow-demo.db", folder / "postflow-demo.db")
    return folder


class TestCalendarExport:
    """``postflow calendar export``."""

    def test_export_matches_the_library(self, run: Run, demo_dir: Path, tmp_path: Path
                                        ) -> None:
        """The file written holds exactly the events ws.calendar.ical() renders."""
        out = tmp_path / "calendar.ics"
        done = run("calendar", "export", "--db", demo_url(demo_dir), "-o", str(out),
                   "--domain", "social.acme.test")
        assert done.returncode == 0, done.stderr
        exported = icalendar.Calendar.from_ical(out.read_bytes())
        uids = sorted(str(e["uid"]) for e in exported.walk("VEVENT"))
        assert uids
        assert all(u.endswith("@social.acme.test") for u in uids)
        with open_demo(demo_dir) as ws:
            expected = icalendar.Calendar.from_ical(ws.calendar.ical())
            assert uids == sorted(str(e["uid"]).replace("postflow.invalid", "social.acme.test")
                                  for e in expected.walk("VEVENT"))

    def test_filters_and_standard_output(self, run: Run, demo_dir: Path) -> None:
        """--channel narrows the export, which goes to standard output by default."""
        with open_demo(demo_dir) as ws:
            channel = ws.channels.list()[0].name
        done = run("calendar", "export", "--db", demo_url(demo_dir), "--channel", channel)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("BEGIN:VCALENDAR")
        for event in icalendar.Calendar.from_ical(done.stdout).walk("VEVENT"):
            assert str(event["uid"]).split("@")[0].endswith(f"-{channel}")

    @pytest.mark.parametrize(("args", "needle"), [
        (["--channel", "nope"], "no channel called 'nope'"),
        (["--from", "2030-02-01", "--to", "2030-01-01"], "must be before end"),
        (["--from", "2030-01-01T09:00"], "naive"),
    ])
    def test_bad_arguments_are_clean_errors(self, run: Run, demo_dir: Path,
                                            args: list[str], needle: str) -> None:
        """Unknown names and bad windows end in one error line, no traceback."""
        done = run("calendar", "export", "--db", demo_url(demo_dir), *args)
        assert_clean_error(done, needle)

    def test_unparsable_date_is_a_usage_error(self, run: Run, demo_dir: Path) -> None:
        """A --from that is no date at all is refused by the option parser."""
        done = run("calendar", "export", "--db", demo_url(demo_dir), "--from", "tomorrow")
        assert done.returncode == 2
        assert "is not a date" in done.stderr


class TestCalendarImport:
    """``postflow calendar import``."""

    def test_import_twice_adds_once(self, run: Run, own_demo: Path, tmp_path: Path) -> None:
        """The second import finds every entry unchanged and reports what it skipped."""
        ics = tmp_path / "holidays.ics"
        ics.write_bytes(HOLIDAYS)
        db = demo_url(own_demo)
        first = run("calendar", "import", "--db", db, str(ics))
        assert first.returncode == 0, first.stderr
        assert first.stdout.splitlines()[0] == "2 added, 0 updated, 0 unchanged, 3 skipped"
        assert "skipped event 'weekly@acme.test': recurring events are not imported" in \
            first.stdout
        second = run("calendar", "import", "--db", db, str(ics))
        assert second.stdout.splitlines()[0] == "0 added, 0 updated, 2 unchanged, 3 skipped"

    def test_not_a_calendar(self, run: Run, own_demo: Path, tmp_path: Path) -> None:
        """A file that is not iCalendar is refused and nothing is imported."""
        bad = tmp_path / "notes.txt"
        bad.write_text("just notes", encoding="utf-8")
        assert_clean_error(run("calendar", "import", "--db", demo_url(own_demo), str(bad)),
                           "not an iCalendar file")
        with open_demo(own_demo) as ws:
            assert ws.storage.list_planning_entries() == []


class TestFeedCommands:
    """``postflow feed create|list|revoke``."""

    def test_create_list_revoke(self, run: Run, own_demo: Path) -> None:
        """A created feed is listed with its filters, then as revoked."""
        db = demo_url(own_demo)
        with open_demo(own_demo) as ws:
            channel = ws.channels.list()[0].name
        created = run("feed", "create", "social", "--db", db, "--channel", channel)
        assert created.returncode == 0, created.stderr
        assert "http://127.0.0.1:8080/feeds/" in created.stdout
        listed = run("feed", "list", "--db", db)
        assert listed.stdout.strip() == f"social  active  channels={channel}"
        assert run("feed", "revoke", "social", "--db", db).returncode == 0
        assert run("feed", "list", "--db", db).stdout.strip() == \
            f"social  revoked  channels={channel}"

    def test_unknown_feed_is_a_clean_error(self, run: Run, own_demo: Path) -> None:
        """Rotating a feed that does not exist names it."""
        assert_clean_error(run("feed", "rotate", "ghost", "--db", demo_url(own_demo)),
                           "no feed called 'ghost'")
