"""Tests of the iCalendar test harness in readers.py: wire checks and both readers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from readers import icaljs as icaljs  # the fixture; the alias marks it used
from readers import (
    icaljs_ready,
    read_with_icalendar,
    read_with_icaljs,
    unfold,
    wire_problems,
)


def wire(*lines: bytes) -> bytes:
    """Join content lines with CRLF, ending with one CRLF."""
    return b"".join(line + b"\r\n" for line in lines)


BEGIN, END = b"BEGIN:VCALENDAR", b"END:VCALENDAR"

# Written by hand.  The DESCRIPTION is folded between two complete multi-byte characters
# (a CJK ideograph of 3 octets and an emoji of 4); both physical lines are 75 octets.
DESCRIPTION = "DESCRIPTION:Path C:\\\\posts\\nLine two: 発売のお知らせ\\, 日本語🎉"
CONTINUATION = " 🎉 テキスト\\; done\\, really done\\, the end of this long description."
CALENDAR = wire(
    b"BEGIN:VCALENDAR",
    b"VERSION:2.0",
    b"PRODID:-//postflow//readers test//EN",
    b"METHOD:PUBLISH",
    b"NAME:Acme social",
    b"X-WR-CALNAME:Acme social",
    b"REFRESH-INTERVAL;VALUE=DURATION:PT12H",
    b"X-PUBLISHED-TTL:PT12H",
    b"BEGIN:VEVENT",
    b"UID:post-1@postflow.test",
    b"DTSTAMP:20240501T080000Z",
    b"DTSTART:20240502T091500Z",
    b"DTEND:20240502T093000Z",
    b"LAST-MODIFIED:20240430T120000Z",
    b"SEQUENCE:2",
    b"SUMMARY:Launch\\, part 1\\; teaser",
    DESCRIPTION.encode(),
    CONTINUATION.encode(),
    b"LOCATION:acme-x",
    b"URL:https://example.org/posts/1",
    b"STATUS:CONFIRMED",
    b"CATEGORIES:launch,Q2\\, EMEA",
    b"ATTACH:https://example.org/media/1.png",
    b"ATTACH;FMTTYPE=image/png:https://example.org/media/2.png",
    b"END:VEVENT",
    b"BEGIN:VEVENT",
    b"UID:post-2@postflow.test",
    b"DTSTAMP:20240501T080000Z",
    b"DTSTART;VALUE=DATE:20240510",
    b"SUMMARY:All-day note",
    b"STATUS:TENTATIVE",
    b"CATEGORIES:notes",
    b"CATEGORIES:all-day",
    b"END:VEVENT",
    b"END:VCALENDAR",
)

EXPECTED: dict[str, Any] = {
    "calendar": {
        "version": "2.0",
        "prodid": "-//postflow//readers test//EN",
        "name": "Acme social",
        "x-wr-calname": "Acme social",
        "refresh-interval": "PT12H",
        "refresh-interval-value-param": "DURATION",
        "x-published-ttl": "PT12H",
        "method": "PUBLISH",
    },
    "events": [
        {
            "uid": "post-1@postflow.test",
            "summary": "Launch, part 1; teaser",
            "description": (
                "Path C:\\posts\nLine two: 発売のお知らせ, 日本語🎉🎉 テキスト; done,"
                " really done, the end of this long description."
            ),
            "location": "acme-x",
            "url": "https://example.org/posts/1",
            "status": "CONFIRMED",
            "sequence": 2,
            "categories": ["launch", "Q2, EMEA"],
            "attach": ["https://example.org/media/1.png", "https://example.org/media/2.png"],
            "dtstart": "2024-05-02T09:15:00Z",
            "dtend": "2024-05-02T09:30:00Z",
            "dtstamp": "2024-05-01T08:00:00Z",
            "last-modified": "2024-04-30T12:00:00Z",
            "dtstart_is_date": False,
        },
        {
            "uid": "post-2@postflow.test",
            "summary": "All-day note",
            "description": None,
            "location": None,
            "url": None,
            "status": "TENTATIVE",
            "sequence": None,
            "categories": ["notes", "all-day"],
            "attach": [],
            "dtstart": "2024-05-10",
            "dtend": "2024-05-11",
            "dtstamp": "2024-05-01T08:00:00Z",
            "last-modified": None,
            "dtstart_is_date": True,
        },
    ],
}


class TestWireProblems:
    def test_hand_written_calendar_is_clean(self) -> None:
        """A well-formed calendar, folded between whole multi-byte characters, has no problem."""
        assert len(DESCRIPTION.encode()) == len(CONTINUATION.encode()) == 75
        assert wire_problems(CALENDAR) == []

    def test_bare_lf(self) -> None:
        """A line ending in LF alone is reported with its number."""
        data = BEGIN + b"\r\nVERSION:2.0\n" + END + b"\r\n"
        assert wire_problems(data) == ["line 2: ends in a bare LF, not CRLF"]

    def test_bare_cr(self) -> None:
        """A line ending in CR alone is reported with its number."""
        data = BEGIN + b"\r\nVERSION:2.0\r" + END + b"\r\n"
        assert wire_problems(data) == ["line 2: ends in a bare CR, not CRLF"]

    def test_line_over_75_octets(self) -> None:
        """A 76-octet line is too long (75 is fine), counted in octets, not characters."""
        ok = b"SUMMARY:" + "é".encode() * 33 + b"x"
        long = b"SUMMARY:" + "é".encode() * 34
        assert (len(ok), len(long)) == (75, 76)
        assert wire_problems(wire(BEGIN, ok, long, END)) == [
            "line 3: 76 octets long, over the limit of 75 (excluding CRLF)"
        ]

    @pytest.mark.parametrize("cut", [1, 2, 3])
    def test_fold_splitting_a_character(self, cut: int) -> None:
        """A fold inside a 4-octet character is reported at the continuation line."""
        emoji = "🎉".encode()
        data = wire(BEGIN, b"SUMMARY:party " + emoji[:cut], b" " + emoji[cut:] + b"!", END)
        assert wire_problems(data) == [
            "line 3: the fold after line 2 splits a UTF-8 multi-byte character"
        ]

    def test_fold_splitting_before_continuation_bytes(self) -> None:
        """Continuation octets right after a fold's whitespace are reported as a split."""
        data = wire(BEGIN, b"SUMMARY:ab", b"\t\xa5c", END)
        assert wire_problems(data) == [
            "line 3: the fold after line 2 splits a UTF-8 multi-byte character"
        ]

    def test_invalid_utf8(self) -> None:
        """Octets that are not UTF-8 are reported with line and octet position."""
        data = wire(BEGIN, b"SUMMARY:caf\xe9 ok", END)
        assert wire_problems(data) == [
            "line 2: invalid UTF-8 at octet 12 (invalid continuation byte)"
        ]

    def test_control_characters(self) -> None:
        """Control characters other than HTAB are reported; HTAB is allowed."""
        data = wire(BEGIN, b"SUMMARY:a\tb\x01c", b"DESCRIPTION:\x7f", END)
        assert wire_problems(data) == [
            "line 2: control character 0x01 at octet 12",
            "line 3: control character 0x7F at octet 13",
        ]

    def test_missing_final_crlf(self) -> None:
        """A body whose last line has no CRLF is reported."""
        assert wire_problems(wire(BEGIN) + END) == ["line 2: the body does not end with CRLF"]

    def test_trailing_empty_line(self) -> None:
        """A body ending with two CRLFs has an empty last line."""
        assert wire_problems(wire(BEGIN, END) + b"\r\n") == [
            "line 3: empty line at the end: the body must end with exactly one CRLF"
        ]

    def test_not_starting_with_begin_vcalendar(self) -> None:
        """The first content line must be BEGIN:VCALENDAR."""
        assert wire_problems(wire(b"VERSION:2.0", BEGIN, END)) == [
            "line 1: the body does not start with BEGIN:VCALENDAR"
        ]

    def test_not_ending_with_end_vcalendar(self) -> None:
        """The last content line must be END:VCALENDAR."""
        assert wire_problems(wire(BEGIN, END, b"X-AFTER:1")) == [
            "line 3: the body does not end with END:VCALENDAR"
        ]


class TestUnfold:
    def test_logical_lines(self) -> None:
        """Folded lines are joined without the fold's whitespace and decoded."""
        lines = unfold(CALENDAR)
        assert lines[0] == "BEGIN:VCALENDAR"
        assert lines[-1] == "END:VCALENDAR"
        assert DESCRIPTION + CONTINUATION[1:] in lines
        assert len(lines) == CALENDAR.count(b"\r\n") - 1

    def test_fold_inside_a_character(self) -> None:
        """A fold that splits a character still unfolds to the whole character."""
        emoji = "🎉".encode()
        assert unfold(wire(b"SUMMARY:" + emoji[:2], b" " + emoji[2:])) == ["SUMMARY:🎉"]


class TestReadWithIcaljs:
    def test_reads_expected_values(self, icaljs: Callable[[bytes], dict[str, Any]]) -> None:
        """ical.js reads every expected value from the hand-written calendar (via the fixture)."""
        assert icaljs(CALENDAR) == EXPECTED

    def test_agrees_with_icalendar(self) -> None:
        """ical.js and icalendar read the hand-written calendar the same way."""
        icaljs_ready()
        assert read_with_icaljs(CALENDAR) == read_with_icalendar(CALENDAR)

    def test_agrees_on_zoned_and_floating_times(self) -> None:
        """A TZID with its VTIMEZONE becomes a UTC instant; a floating time keeps no zone."""
        icaljs_ready()
        data = wire(
            BEGIN,
            b"VERSION:2.0",
            b"PRODID:-//postflow//readers test//EN",
            b"BEGIN:VTIMEZONE",
            b"TZID:Europe/Berlin",
            b"BEGIN:DAYLIGHT",
            b"DTSTART:19700329T020000",
            b"RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU",
            b"TZOFFSETFROM:+0100",
            b"TZOFFSETTO:+0200",
            b"END:DAYLIGHT",
            b"BEGIN:STANDARD",
            b"DTSTART:19701025T030000",
            b"RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU",
            b"TZOFFSETFROM:+0200",
            b"TZOFFSETTO:+0100",
            b"END:STANDARD",
            b"END:VTIMEZONE",
            b"BEGIN:VEVENT",
            b"UID:zoned@postflow.test",
            b"DTSTAMP:20240101T000000Z",
            b"DTSTART;TZID=Europe/Berlin:20240701T100000",
            b"DURATION:PT45M",
            b"END:VEVENT",
            b"BEGIN:VEVENT",
            b"UID:floating@postflow.test",
            b"DTSTAMP:20240101T000000Z",
            b"DTSTART:20240701T100000",
            b"END:VEVENT",
            END,
        )
        times = [
            [(e["dtstart"], e["dtend"]) for e in read(data)["events"]]
            for read in (read_with_icaljs, read_with_icalendar)
        ]
        assert (
            times[0]
            == times[1]
            == [
                ("2024-07-01T08:00:00Z", "2024-07-01T08:45:00Z"),
                ("2024-07-01T10:00:00", "2024-07-01T10:00:00"),
            ]
        )

    @pytest.mark.parametrize(
        "data",
        [b"hello world\r\n", b"", wire(b"BEGIN:VEVENT", b"END:VEVENT"), wire(BEGIN)],
        ids=["text", "empty", "vevent", "unclosed"],
    )
    def test_error_for_non_calendar(self, data: bytes) -> None:
        """Input that is not one VCALENDAR raises AssertionError with ical.js's message."""
        icaljs_ready()
        with pytest.raises(AssertionError, match=r"^ical\.js could not read the calendar: \S"):
            read_with_icaljs(data)


class TestReadWithIcalendar:
    def test_reads_expected_values(self) -> None:
        """icalendar reads every expected value from the hand-written calendar."""
        assert read_with_icalendar(CALENDAR) == EXPECTED

    def test_error_for_non_calendar(self) -> None:
        """Input that is not a calendar raises AssertionError with icalendar's message."""
        with pytest.raises(AssertionError, match=r"^icalendar could not read the calendar: "):
            read_with_icalendar(b"hello world\r\n")


class TestIcaljsReady:
    def test_passes_when_installed(self) -> None:
        """With node and ical.js installed it returns quietly (else it skips this test)."""
        icaljs_ready()

    def test_skips_without_node_outside_ci(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """Without node on PATH and CI unset, the test is skipped with the npm command."""
        monkeypatch.setenv("PATH", str(tmp_path))
        monkeypatch.delenv("CI", raising=False)
        with pytest.raises(pytest.skip.Exception, match="npm ci --prefix tests/icaljs"):
            icaljs_ready()

    def test_fails_without_node_in_ci(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """Without node on PATH and CI=true, the test fails with the npm command."""
        monkeypatch.setenv("PATH", str(tmp_path))
        monkeypatch.setenv("CI", "true")
        with pytest.raises(pytest.fail.Exception, match="npm ci --prefix tests/icaljs"):
            icaljs_ready()
