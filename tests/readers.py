"""Check iCalendar output the way clients read it: the wire format, ical.js and icalendar.

``wire_problems`` lists RFC 5545 wire-format violations in raw bytes, ``unfold`` gives the
logical content lines, and ``read_with_icaljs`` / ``read_with_icalendar`` return what
Mozilla's ical.js and Python's icalendar understood, in one JSON shape::

    {"calendar": {"version", "prodid", "name", "x-wr-calname", "refresh-interval",
                  "refresh-interval-value-param", "x-published-ttl", "method"},
     "events": [{"uid", "summary", "description", "location", "url", "status",
                 "sequence", "categories", "attach", "dtstart", "dtend", "dtstamp",
                 "last-modified", "dtstart_is_date"}]}

Absent values are ``None``; ``categories`` and ``attach`` are lists of strings.  A
DATE-TIME is the UTC instant ``YYYY-MM-DDTHH:MM:SSZ``, a floating one (no zone, or a
TZID the reader cannot resolve) ``YYYY-MM-DDTHH:MM:SS``, a DATE ``YYYY-MM-DD``.
``dtend`` is the effective end (DTEND, else DTSTART + DURATION, else the next day for a
DATE start, else DTSTART).  ``refresh-interval`` is a duration in the canonical form
``[-]P[nD][T[nH][nM][nS]]`` (``PT0S`` for zero), or the raw text if it is not one.

ical.js runs as ``node tests/icaljs/read.mjs FILE``; install it with
``npm ci --prefix tests/icaljs``.  A test calls ``icaljs_ready()`` first, or requests the
``icaljs`` fixture, which gives it ``read_with_icaljs``; import the fixture as
``from readers import icaljs as icaljs`` (the redundant alias keeps ruff's F401/F811 quiet).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import icalendar
import pytest

ICALJS_DIR = Path(__file__).resolve().parent / "icaljs"
MAX_OCTETS = 75

_CONTROLS = frozenset([*range(0x09), *range(0x0A, 0x20), 0x7F])


# --- wire format ------------------------------------------------------------------------


def _physical_lines(data: bytes) -> list[tuple[bytes, bytes]]:
    """Split into (content, terminator) pairs; a terminator is CRLF, bare LF, bare CR or b""."""
    lines: list[tuple[bytes, bytes]] = []
    start = i = 0
    while i < len(data):
        byte = data[i]
        if byte == 0x0D and data[i + 1 : i + 2] == b"\n":
            lines.append((data[start:i], b"\r\n"))
            i += 2
            start = i
        elif byte in (0x0A, 0x0D):
            lines.append((data[start:i], data[i : i + 1]))
            i += 1
            start = i
        else:
            i += 1
    if start < len(data):
        lines.append((data[start:], b""))
    return lines


def _is_fold(content: bytes) -> bool:
    return content[:1] in (b" ", b"\t")


def _unfinished_tail(content: bytes) -> int:
    """How many bytes at the end of ``content`` start a UTF-8 sequence they do not finish."""
    back = 0
    while back < min(3, len(content)) and 0x80 <= content[-1 - back] <= 0xBF:
        back += 1
    if back == len(content):
        return 0
    lead = content[-1 - back]
    need = 2 if 0xC0 <= lead <= 0xDF else 3 if 0xE0 <= lead <= 0xEF else 4 if lead >= 0xF0 else 1
    return back + 1 if back + 1 < need else 0


def _continuation_head(content: bytes) -> int:
    """How many UTF-8 continuation bytes follow a fold line's leading whitespace."""
    count = 0
    while 1 + count < len(content) and 0x80 <= content[1 + count] <= 0xBF:
        count += 1
    return count


def wire_problems(data: bytes) -> list[str]:
    """Every RFC 5545 wire-format violation in ``data``, each naming its line; [] if none."""
    lines = _physical_lines(data)
    problems: list[str] = []
    if not lines:
        return ["the body is empty: it must start with BEGIN:VCALENDAR"]
    for index, (content, end) in enumerate(lines):
        number = index + 1
        nxt = lines[index + 1][0] if index + 1 < len(lines) else None
        if end == b"\n":
            problems.append(f"line {number}: ends in a bare LF, not CRLF")
        elif end == b"\r":
            problems.append(f"line {number}: ends in a bare CR, not CRLF")
        elif end == b"" and content:
            problems.append(f"line {number}: the body does not end with CRLF")
        if len(content) > MAX_OCTETS:
            problems.append(
                f"line {number}: {len(content)} octets long, over the limit of {MAX_OCTETS} "
                "(excluding CRLF)"
            )
        if not content:
            where = "at the end: the body must end with exactly one CRLF" if nxt is None else ""
            problems.append(f"line {number}: empty line {where}".rstrip())
        for column, byte in enumerate(content, start=1):
            if byte in _CONTROLS:
                problems.append(f"line {number}: control character 0x{byte:02X} at octet {column}")
        # UTF-8: a fold may not split a character; anything else undecodable is invalid.
        tail = _unfinished_tail(content) if nxt is not None and _is_fold(nxt) else 0
        head = _continuation_head(content) if index > 0 and _is_fold(content) else 0
        if tail or (nxt is not None and _is_fold(nxt) and _continuation_head(nxt)):
            problems.append(
                f"line {number + 1}: the fold after line {number} splits a UTF-8 "
                "multi-byte character"
            )
        begin = 1 + head if head else 0
        try:
            content[begin : len(content) - tail].decode("utf-8")
        except UnicodeDecodeError as error:
            octet = begin + error.start + 1
            problems.append(f"line {number}: invalid UTF-8 at octet {octet} ({error.reason})")
    logical = _logical_lines(lines)
    first = logical[0][1].upper()
    if first != b"BEGIN:VCALENDAR":
        problems.append("line 1: the body does not start with BEGIN:VCALENDAR")
    last_number, last = next(((n, c) for n, c in reversed(logical) if c), (1, b""))
    if last.upper() != b"END:VCALENDAR":
        problems.append(f"line {last_number}: the body does not end with END:VCALENDAR")
    return problems


def _logical_lines(lines: list[tuple[bytes, bytes]]) -> list[tuple[int, bytes]]:
    """Unfold physical lines into (first line number, bytes) pairs."""
    logical: list[tuple[int, bytes]] = []
    for index, (content, _end) in enumerate(lines):
        if logical and _is_fold(content):
            number, joined = logical[-1]
            logical[-1] = (number, joined + content[1:])
        else:
            logical.append((index + 1, content))
    return logical


def unfold(data: bytes) -> list[str]:
    """The logical content lines of ``data``: unfolded, then decoded as UTF-8 (strictly)."""
    return [content.decode("utf-8") for _n, content in _logical_lines(_physical_lines(data))]


# --- shared formatting ------------------------------------------------------------------


def _format_time(value: object) -> str | None:
    """A date as YYYY-MM-DD, an aware datetime as its UTC instant, a naive one as floating."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            return value.strftime("%Y-%m-%dT%H:%M:%S")
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"not a date or date-time: {value!r}")


def _format_duration(seconds: int) -> str:
    """The canonical form ``[-]P[nD][T[nH][nM][nS]]`` (``PT0S`` for zero); read.mjs agrees."""
    if seconds == 0:
        return "PT0S"
    sign = "-" if seconds < 0 else ""
    days, rest = divmod(abs(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = "".join(f"{n}{unit}" for n, unit in ((hours, "H"), (minutes, "M"), (secs, "S")) if n)
    return f"{sign}P{f'{days}D' if days else ''}{f'T{clock}' if clock else ''}"


# --- ical.js ----------------------------------------------------------------------------


def icaljs_ready() -> None:
    """Skip the calling test (fail it when CI=true) unless node and ical.js are installed."""
    reason = None
    if shutil.which("node") is None:
        reason = "node is not on PATH"
    elif not (ICALJS_DIR / "node_modules" / "ical.js").is_dir():
        reason = f"ical.js is not installed in {ICALJS_DIR}"
    if reason is None:
        return
    message = f"{reason}: run `npm ci --prefix tests/icaljs` (needs node and npm)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def icaljs() -> Callable[[bytes], dict[str, Any]]:
    """Require ical.js (see ``icaljs_ready``) and give the test ``read_with_icaljs``."""
    icaljs_ready()
    return read_with_icaljs


def read_with_icaljs(data: bytes) -> dict[str, Any]:
    """What ical.js reads from ``data``; AssertionError with its message if it cannot."""
    node = shutil.which("node")
    assert node is not None, "node is not on PATH"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "calendar.ics"
        path.write_bytes(data)
        proc = subprocess.run(
            [node, str(ICALJS_DIR / "read.mjs"), str(path)],
            capture_output=True,
            check=False,
            timeout=60,
        )
    try:
        result: dict[str, Any] = json.loads(proc.stdout)
    except json.JSONDecodeError:
        stderr = proc.stderr.decode(errors="replace")
        raise AssertionError(f"read.mjs exited {proc.returncode} without JSON: {stderr}") from None
    if "error" in result or proc.returncode != 0:
        raise AssertionError(f"ical.js could not read the calendar: {result.get('error')}")
    return result


# --- icalendar --------------------------------------------------------------------------


def _all(component: icalendar.cal.Component, name: str) -> list[Any]:
    value = component.get(name)
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _first(component: icalendar.cal.Component, name: str) -> Any:
    values = _all(component, name)
    return values[0] if values else None


def _text(component: icalendar.cal.Component, name: str) -> str | None:
    value = _first(component, name)
    return None if value is None else str(value)


def _time(component: icalendar.cal.Component, name: str) -> Any:
    """The first value's ``dt``: a datetime, date or timedelta; None when absent."""
    value = _first(component, name)
    return None if value is None else value.dt


def _refresh_interval(value: Any) -> str | None:
    if value is None:
        return None
    duration = getattr(value, "dt", value)
    if not isinstance(duration, timedelta):
        return str(value)
    return _format_duration(int(duration.total_seconds()))


def _end(event: icalendar.cal.Component, start: date | datetime | None) -> str | None:
    """The effective end, as ical.js's ``Event.endDate`` computes it."""
    if start is None:
        return None
    end = _time(event, "DTEND")
    if end is None:
        duration = _time(event, "DURATION")
        if isinstance(duration, timedelta):
            end = start + duration
        elif not isinstance(start, datetime):
            end = start + timedelta(days=1)
        else:
            end = start
    return _format_time(end)


def _attach(value: Any) -> str:
    """A URI as is, inline binary as its base64 text (as ical.js gives both)."""
    if isinstance(value, icalendar.vBinary):
        encoded: Any = value.to_ical()  # its stubs' "bytes" is the attribute vBinary.bytes
        return str(encoded.decode("ascii"))
    return str(value)


def _read_event(event: icalendar.cal.Component) -> dict[str, Any]:
    start = _time(event, "DTSTART")
    sequence = _first(event, "SEQUENCE")
    return {
        "uid": _text(event, "UID"),
        "summary": _text(event, "SUMMARY"),
        "description": _text(event, "DESCRIPTION"),
        "location": _text(event, "LOCATION"),
        "url": _text(event, "URL"),
        "status": _text(event, "STATUS"),
        "sequence": None if sequence is None else int(sequence),
        "categories": [str(cat) for prop in _all(event, "CATEGORIES") for cat in prop.cats],
        "attach": [_attach(value) for value in _all(event, "ATTACH")],
        "dtstart": _format_time(start),
        "dtend": _end(event, start),
        "dtstamp": _format_time(_time(event, "DTSTAMP")),
        "last-modified": _format_time(_time(event, "LAST-MODIFIED")),
        "dtstart_is_date": start is not None and not isinstance(start, datetime),
    }


def read_with_icalendar(data: bytes) -> dict[str, Any]:
    """What Python's icalendar reads from ``data``, in ``read_with_icaljs``'s shape."""
    try:
        calendar = icalendar.Calendar.from_ical(data)
    except ValueError as error:
        raise AssertionError(f"icalendar could not read the calendar: {error}") from None
    if calendar.name != "VCALENDAR":
        raise AssertionError(f"icalendar read a {calendar.name}, not a VCALENDAR")
    refresh = _first(calendar, "REFRESH-INTERVAL")
    value_param = None if refresh is None else getattr(refresh, "params", {}).get("VALUE")
    return {
        "calendar": {
            "version": _text(calendar, "VERSION"),
            "prodid": _text(calendar, "PRODID"),
            "name": _text(calendar, "NAME"),
            "x-wr-calname": _text(calendar, "X-WR-CALNAME"),
            "refresh-interval": _refresh_interval(refresh),
            "refresh-interval-value-param": None if value_param is None else str(value_param),
            "x-published-ttl": _text(calendar, "X-PUBLISHED-TTL"),
            "method": _text(calendar, "METHOD"),
        },
        "events": [_read_event(event) for event in calendar.walk("VEVENT")],
    }
