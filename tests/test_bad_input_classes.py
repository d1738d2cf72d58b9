"""Classes of bad input, each refused at its root on every backend.

Strings (lone surrogates, control and invisible characters, trailing newlines in names),
numbers and ids (too large, bools and floats), types (filters, pauses, slot searches,
audit pages, settings, ``postflow.open``) and lengths (a documented limit per field).
Each case asserts the exact error class, a message naming the field or rule, and that
nothing stored changed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import postflow
from postflow._fields import LIMITS, MAX_ID
from postflow.calendar import CalendarSettings
from postflow.publishing import PublishingSettings, RetryPolicy
from postflow.testing import FixedClock
from test_bad_input import _bad_ws, in_review, snapshot  # noqa: F401  (a fixture)

Workspace = postflow.Workspace
Call = Callable[[Workspace, postflow.Post], object]

SURROGATE = "caf\ud800"
ZERO_WIDTH = "\u200b\u200d\ufeff"


def ics(*events: str) -> str:
    """An iCalendar document with ``events`` (each the lines inside a VEVENT)."""
    body = "".join(f"BEGIN:VEVENT\r\n{e}END:VEVENT\r\n" for e in events)
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\n{body}END:VCALENDAR\r\n"


def nested(depth: int) -> list[Any]:
    """A list ``depth`` lists deep."""
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


ONE_EVENT = ics("UID:a@example.org\r\nSUMMARY:Launch\r\nDTSTART:20300101T090000Z\r\n")

STRINGS: list[Any] = [
    pytest.param(lambda ws, p: ws.posts.create(author="ana", text=SURROGATE,
                                               channels=["acme-x"]),
                 ["text", "surrogate"], id="surrogate-text"),
    pytest.param(lambda ws, p: ws.posts.create(author="ana", text=ZERO_WIDTH + "\x0b\x00",
                                               channels=["acme-x"]),
                 ["text is empty"], id="control-and-zero-width-text"),
    pytest.param(lambda ws, p: ws.posts.create(author="ana", text=ZERO_WIDTH,
                                               channels=["acme-x"]),
                 ["text is empty"], id="zero-width-only-text"),
    pytest.param(lambda ws, p: ws.comment(p.id, by="ben", text="\u200b \u2028"),
                 ["comment is empty"], id="invisible-comment"),
    pytest.param(lambda ws, p: ws.comment(p.id, by="ben", text=SURROGATE),
                 ["comment", "surrogate"], id="surrogate-comment"),
    pytest.param(lambda ws, p: ws.submit(p.id, by="ana", comment=SURROGATE),
                 ["comment", "surrogate"], id="surrogate-trigger-comment"),
    pytest.param(lambda ws, p: ws.team.add("zoe\n", roles={"author"}),
                 ["'zoe\\n' is not a valid name"], id="name-trailing-newline"),
    pytest.param(lambda ws, p: ws.channels.add("acme-y\n", network="x"),
                 ["not a valid name"], id="channel-trailing-newline"),
    pytest.param(lambda ws, p: ws.team.add("zoe", roles={"author"},
                                           email="z@example.org\r\nBcc: all@example.org"),
                 ["email", "control character"], id="email-header-injection"),
    pytest.param(lambda ws, p: ws.channels.add("acme-y", network="x", handle="@a\nb"),
                 ["handle", "control character"], id="handle-newline"),
    pytest.param(lambda ws, p: ws.campaigns.add("fall", hashtags=["#ok\n"]),
                 ["hashtags", "control character"], id="hashtag-newline"),
    pytest.param(lambda ws, p: ws.campaigns.add("fall", hashtags=["#\u200b"]),
                 ["hashtag is empty"], id="hashtag-invisible"),
    pytest.param(lambda ws, p: ws.pause(by="cy", reason="\u200b\u200b"),
                 ["needs a reason"], id="invisible-pause-reason"),
    pytest.param(lambda ws, p: ws.edit(p.id, by="ana", text="new", comment=SURROGATE),
                 ["comment", "surrogate"], id="surrogate-edit-comment"),
    pytest.param(lambda ws, p: ws.channels.add("acme-y", network="x" + SURROGATE),
                 ["network", "surrogate"], id="surrogate-network"),
    pytest.param(lambda ws, p: ws.channels.add("acme-y", network="x\n"),
                 ["network", "control character"], id="network-newline"),
    pytest.param(lambda ws, p: ws.channels.add("acme-y", network="x", publisher="webhook",
                                               settings={"url": "http://a\r\nX: y"}),
                 ["url", "control character"], id="setting-newline"),
    pytest.param(lambda ws, p: ws.publish_due(worker="w\n"),
                 ["worker", "control character"], id="worker-newline"),
    pytest.param(lambda ws, p: ws.publish_due(worker=SURROGATE),
                 ["worker", "surrogate"], id="worker-surrogate"),
    pytest.param(lambda ws, p: ws.fire(p.id, "submit", by="ana", note=SURROGATE),
                 ["note", "surrogate"], id="fire-data-surrogate"),
    pytest.param(lambda ws, p: ws.fire(p.id, "submit", by="ana",
                                       info={"refs": ["ok", SURROGATE]}),
                 ["info", "surrogate"], id="fire-data-nested-surrogate"),
    pytest.param(lambda ws, p: ws.fire(p.id, "submit", by="ana", info={"a\n": 1}),
                 ["info", "control character"], id="fire-data-key-newline"),
    pytest.param(lambda ws, p: ws.fire(p.id, "submit", by="ana", info={(1, 2): "x"}),
                 ["info", "keys must be text"], id="fire-data-key-tuple"),
    pytest.param(lambda ws, p: ws.publish(p.id, by="cy", comment=SURROGATE),
                 ["comment", "surrogate"], id="publish-now-comment-surrogate"),
    pytest.param(lambda ws, p: ws.calendar.import_ical(ONE_EVENT, category="a\nb"),
                 ["category", "control character"], id="import-category-newline"),
    pytest.param(lambda ws, p: ws.changes.pending("outbox\n"), ["consumer"],
                 id="consumer-trailing-newline"),
]

LENGTHS: list[Any] = [
    pytest.param(lambda ws, p: ws.posts.create(author="ana", text="a" * (LIMITS["text"] + 1),
                                               channels=["acme-x"]),
                 ["text is 50,001 characters", "limit is 50,000"], id="text"),
    pytest.param(lambda ws, p: ws.edit(p.id, by="ana", text="a" * 10_000_000),
                 ["text is 10,000,000 characters"], id="ten-megabyte-edit"),
    pytest.param(lambda ws, p: ws.comment(p.id, by="ben", text="a" * 10_001),
                 ["comment", "limit is 10,000"], id="comment"),
    pytest.param(lambda ws, p: ws.channels.add("c" * 101, network="x"),
                 ["not a valid name"], id="channel-name"),
    pytest.param(lambda ws, p: ws.team.add("m" * 10_000_000, roles={"author"}),
                 ["not a valid name"], id="ten-megabyte-name"),
    pytest.param(lambda ws, p: ws.posts.create(author="ana", text="x", channels=["acme-x"],
                                               media=["https://m.example/a"] * 101),
                 ["media", "limit is 100"], id="media-count"),
    pytest.param(lambda ws, p: ws.posts.create(
        author="ana", text="x", channels=["acme-x"],
        media=["https://m.example/" + "a" * 3000]), ["media", "over the limit of 2048"],
        id="media-url"),
    pytest.param(lambda ws, p: ws.campaigns.add("fall", goal="g" * 2001),
                 ["goal", "limit is 2,000"], id="goal"),
    pytest.param(lambda ws, p: ws.pause(by="cy", reason="r" * 1001),
                 ["reason", "limit is 1,000"], id="pause-reason"),
    pytest.param(lambda ws, p: ws.publish_due(worker="w" * 10_000_000),
                 ["worker", "limit is 100"], id="ten-megabyte-worker"),
    pytest.param(lambda ws, p: ws.fire(p.id, "submit", by="ana", note="n" * 10_000_000),
                 ["note", "limit is 50,000"], id="ten-megabyte-fire-data"),
    pytest.param(lambda ws, p: ws.publish(p.id, by="cy", comment="c" * 10_001),
                 ["comment", "limit is 10,000"], id="publish-now-comment"),
    pytest.param(lambda ws, p: ws.calendar.import_ical(ONE_EVENT, category="c" * 101),
                 ["category", "limit is 100"], id="import-category"),
    pytest.param(lambda ws, p: ws.channels.add("acme-y", network="x",
                                               timezone="a" * 10_000_000),
                 ["timezone", "unknown time zone"], id="ten-megabyte-timezone"),
]

IDS: list[Any] = [
    pytest.param(lambda ws, p: ws.submit(p.id, by=SURROGATE), postflow.PermissionDenied,
                 ["not a member"], id="surrogate-member"),
    pytest.param(lambda ws, p: ws.channels.get(SURROGATE), postflow.NotFound,
                 ["no channel"], id="surrogate-channel-lookup"),
    pytest.param(lambda ws, p: ws.feeds.get(SURROGATE), postflow.NotFound,
                 ["no feed"], id="surrogate-feed-lookup"),
    pytest.param(lambda ws, p: ws.submit(2**63, by="ana"), postflow.NotFound, ["post"],
                 id="id-2**63"),
    pytest.param(lambda ws, p: ws.submit(MAX_ID + 10**6, by="ana"), postflow.NotFound,
                 ["does not exist"], id="id-huge"),
    pytest.param(lambda ws, p: ws.posts.get(2**64), postflow.NotFound, ["post"],
                 id="get-2**64"),
    pytest.param(lambda ws, p: ws.history(-1), postflow.NotFound, ["post"], id="id-negative"),
    pytest.param(lambda ws, p: ws.submit(True, by="ana"), postflow.NotFound, ["True"],
                 id="id-true"),
    pytest.param(lambda ws, p: ws.submit(1.0, by="ana"), postflow.NotFound, ["1.0"],
                 id="id-float"),
    pytest.param(lambda ws, p: ws.edit(True, by="ana", text="x"), postflow.NotFound,
                 ["True"], id="edit-id-true"),
    pytest.param(lambda ws, p: ws.resolve_delivery(p.id, ["x"], by="cy", published=True),
                 postflow.NotFound, ["no unconfirmed delivery"], id="resolve-channel-list"),
]

TYPES: list[Any] = [
    pytest.param(lambda ws, p: ws.posts.list(channel=5), postflow.ValidationFailed,
                 ["channel must be a name"], id="list-channel-int"),
    pytest.param(lambda ws, p: ws.posts.list(state=5), postflow.ValidationFailed,
                 ["state"], id="list-state-int"),
    pytest.param(lambda ws, p: ws.posts.list(limit=True), postflow.ValidationFailed,
                 ["limit"], id="list-limit-bool"),
    pytest.param(lambda ws, p: ws.pause(by="cy", reason="x", channels=5),
                 postflow.ValidationFailed, ["channels"], id="pause-channels-int"),
    pytest.param(lambda ws, p: ws.pause(by="cy", reason="x", channels="acme-x,acme-li"),
                 postflow.ValidationFailed, ["no channel called 'acme-x,acme-li'"],
                 id="pause-channels-string"),
    pytest.param(lambda ws, p: ws.suggest_slots("acme-x", count=True),
                 postflow.ValidationFailed, ["count"], id="slots-count-bool"),
    pytest.param(lambda ws, p: ws.suggest_slots("acme-x", count=10**9),
                 postflow.ValidationFailed, ["count"], id="slots-count-huge"),
    pytest.param(lambda ws, p: ws.suggest_slots("acme-x", step=timedelta(microseconds=1)),
                 postflow.ValidationFailed, ["step"], id="slots-step-tiny"),
    pytest.param(lambda ws, p: ws.suggest_slots("acme-x", step=15),
                 postflow.ValidationFailed, ["step"], id="slots-step-int"),
    pytest.param(lambda ws, p: ws.audit_log(limit=-1), postflow.ValidationFailed,
                 ["limit"], id="audit-limit-negative"),
    pytest.param(lambda ws, p: ws.audit_log(after_id="x"), postflow.ValidationFailed,
                 ["after_id"], id="audit-after-id-text"),
    pytest.param(lambda ws, p: ws.audit_log(limit=2.5), postflow.ValidationFailed,
                 ["limit"], id="audit-limit-float"),
    # ints a backend cannot bind
    pytest.param(lambda ws, p: ws.audit_log(after_id=2**63), postflow.ValidationFailed,
                 ["after_id"], id="audit-after-id-2**63"),
    pytest.param(lambda ws, p: ws.audit_log(limit=2**63), postflow.ValidationFailed,
                 ["limit"], id="audit-limit-2**63"),
    pytest.param(lambda ws, p: ws.changes.pending("outbox", limit=2**63),
                 postflow.ValidationFailed, ["limit"], id="pending-limit-2**63"),
    pytest.param(lambda ws, p: ws.publish_due(limit=2**63), postflow.ValidationFailed,
                 ["limit"], id="publish-due-limit-2**63"),
    # the worker's arguments
    pytest.param(lambda ws, p: ws.publish_due(worker=5), postflow.ValidationFailed,
                 ["worker must be text"], id="worker-int"),
    pytest.param(lambda ws, p: ws.publish_due(stop="x"), postflow.ValidationFailed,
                 ["stop must be None or a function"], id="stop-text"),
    # names where a list or a number came
    pytest.param(lambda ws, p: ws.approvals(member=["x"]), postflow.ValidationFailed,
                 ["member must be a name"], id="approvals-member-list"),
    pytest.param(lambda ws, p: ws.fire(p.id, ["x"], by="ana"), postflow.ValidationFailed,
                 ["trigger must be a name"], id="fire-trigger-list"),
    pytest.param(lambda ws, p: ws.feeds.create("f", authors=5), postflow.ValidationFailed,
                 ["authors"], id="feed-authors-int"),
    pytest.param(lambda ws, p: ws.feeds.create("f", channels=5), postflow.ValidationFailed,
                 ["channels"], id="feed-channels-int"),
    pytest.param(lambda ws, p: ws.feeds.create("f", states=[None]),
                 postflow.ValidationFailed, ["states"], id="feed-states-none"),
    pytest.param(lambda ws, p: ws.calendar.import_ical(ONE_EVENT, category=5),
                 postflow.ValidationFailed, ["category must be text"], id="import-category-int"),
    pytest.param(lambda ws, p: ws.fire(p.id, "submit", by="ana", info=nested(10_000)),
                 postflow.ValidationFailed, ["info", "too-deep"], id="fire-data-too-deep"),
    pytest.param(lambda ws, p: ws.changes.acknowledge("outbox", None),
                 postflow.ValidationFailed, ["entries"], id="acknowledge-none"),
    pytest.param(lambda ws, p: ws.changes.acknowledge("outbox", [1, 2]),
                 postflow.ValidationFailed, ["entries"], id="acknowledge-ints"),
    # versions are ints: True is not version 1, 3.0 is not version 3
    pytest.param(lambda ws, p: ws.submit(p.id, by="ana", expected_version=float(p.version)),
                 postflow.ValidationFailed, ["expected_version"], id="version-float"),
    pytest.param(lambda ws, p: ws.team.update("ana", email="a@example.org",
                                              expected_version=True),
                 postflow.ValidationFailed, ["expected_version"], id="team-version-true"),
    pytest.param(lambda ws, p: ws.channels.update("acme-x", handle="@b",
                                                  expected_version=1.0),
                 postflow.ValidationFailed, ["expected_version"], id="channel-version-float"),
    # yes/no flags are bools
    pytest.param(lambda ws, p: ws.feeds.create("f", planning="no"),
                 postflow.ValidationFailed, ["bad-planning"], id="feed-planning-text"),
    pytest.param(lambda ws, p: ws.calendar.ical(planning="no"), postflow.ValidationFailed,
                 ["bad-planning"], id="ical-planning-text"),
    pytest.param(lambda ws, p: ws.calendar.import_ical(ONE_EVENT, prune="no"),
                 postflow.ValidationFailed, ["bad-prune"], id="import-prune-text"),
    pytest.param(lambda ws, p: ws.team.update("ana", active="no"),
                 postflow.ValidationFailed, ["bad-active"], id="team-active-text"),
    pytest.param(lambda ws, p: ws.channels.update("acme-x", active=0),
                 postflow.ValidationFailed, ["bad-active"], id="channel-active-int"),
    pytest.param(lambda ws, p: ws.rekey(by="dee", moved="no"), postflow.ValidationFailed,
                 ["bad-moved"], id="rekey-moved-text"),
    pytest.param(lambda ws, p: ws.approvals(overdue="no"), postflow.ValidationFailed,
                 ["bad-overdue"], id="approvals-overdue-text"),
    pytest.param(lambda ws, p: ws.scheduling.list_series(ended="1"),
                 postflow.ValidationFailed, ["bad-ended"], id="list-series-ended-text"),
]

SETTINGS: list[Any] = [
    pytest.param(lambda: CalendarSettings(event_minutes=True), ["event_minutes", "int"],
                 id="calendar-bool-minutes"),
    pytest.param(lambda: CalendarSettings(past_days="30"), ["past_days"],
                 id="calendar-text-days"),
    pytest.param(lambda: RetryPolicy(max_attempts="5"), ["max_attempts"],
                 id="retry-text-attempts"),
    pytest.param(lambda: RetryPolicy(first_delay="soon"), ["first_delay"],
                 id="retry-text-delay"),
    pytest.param(lambda: PublishingSettings(lease=300), ["lease", "timedelta"],
                 id="publishing-int-lease"),
    pytest.param(lambda: PublishingSettings(retry={"max_attempts": 3}), ["retry"],
                 id="publishing-dict-retry"),
    pytest.param(lambda: postflow.open(5), ["url must be a str"], id="open-url-int"),
    pytest.param(lambda: postflow.open("memory://", workflow="default.toml"),
                 ["workflow must be a Workflow"], id="open-workflow-text"),
    pytest.param(lambda: postflow.open("memory://", plugins="myplugin"),
                 ["plugins must be a list"], id="open-plugins-text"),
    pytest.param(lambda: postflow.open("memory://", clock="now"), ["clock"],
                 id="open-clock-text"),
    pytest.param(lambda: postflow.open("memory://", calendar={"name": "x"}),
                 ["calendar must be a CalendarSettings"], id="open-calendar-dict"),
    pytest.param(lambda: postflow.open("sqlite:///nowhere/a\ud800.db"),
                 ["nowhere", "lone surrogate"], id="open-sqlite-surrogate-path"),
    pytest.param(lambda: postflow.open("sqlite:///nowhere/a\x00.db"),
                 ["nowhere", "NUL"], id="open-sqlite-nul-path"),
]


@pytest.fixture(name="post")
def _post(bad_ws: Workspace, clock: FixedClock, tmp_path: Path) -> postflow.Post:
    post = in_review(bad_ws, clock, tmp_path)
    return bad_ws.withdraw(post.id, by="ana")  # a draft with a trail


def refused(ws: Workspace, post: postflow.Post, call: Call,
            error: type[postflow.PostflowError], words: list[str]) -> None:
    """``call`` raises ``error`` naming ``words``; nothing stored changes."""
    before = snapshot(ws, post)
    with pytest.raises(error) as caught:
        call(ws, post)
    for word in words:
        assert word in str(caught.value)
    assert snapshot(ws, post) == before


class TestStrings:
    """Text postflow could not store or show is refused, on every backend alike."""

    @pytest.mark.parametrize(("call", "words"), STRINGS)
    def test_refused(self, bad_ws: Workspace, post: postflow.Post, call: Call,
                     words: list[str]) -> None:
        """A ValidationFailed naming the field; nothing stored changes."""
        refused(bad_ws, post, call, postflow.ValidationFailed, words)


class TestLengths:
    """Every field has a documented limit."""

    @pytest.mark.parametrize(("call", "words"), LENGTHS)
    def test_refused(self, bad_ws: Workspace, post: postflow.Post, call: Call,
                     words: list[str]) -> None:
        """A ValidationFailed naming the field and its limit; nothing stored changes."""
        refused(bad_ws, post, call, postflow.ValidationFailed, words)

    def test_the_limits_themselves_are_accepted(self, bad_ws: Workspace) -> None:
        """Exactly at the limit is fine."""
        post = bad_ws.posts.create(author="ana", text="a" * LIMITS["text"],
                                   channels=["acme-x"])
        assert len(bad_ws.posts.get(post.id).text) == LIMITS["text"]
        bad_ws.channels.add("c" * LIMITS["name"], network="x")


class TestIds:
    """Only ints a backend can hold are ids; bools and floats are not post 1."""

    @pytest.mark.parametrize(("call", "error", "words"), IDS)
    def test_refused(self, bad_ws: Workspace, post: postflow.Post, call: Call,
                     error: type[postflow.PostflowError], words: list[str]) -> None:
        """NotFound (the same on every backend), nothing stored changes."""
        assert post.id == 1
        refused(bad_ws, post, call, error, words)


class TestTypes:
    """Wrong types are a ValidationFailed or ConfigError naming the argument."""

    @pytest.mark.parametrize(("call", "error", "words"), TYPES)
    def test_refused(self, bad_ws: Workspace, post: postflow.Post, call: Call,
                     error: type[postflow.PostflowError], words: list[str]) -> None:
        """The specific error; nothing stored changes."""
        refused(bad_ws, post, call, error, words)

    @pytest.mark.parametrize(("make", "words"), SETTINGS)
    def test_settings_and_open(self, make: Callable[[], object], words: list[str]) -> None:
        """Settings classes and postflow.open check their argument types."""
        with pytest.raises(postflow.ConfigError) as caught:
            make()
        for word in words:
            assert word in str(caught.value)

    def test_audit_pages_agree_on_every_backend(self, bad_ws: Workspace) -> None:
        """The storage contract refuses the same pages on every backend."""
        for after_id, limit in ((-1, None), (0, -1), ("x", None), (0, True)):
            with pytest.raises(ValueError, match=r"after_id|limit"):
                bad_ws.storage.audit_log(after_id=after_id, limit=limit)
        assert bad_ws.storage.audit_log(limit=0) == []


class TestStatefulCalls:
    """Bad input to calls that need more than a draft: a post in review, a series."""

    def test_invisible_change_request_comment(self, bad_ws: Workspace,
                                              post: postflow.Post) -> None:
        """A comment-required trigger needs a comment one can see (not zero-width)."""
        bad_ws.submit(post.id, by="ana")
        refused(bad_ws, post, lambda ws, p: ws.request_changes(
            p.id, by="ben", comment="\u200b\u200b"), postflow.ValidationFailed,
            ["comment-required"])

    @pytest.mark.parametrize("series_id", [True, 1.0])
    def test_series_ids_are_ints(self, bad_ws: Workspace, post: postflow.Post,
                                 clock: FixedClock, series_id: object) -> None:
        """``True`` and ``1.0`` are not series 1, when getting or ending it."""
        series, _ = bad_ws.posts.create_series(
            author="ana", text="Tip", channels=["acme-x"], rrule="FREQ=WEEKLY",
            start=clock.now() + timedelta(days=1), ahead=timedelta(days=1))
        assert series.id == 1
        refused(bad_ws, post, lambda ws, p: ws.scheduling.get_series(series_id),
                postflow.NotFound, [f"series {series_id!r}"])
        refused(bad_ws, post, lambda ws, p: ws.scheduling.end_series(series_id, by="cy"),
                postflow.NotFound, [f"series {series_id!r}"])
        refused(bad_ws, post, lambda ws, p: ws.scheduling.end_series(
            1, by="cy", expected_version=True), postflow.ValidationFailed,
            ["expected_version"])


class TestCalendarImportSkips:
    """Events postflow could not store alike on every backend are skipped and reported,
    never stored on one backend and refused on another."""

    def test_unstorable_events_are_reported(self, bad_ws: Workspace) -> None:
        """Surrogates in a UID, huge fields and times outside 1970..2999 are reported
        skips (a surrogate in a summary is cleaned away, as control characters are)."""
        start = "DTSTART:20300101T090000Z\r\n"
        data = ics(
            "UID:good@example.org\r\nSUMMARY:Launch\r\n" + start,
            f"UID:s{SURROGATE}@example.org\r\nSUMMARY:x\r\n" + start,
            "UID:" + "u" * 300 + "\r\nSUMMARY:x\r\n" + start,
            f"UID:sum@example.org\r\nSUMMARY:{SURROGATE}\r\n" + start,
            "UID:big@example.org\r\nSUMMARY:x\r\nDESCRIPTION:" + "d" * 60_000 + "\r\n"
            + start,
            "UID:old@example.org\r\nSUMMARY:x\r\nDTSTART:19000101T090000Z\r\n",
            "UID:late@example.org\r\nSUMMARY:x\r\nDTSTART;VALUE=DATE:30000101\r\n",
            "UID:last@example.org\r\nSUMMARY:x\r\nDTSTART;VALUE=DATE:29991231\r\n")
        report = bad_ws.calendar.import_ical(data)
        assert report.added == ("good@example.org", "sum@example.org", "last@example.org")
        reasons = dict(report.skipped)
        assert len(report.skipped) == 5
        assert "lone surrogate" in reasons["event 2"]
        assert "UID" in reasons["event 3"]
        assert "limit is 255" in reasons["event 3"]
        assert "DESCRIPTION" in reasons["event 'big@example.org'"]
        assert "out of range" in reasons["event 'old@example.org'"]
        assert "out of range" in reasons["event 'late@example.org'"]
        entries = {e.uid: e for e in bad_ws.storage.list_planning_entries()}
        assert sorted(entries) == ["good@example.org", "last@example.org", "sum@example.org"]
        assert entries["sum@example.org"].summary == "caf"
        bad_ws.calendar.ical()  # and the calendar still renders


TEXT_FIELDS: list[Any] = [
    pytest.param(lambda ws, s: ws.posts.create(author="ana", text=s, channels=["acme-x"]),
                 id="create"),
    pytest.param(lambda ws, s: ws.comment(1, by="ben", text=s), id="comment"),
    pytest.param(lambda ws, s: ws.campaigns.update("spring", goal=s), id="goal"),
    pytest.param(lambda ws, s: ws.team.update("ana", email=s), id="email"),
    pytest.param(lambda ws, s: ws.channels.update("acme-x", handle=s), id="handle"),
    pytest.param(lambda ws, s: ws.pause(by="cy", reason=s), id="reason"),
]


class TestArbitraryStrings:
    """Any string through any public text field: stored as given, or a ValidationFailed
    with nothing stored; never another exception, on any backend."""

    @pytest.mark.parametrize("call", TEXT_FIELDS)
    @settings(max_examples=60, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(text=st.text(st.characters(codec=None), max_size=200)
           | st.sampled_from([SURROGATE, ZERO_WIDTH, "\x00", "a\n", "x" * 60_000]))
    def test_stored_or_refused(self, bad_ws: Workspace, call: Callable[..., Any],
                               text: str) -> None:
        """Whatever the text, the backend either stores it exactly or nothing changes."""
        if not bad_ws.posts.count():
            bad_ws.posts.create(author="ana", text="first", channels=["acme-x"])
        before = bad_ws.audit_log()
        try:
            call(bad_ws, text)
        except postflow.ValidationFailed:
            assert bad_ws.audit_log() == before
            return
        after = bad_ws.audit_log()
        if bad_ws.holds():
            bad_ws.resume(by="cy")
        assert len(after) == len(before) + 1
        stored = after[-1]
        shown = (stored.comment, *[str(v) for v in stored.data.values()])
        assert text in shown or text.strip() in shown or stored.action == "create"



class TestWorkflowNames:
    """A trigger named like an attribute of the machine's model is refused at load,
    not at the first fire."""

    @pytest.mark.parametrize("name", ["state", "approvals"])
    def test_reserved_trigger_names(self, name: str) -> None:
        """The ConfigError names the trigger and why."""
        with pytest.raises(postflow.ConfigError, match=f"trigger '{name}'.*reserved"):
            postflow.Workflow.from_dict({
                "extends": "default", "name": "odd",
                "transitions": [{"trigger": name, "source": "draft", "dest": "review"}]})


# -- notifications -----------------------------------------------------------------------
#
# The notification API (ws.notifications.*, ws.inbox, ws.mark_read, `postflow notify`,
# `postflow inbox`): every wrong type, bad text, out-of-range number and malformed
# configuration, preference or channel setting is a specific PostflowError naming the
# field or rule, on every backend, and nothing stored (the configuration, preferences,
# outbox, inbox, audit trail) changes.

NOTIFY_CONFIG: dict[str, Any] = {
    "settings": {"from": "postflow@example.org",
                 "post_url": "https://app.example.org/posts/{post_id}"},
    "rules": [{"name": "reviewers", "events": ["post.submitted"], "to": ["approvers"],
               "channels": ["inbox", "null"]}],
    "escalations": [{"name": "late", "stage": "review", "after": "1h",
                     "notify": ["role:admin"]}],
}


def notify_config(**changes: Any) -> dict[str, Any]:
    """:data:`NOTIFY_CONFIG` with ``changes``: ``rule`` / ``escalation`` / ``settings``
    entries are merged into the first rule, escalation or the settings; other keys
    replace the top-level table."""
    import copy

    config = copy.deepcopy(NOTIFY_CONFIG)
    for key, value in changes.items():
        if key == "rule":
            config["rules"][0].update(value)
        elif key == "escalation":
            config["escalations"][0].update(value)
        elif key == "settings":
            config["settings"].update(value)
        else:
            config[key] = value
    return config


def deep(depth: int) -> dict[str, Any]:
    """A table ``depth`` tables deep."""
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"k": value}
    return value


def configure(**changes: Any) -> Call:
    return lambda ws, p: ws.notifications.configure(notify_config(**changes), by="dee")


def prefs(**values: Any) -> Call:
    return lambda ws, p: ws.notifications.set_preferences("ben", values, by="ben")


def channel(name: str, **settings: Any) -> Call:
    return configure(channels={name: settings})


NOTIFY_CALLS: list[Any] = [
    # reading the outbox and the inbox: filters, pages and flags
    pytest.param(lambda ws, p: ws.notifications.outbox(status=5), postflow.ValidationFailed,
                 ["status must be None or one of"], id="outbox-status-int"),
    pytest.param(lambda ws, p: ws.notifications.outbox(status="lost"),
                 postflow.ValidationFailed, ["bad-status"], id="outbox-status-unknown"),
    pytest.param(lambda ws, p: ws.notifications.outbox(recipient=b"ben"),
                 postflow.ValidationFailed, ["recipient must be text"],
                 id="outbox-recipient-bytes"),
    pytest.param(lambda ws, p: ws.notifications.outbox(recipient=2**64),
                 postflow.ValidationFailed, ["recipient must be text"],
                 id="outbox-recipient-2**64"),
    pytest.param(lambda ws, p: ws.notifications.outbox(recipient="ben\x00"),
                 postflow.ValidationFailed, ["recipient", "control character"],
                 id="outbox-recipient-nul"),
    pytest.param(lambda ws, p: ws.notifications.outbox(recipient=SURROGATE),
                 postflow.ValidationFailed, ["recipient", "surrogate"],
                 id="outbox-recipient-surrogate"),
    pytest.param(lambda ws, p: ws.notifications.outbox(limit=-1), postflow.ValidationFailed,
                 ["limit"], id="outbox-limit-negative"),
    pytest.param(lambda ws, p: ws.notifications.outbox(limit=2**63),
                 postflow.ValidationFailed, ["limit"], id="outbox-limit-2**63"),
    pytest.param(lambda ws, p: ws.inbox("ben", unread="no"), postflow.ValidationFailed,
                 ["bad-unread"], id="inbox-unread-text"),
    pytest.param(lambda ws, p: ws.inbox("ben", after_id=True), postflow.ValidationFailed,
                 ["after_id"], id="inbox-after-id-true"),
    pytest.param(lambda ws, p: ws.inbox("ben", after_id=None), postflow.ValidationFailed,
                 ["after_id"], id="inbox-after-id-none"),
    pytest.param(lambda ws, p: ws.inbox("ben", limit=1.5), postflow.ValidationFailed,
                 ["limit"], id="inbox-limit-float"),
    pytest.param(lambda ws, p: ws.notifications.inbox("ben", limit=2**64),
                 postflow.ValidationFailed, ["limit"], id="inbox-limit-2**64"),
    pytest.param(lambda ws, p: ws.inbox(None), postflow.NotFound, ["no member"],
                 id="inbox-member-none"),
    pytest.param(lambda ws, p: ws.inbox(SURROGATE), postflow.NotFound, ["no member"],
                 id="inbox-member-surrogate"),
    pytest.param(lambda ws, p: ws.inbox("b" * 1_000_000), postflow.NotFound, ["no member"],
                 id="inbox-member-megabyte"),
    # marking read: ids are ints a backend can hold
    pytest.param(lambda ws, p: ws.mark_read("ben", 5), postflow.ValidationFailed,
                 ["ids must be None or a list"], id="mark-read-int"),
    pytest.param(lambda ws, p: ws.mark_read("ben", "12"), postflow.ValidationFailed,
                 ["ids must be None or a list"], id="mark-read-text"),
    pytest.param(lambda ws, p: ws.mark_read("ben", {1: 1}), postflow.ValidationFailed,
                 ["ids must be None or a list"], id="mark-read-dict"),
    pytest.param(lambda ws, p: ws.mark_read("ben", [True]), postflow.ValidationFailed,
                 ["bad-ids", "True"], id="mark-read-true"),
    pytest.param(lambda ws, p: ws.mark_read("ben", [1.0]), postflow.ValidationFailed,
                 ["bad-ids", "1.0"], id="mark-read-float"),
    pytest.param(lambda ws, p: ws.mark_read("ben", [2**63]), postflow.ValidationFailed,
                 ["bad-ids"], id="mark-read-2**63"),
    pytest.param(lambda ws, p: ws.mark_read("ben", [-1]), postflow.ValidationFailed,
                 ["bad-ids"], id="mark-read-negative"),
    pytest.param(lambda ws, p: ws.mark_read("ben", [[1]]), postflow.ValidationFailed,
                 ["bad-ids"], id="mark-read-nested-list"),
    pytest.param(lambda ws, p: ws.mark_read("ben", [1, "2"]), postflow.ValidationFailed,
                 ["bad-ids"], id="mark-read-mixed"),
    pytest.param(lambda ws, p: ws.mark_read("ben", range(1, 20_000)),
                 postflow.ValidationFailed, ["ids: more than 10,000"], id="mark-read-too-many"),
    pytest.param(lambda ws, p: ws.mark_read(5), postflow.NotFound, ["no member"],
                 id="mark-read-member-int"),
    # the worker's arguments
    pytest.param(lambda ws, p: ws.notifications.deliver(worker=5), postflow.ValidationFailed,
                 ["worker must be text"], id="deliver-worker-int"),
    pytest.param(lambda ws, p: ws.notifications.deliver(worker="w\n"),
                 postflow.ValidationFailed, ["worker", "control character"],
                 id="deliver-worker-newline"),
    pytest.param(lambda ws, p: ws.notifications.deliver(worker=SURROGATE),
                 postflow.ValidationFailed, ["worker", "surrogate"],
                 id="deliver-worker-surrogate"),
    pytest.param(lambda ws, p: ws.notifications.deliver(worker="w" * 1_000_000),
                 postflow.ValidationFailed, ["worker", "limit is 100"],
                 id="deliver-worker-megabyte"),
    pytest.param(lambda ws, p: ws.notifications.run_once(worker=["w"]),
                 postflow.ValidationFailed, ["worker must be text"], id="run-once-worker-list"),
    pytest.param(lambda ws, p: ws.notifications.deliver(limit=0), postflow.ValidationFailed,
                 ["limit must be a whole number from 1"], id="deliver-limit-zero"),
    pytest.param(lambda ws, p: ws.notifications.deliver(limit=-1),
                 postflow.ValidationFailed, ["limit"], id="deliver-limit-negative"),
    pytest.param(lambda ws, p: ws.notifications.deliver(limit=True),
                 postflow.ValidationFailed, ["limit"], id="deliver-limit-true"),
    pytest.param(lambda ws, p: ws.notifications.deliver(limit=1.5),
                 postflow.ValidationFailed, ["limit"], id="deliver-limit-float"),
    pytest.param(lambda ws, p: ws.notifications.deliver(limit="5"),
                 postflow.ValidationFailed, ["limit"], id="deliver-limit-text"),
    pytest.param(lambda ws, p: ws.notifications.deliver(limit=2**64),
                 postflow.ValidationFailed, ["limit"], id="deliver-limit-2**64"),
    pytest.param(lambda ws, p: ws.notifications.route("2030-01-01"),
                 postflow.ValidationFailed, ["now must be a datetime"], id="route-now-text"),
    pytest.param(lambda ws, p: ws.notifications.scan("x" * 1_000_000),
                 postflow.ValidationFailed, ["now must be a datetime"],
                 id="scan-now-megabyte"),
    pytest.param(lambda ws, p: ws.notifications.run_once(datetime(2030, 1, 1)),
                 postflow.ValidationFailed, ["naive"], id="run-once-naive-now"),
    pytest.param(lambda ws, p: ws.notifications.deliver(datetime(1, 1, 1, tzinfo=UTC)),
                 postflow.ValidationFailed, ["now"], id="deliver-year-1"),
    # the configuration as a whole
    pytest.param(lambda ws, p: ws.notifications.configure(5, by="dee"), postflow.ConfigError,
                 ["a dict or TOML text"], id="config-int"),
    pytest.param(lambda ws, p: ws.notifications.configure(b"rules = []", by="dee"),
                 postflow.ConfigError, ["a dict or TOML text"], id="config-bytes"),
    pytest.param(lambda ws, p: ws.notifications.configure("rules = 5", by="dee"),
                 postflow.ConfigError, ["rules", "array of tables"], id="config-toml-int"),
    pytest.param(lambda ws, p: ws.notifications.configure("settings = [1]", by="dee"),
                 postflow.ConfigError, ["[settings]", "expected a table"],
                 id="config-toml-settings-list"),
    pytest.param(lambda ws, p: ws.notifications.configure("rules = [1, 2]", by="dee"),
                 postflow.ConfigError, ["rule 1", "expected a table"],
                 id="config-toml-rules-ints"),
    pytest.param(lambda ws, p: ws.notifications.configure("[settings\n", by="dee"),
                 postflow.ConfigError, ["not valid TOML"], id="config-toml-broken"),
    pytest.param(lambda ws, p: ws.notifications.configure(
        "[channels.email]\nhost = 1979-05-27\n", by="dee"), postflow.ConfigError,
        ["channels.email.host", "date values are not supported"], id="config-toml-date"),
    pytest.param(lambda ws, p: ws.notifications.configure("a = 1\n" * 200_000, by="dee"),
                 postflow.ConfigError, ["over 1,048,576 characters"], id="config-too-long"),
    pytest.param(lambda ws, p: ws.notifications.configure({1: 2, "rules": []}, by="dee"),
                 postflow.ConfigError, ["unknown key(s) 1"], id="config-int-key"),
    pytest.param(configure(rule={1: 2, "x" * 1_000_000: 3}), postflow.ConfigError,
                 ["unknown key(s) 'xxx", ", 1;"], id="rule-odd-keys"),
    pytest.param(lambda ws, p: ws.notifications.configure({"nope": 1}, by="dee"),
                 postflow.ConfigError, ["unknown key(s) 'nope'"], id="config-unknown-key"),
    pytest.param(configure(channels={"email": deep(30)}), postflow.ConfigError,
                 ["nested more than 20 levels"], id="config-too-deep"),
    pytest.param(lambda ws, p: ws.notifications.configure(NOTIFY_CONFIG, by="ana"),
                 postflow.PermissionDenied, ["needs the role admin"], id="config-by-author"),
    pytest.param(lambda ws, p: ws.notifications.configure(NOTIFY_CONFIG, by=None),
                 postflow.PermissionDenied, ["not a member"], id="config-by-none"),
    pytest.param(lambda ws, p: ws.notifications.configure(NOTIFY_CONFIG, by="d" * 1_000_000),
                 postflow.PermissionDenied, ["not a member"], id="config-by-megabyte"),
    # rules
    pytest.param(configure(rule={"name": SURROGATE}), postflow.ConfigError,
                 ["rule 1: name", "surrogate"], id="rule-name-surrogate"),
    pytest.param(configure(rule={"name": "a\nb"}), postflow.ConfigError,
                 ["rule 1: name", "control character"], id="rule-name-newline"),
    pytest.param(configure(rule={"name": "r" * 101}), postflow.ConfigError,
                 ["rule 1: name", "limit is 100"], id="rule-name-too-long"),
    pytest.param(configure(rule={"name": 5}), postflow.ConfigError,
                 ["rule 1: name must be text"], id="rule-name-int"),
    pytest.param(configure(rule={"events": []}), postflow.ConfigError,
                 ["rule 'reviewers'", "events: name at least one"], id="rule-no-events"),
    pytest.param(configure(rule={"to": []}), postflow.ConfigError,
                 ["rule 'reviewers'", "to: name at least one"], id="rule-no-recipients"),
    pytest.param(configure(rule={"channels": []}), postflow.ConfigError,
                 ["rule 'reviewers'", "channels: name at least one"], id="rule-no-channels"),
    pytest.param(configure(rule={"events": [5]}), postflow.ConfigError,
                 ["events: expected a list of names"], id="rule-events-int"),
    pytest.param(configure(rule={"events": b"post.submitted"}), postflow.ConfigError,
                 ["events: expected a list of names"], id="rule-events-bytes"),
    pytest.param(configure(rule={"events": {"*": 1}}), postflow.ConfigError,
                 ["events: expected a list of names"], id="rule-events-dict"),
    pytest.param(configure(rule={"events": "e" * 1_000_000}), postflow.ConfigError,
                 ["events", "limit is 100"], id="rule-events-megabyte"),
    pytest.param(configure(rule={"to": ["member:" + SURROGATE]}), postflow.ConfigError,
                 ["to", "surrogate"], id="rule-to-surrogate"),
    pytest.param(configure(rule={"to": ["author"] * 101}), postflow.ConfigError,
                 ["to", "the limit is 100"], id="rule-to-too-many"),
    pytest.param(configure(rule={"to": ["member:nobody"]}), postflow.ConfigError,
                 ["unknown member 'nobody'"], id="rule-to-unknown-member"),
    pytest.param(configure(rule={"urgent": "yes"}), postflow.ConfigError,
                 ["urgent must be true or false"], id="rule-urgent-text"),
    pytest.param(configure(rule={"when": "now"}), postflow.ConfigError,
                 ["unknown key(s) 'when'"], id="rule-unknown-key"),
    pytest.param(configure(rules=[None]), postflow.ConfigError,
                 ["rule 1", "expected a table"], id="rule-none"),
    pytest.param(configure(rules="reviewers"), postflow.ConfigError,
                 ["rules", "array of tables"], id="rules-text"),
    # settings
    pytest.param(configure(settings={"due_soon": "-1h"}), postflow.ConfigError,
                 ["due_soon", "not a duration"], id="due-soon-negative"),
    pytest.param(configure(settings={"due_soon": 0}), postflow.ConfigError,
                 ["due_soon", "positive"], id="due-soon-zero"),
    pytest.param(configure(settings={"retention": "999999999d"}), postflow.ConfigError,
                 ["retention", "limit of 3650 days"], id="retention-huge"),
    pytest.param(configure(settings={"burst_window": "1e400h"}), postflow.ConfigError,
                 ["burst_window", "not a duration"], id="burst-window-overflow"),
    pytest.param(configure(settings={"due_soon": "1" * 1_000_000 + "h"}),
                 postflow.ConfigError, ["due_soon", "not a duration"],
                 id="due-soon-megabyte"),
    pytest.param(configure(settings={"due_soon": float("nan")}), postflow.ConfigError,
                 ["due_soon", "not a duration"], id="due-soon-nan"),
    pytest.param(configure(settings={"max_attempts": True}), postflow.ConfigError,
                 ["max_attempts", "whole number"], id="max-attempts-true"),
    pytest.param(configure(settings={"max_attempts": 2**64}), postflow.ConfigError,
                 ["max_attempts", "from 1 to 1000"], id="max-attempts-huge"),
    pytest.param(configure(settings={"max_attempts": 0}), postflow.ConfigError,
                 ["max_attempts"], id="max-attempts-zero"),
    pytest.param(configure(settings={"from": "Postflow <p@example.org>"}),
                 postflow.ConfigError,
                 ["[settings] from", "one email address"], id="from-not-an-address"),
    pytest.param(configure(settings={"from": "a@b.org\r\nBcc: all@b.org"}),
                 postflow.ConfigError, ["[settings] from", "control character"],
                 id="from-header-injection"),
    pytest.param(configure(settings={"from": None}), postflow.ConfigError,
                 ["[settings] from must be text"], id="from-none"),
    pytest.param(configure(settings={"preferences_url": "ftp://app.example.org/{member}"}),
                 postflow.ConfigError, ["preferences_url", "http:// or https://"],
                 id="preferences-url-ftp"),
    pytest.param(configure(settings={"preferences_url": "http:///{member}"}),
                 postflow.ConfigError, ["preferences_url"], id="preferences-url-no-host"),
    pytest.param(configure(settings={"preferences_url": "https://a.org/{member.x}"}),
                 postflow.ConfigError, ["preferences_url", "may use only {member}"],
                 id="preferences-url-attribute"),
    pytest.param(configure(settings={"post_url": "https://a.org/{post_id:>99999999999}"}),
                 postflow.ConfigError, ["post_url", "may use only {post_id}"],
                 id="post-url-format-spec"),
    pytest.param(configure(settings={"post_url": "https://a.org/{post_id}\x00"}),
                 postflow.ConfigError, ["post_url", "control character"],
                 id="post-url-nul"),
    pytest.param(configure(settings={"post_url": 5}), postflow.ConfigError,
                 ["post_url", "expected a URL"], id="post-url-int"),
    pytest.param(lambda ws, p: ws.notifications.configure({"settings": "fast"}, by="dee"),
                 postflow.ConfigError,
                 ["[settings]", "expected a table"], id="settings-text"),
    # escalations
    pytest.param(configure(escalation={"after": "-1h"}), postflow.ConfigError,
                 ["escalation 'late'", "after", "not a duration"],
                 id="escalation-after-negative"),
    pytest.param(configure(escalation={"after": -5}), postflow.ConfigError,
                 ["escalation 'late'", "after", "positive"], id="escalation-after-minus-5"),
    pytest.param(configure(escalation={"after": "999999999d"}), postflow.ConfigError,
                 ["escalation 'late'", "limit of 3650 days"], id="escalation-after-huge"),
    pytest.param(configure(escalation={"notify": []}), postflow.ConfigError,
                 ["names nobody to notify"], id="escalation-nobody"),
    pytest.param(configure(escalation={"add_approver": 5}), postflow.ConfigError,
                 ["add_approver must be a member name"], id="escalation-approver-int"),
    pytest.param(configure(escalation={"stage": ["review"]}), postflow.ConfigError,
                 ["stage must be a stage name"], id="escalation-stage-list"),
    pytest.param(configure(escalation={"name": "x\x00"}), postflow.ConfigError,
                 ["escalation 1: name", "control character"], id="escalation-name-nul"),
    pytest.param(configure(escalations=[5]), postflow.ConfigError,
                 ["escalation 1", "expected a table"], id="escalation-int"),
    # templates
    pytest.param(configure(templates={"post.submitted": {"subject": "$"}}),
                 postflow.ConfigError, ["post.submitted", "subject", "not a valid template"],
                 id="template-lone-dollar"),
    pytest.param(configure(templates={"post.submitted": {"text": "${unclosed"}}),
                 postflow.ConfigError, ["post.submitted", "text", "not a valid template"],
                 id="template-unclosed"),
    pytest.param(configure(templates={"post.submitted": {"text": "$nope"}}),
                 postflow.ConfigError, ["unknown field(s) $nope"], id="template-unknown-field"),
    pytest.param(configure(templates={"digest": {"text": "$post_id"}}), postflow.ConfigError,
                 ["digest", "unknown field(s) $post_id"], id="digest-template-post-field"),
    pytest.param(configure(templates={"post.submitted": {"subject": "a\nb"}}),
                 postflow.ConfigError, ["subject", "control character"],
                 id="template-subject-newline"),
    pytest.param(configure(templates={"post.submitted": {"text": SURROGATE}}),
                 postflow.ConfigError, ["text", "surrogate"], id="template-surrogate"),
    pytest.param(configure(templates={"post.submitted": {"html": "x" * 50_001}}),
                 postflow.ConfigError, ["html", "limit is 50,000"], id="template-too-long"),
    pytest.param(configure(templates={"post.submitted": {"text": 5}}), postflow.ConfigError,
                 ["text must be text"], id="template-int"),
    pytest.param(configure(templates={"post.submitted": {"body": "x"}}), postflow.ConfigError,
                 ["unknown key(s) 'body'"], id="template-unknown-part"),
    pytest.param(configure(templates={"post.nope": {"text": "x"}}), postflow.ConfigError,
                 ["unknown event 'post.nope'"], id="template-unknown-event"),
    pytest.param(configure(templates={"post.submitted": "x"}), postflow.ConfigError,
                 ["post.submitted", "expected a table"], id="template-text-not-table"),
    # channel settings
    pytest.param(channel("email", host="smtp.example.org", port="abc"), postflow.ConfigError,
                 ["channels.email.port", "whole number"], id="email-port-text"),
    pytest.param(channel("email", host="smtp.example.org", port=70000),
                 postflow.ConfigError, ["channels.email.port", "at most 65535"],
                 id="email-port-70000"),
    pytest.param(channel("email", host="smtp.example.org", port=True), postflow.ConfigError,
                 ["channels.email.port"], id="email-port-true"),
    pytest.param(channel("email", host="smtp.example.org", port=25.0), postflow.ConfigError,
                 ["channels.email.port"], id="email-port-float"),
    pytest.param(channel("email", host=" "), postflow.ConfigError,
                 ["channels.email.host"], id="email-host-blank"),
    pytest.param(channel("email", host="smtp example org"), postflow.ConfigError,
                 ["channels.email.host", "host name or IP address"], id="email-host-space"),
    pytest.param(channel("email", host="h" * 3000), postflow.ConfigError,
                 ["channels.email.host", "at most 2,048"], id="email-host-too-long"),
    pytest.param(channel("email", port=25), postflow.ConfigError,
                 ["needs the setting 'host'"], id="email-no-host"),
    pytest.param(channel("email", host="h", timeout=1e9), postflow.ConfigError,
                 ["channels.email.timeout", "at most 600"], id="email-timeout-huge"),
    pytest.param(channel("email", host="h", timeout=float("inf")), postflow.ConfigError,
                 ["channels.email.timeout", "finite number"], id="email-timeout-inf"),
    pytest.param(channel("email", host="h", starttls="yes"), postflow.ConfigError,
                 ["channels.email.starttls", "true or false"], id="email-starttls-text"),
    pytest.param(channel("email", host="h", password_env="A-B"), postflow.ConfigError,
                 ["channels.email.password_env"], id="email-password-env-bad"),
    pytest.param(channel("webhook", url="ftp://hooks.example.org/"), postflow.ConfigError,
                 ["channels.webhook.url", "http:// or https://"], id="webhook-url-ftp"),
    pytest.param(channel("webhook", url="http://"), postflow.ConfigError,
                 ["channels.webhook.url", "with a host"], id="webhook-url-no-host"),
    pytest.param(channel("webhook", url="http://h.example.org:70000/"), postflow.ConfigError,
                 ["channels.webhook.url", "not a valid URL"], id="webhook-url-port-70000"),
    pytest.param(channel("webhook", url="http://h.example.org:abc/"), postflow.ConfigError,
                 ["channels.webhook.url", "not a valid URL"], id="webhook-url-port-text"),
    pytest.param(channel("webhook", url=["http://h.example.org/"]), postflow.ConfigError,
                 ["channels.webhook.url"], id="webhook-url-list"),
    pytest.param(channel("webhook", url="http://h.example.org/", timeout="10"),
                 postflow.ConfigError, ["channels.webhook.timeout"], id="webhook-timeout-text"),
    pytest.param(channel("webhook", url="http://h.example.org/", retries=3),
                 postflow.ConfigError, ["unknown setting 'retries'"],
                 id="webhook-unknown-setting"),
    pytest.param(channel("inbox", colour="red"), postflow.ConfigError,
                 ["channels.inbox", "unknown setting 'colour'"], id="inbox-setting"),
    pytest.param(configure(channels={"email": "smtp.example.org"}), postflow.ConfigError,
                 ["[channels.email]", "expected a table"], id="channel-table-text"),
    pytest.param(configure(channels={"pigeon": {}}), postflow.ConfigError,
                 ["unknown channel 'pigeon'"], id="channel-unknown"),
    # preferences
    pytest.param(prefs(quiet_hours="25:00-07:00"), postflow.ConfigError,
                 ["preferences of 'ben'", "quiet_hours", "'25:00' is not a time"],
                 id="quiet-hours-25"),
    pytest.param(prefs(quiet_hours="22:00-22:00"), postflow.ConfigError,
                 ["quiet_hours", "same time"], id="quiet-hours-empty"),
    pytest.param(prefs(quiet_hours=2200), postflow.ConfigError, ["quiet_hours"],
                 id="quiet-hours-int"),
    pytest.param(prefs(digest="daily 24:00"), postflow.ConfigError,
                 ["digest", "'24:00' is not a time"], id="digest-daily-24"),
    pytest.param(prefs(digest="weekly"), postflow.ConfigError, ["digest"],
                 id="digest-unknown"),
    pytest.param(prefs(digest=None), postflow.ConfigError, ["digest"], id="digest-none"),
    pytest.param(prefs(timezone="Mars/Olympus"), postflow.ConfigError,
                 ["timezone", "unknown time zone"], id="timezone-unknown"),
    pytest.param(prefs(timezone="../../etc/passwd"), postflow.ConfigError,
                 ["timezone", "unknown time zone"], id="timezone-path"),
    pytest.param(prefs(timezone="z" * 1_000_000), postflow.ConfigError,
                 ["timezone", "limit is"], id="timezone-megabyte"),
    pytest.param(prefs(timezone=5), postflow.ConfigError, ["timezone"], id="timezone-int"),
    pytest.param(prefs(mute_events=["post.nope"]), postflow.ConfigError,
                 ["mute_events: unknown event"], id="mute-unknown-event"),
    pytest.param(prefs(mute_events=[None]), postflow.ConfigError,
                 ["mute_events: expected a list of names"], id="mute-events-none"),
    pytest.param(prefs(mute_channels=["pigeon"]), postflow.ConfigError,
                 ["unknown channel 'pigeon'"], id="mute-unknown-channel"),
    pytest.param(prefs(campaigns=[f"c{i}" for i in range(101)]), postflow.ConfigError,
                 ["campaigns", "the limit is 100"], id="campaigns-too-many"),
    pytest.param(prefs(campaigns=["c" * 101]), postflow.ConfigError,
                 ["campaigns", "limit is 100"], id="campaign-name-too-long"),
    pytest.param(prefs(campaigns=["spring\n"]), postflow.ConfigError,
                 ["campaigns", "control character"], id="campaign-newline"),
    pytest.param(prefs(urgent_bypass="yes"), postflow.ConfigError,
                 ["urgent_bypass must be true or false"], id="urgent-bypass-text"),
    pytest.param(prefs(snooze=True), postflow.ConfigError, ["unknown key(s) 'snooze'"],
                 id="preferences-unknown-key"),
    pytest.param(lambda ws, p: ws.notifications.set_preferences("ben", {5: 1}, by="ben"),
                 postflow.ConfigError, ["keys must be text"], id="preferences-int-key"),
    pytest.param(lambda ws, p: ws.notifications.set_preferences("ben", "off", by="ben"),
                 postflow.ConfigError, ["expected a table"], id="preferences-text"),
    pytest.param(lambda ws, p: ws.notifications.set_preferences("ben", {}, by="ana"),
                 postflow.PermissionDenied, ["only they or an admin"],
                 id="preferences-by-other"),
    pytest.param(lambda ws, p: ws.notifications.set_preferences(5, {}, by="dee"),
                 postflow.NotFound, ["no member"], id="preferences-member-int"),
    pytest.param(lambda ws, p: ws.notifications.preferences(SURROGATE), postflow.NotFound,
                 ["no member"], id="preferences-member-surrogate"),
]


def notify_snapshot(ws: Workspace, post: postflow.Post) -> dict[str, object]:
    """:func:`snapshot`, plus everything the notifications keep."""
    state = snapshot(ws, post)
    state["documents"] = {name: ws.storage.stored_document(name)
                          for name in ("notifications", "preferences:ben")}
    state["outbox"] = ws.notifications.outbox()
    state["inboxes"] = {m.name: ws.inbox(m.name) for m in ws.team.list()}
    return state


@pytest.fixture(name="notified")
def _notified(bad_ws: Workspace, post: postflow.Post) -> postflow.Post:
    """``post`` with a notification configuration, ben's preferences and something in
    the outbox and in ben's inbox."""
    bad_ws.notifications.configure(NOTIFY_CONFIG, by="dee")
    bad_ws.notifications.set_preferences("ben", {"digest": "off"}, by="ben")
    bad_ws.submit(post.id, by="ana")
    bad_ws.notifications.run_once(worker="w")
    assert bad_ws.inbox("ben")
    assert bad_ws.notifications.outbox()
    return post


class TestNotifications:
    """The notification API refuses bad input with a specific error naming the field,
    rule or setting, and nothing stored changes."""

    @pytest.mark.parametrize(("call", "error", "words"), NOTIFY_CALLS)
    def test_refused(self, bad_ws: Workspace, notified: postflow.Post, call: Call,
                     error: type[postflow.PostflowError], words: list[str]) -> None:
        """The specific error (its message short, even for a megabyte of input);
        nothing stored changes."""
        before = notify_snapshot(bad_ws, notified)
        with pytest.raises(error) as caught:
            call(bad_ws, notified)
        for word in words:
            assert word in str(caught.value)
        assert len(str(caught.value)) < 2_000
        assert notify_snapshot(bad_ws, notified) == before

    def test_unreadable_configuration_files(self, bad_ws: Workspace, notified: postflow.Post,
                                            tmp_path: Path) -> None:
        """A file that is not UTF-8, a folder and a file of 2 MiB are ConfigErrors (the
        file is read only up to the limit: /dev/zero is a path too)."""
        latin = tmp_path / "latin.toml"
        latin.write_bytes(b"[settings]\nfrom = \"\xe9@example.org\"\n")
        huge = tmp_path / "huge.toml"
        huge.write_bytes(b"# " + b"x" * (2 << 20) + b"\n")
        for path, words in ((latin, "cannot read"), (tmp_path, "cannot read"),
                            (huge, "over 1,048,576")):
            before = notify_snapshot(bad_ws, notified)
            with pytest.raises(postflow.ConfigError, match=words):
                bad_ws.notifications.configure(path, by="dee")
            assert notify_snapshot(bad_ws, notified) == before

    def test_the_limits_themselves_are_accepted(self, bad_ws: Workspace,
                                                notified: postflow.Post) -> None:
        """Exactly at each limit is fine, and an explicit None is the default."""
        bad_ws.notifications.configure(notify_config(
            rule={"name": "r" * LIMITS["name"], "to": ["approvers"] * LIMITS["items"]},
            settings={"retention": "3650d", "max_attempts": 1000},
            templates={"post.submitted": {"text": "t" * LIMITS["text"]}},
            channels={"email": {"host": "smtp.example.org", "from": None, "port": 65535,
                                "timeout": 600}}), by="dee")
        config = bad_ws.notifications.config()
        assert config.rules[0].name == "r" * LIMITS["name"]
        assert config.retention == timedelta(days=3650)
        bad_ws.notifications.set_preferences(
            "ben", {"campaigns": [f"c{i}" for i in range(LIMITS["items"])],
                    "quiet_hours": "23:59-00:00", "digest": "daily 23:59"}, by="ben")
        assert len(bad_ws.notifications.preferences("ben").campaigns) == LIMITS["items"]
        assert bad_ws.mark_read("ben", [bad_ws.inbox("ben")[0].id, MAX_ID]) == 1
        assert bad_ws.notifications.outbox(limit=MAX_ID)
        assert bad_ws.notifications.deliver(limit=MAX_ID, worker="w" * 100).claimed == 0

    def test_a_plugin_channel_that_crashes_on_its_settings(
            self, clock: FixedClock, make_ws: Callable[..., Workspace]) -> None:
        """A channel's configure() raising something else than ConfigError is still a
        ConfigError naming the channel; nothing is stored."""

        class Fragile:
            @postflow.hookspecs.hookimpl
            def postflow_register_notification_channels(
                    self, register: Callable[[str, Any], None]) -> None:
                register("fragile", self)

            def configure(self, settings: Any) -> None:
                int(settings["port"])

            def send(self, message: Any) -> None:
                pass

        ws = make_ws("memory://", plugins=[Fragile()])
        ws.team.add("dee", roles={"admin"})
        with pytest.raises(postflow.ConfigError, match=r"channels.fragile.*KeyError"):
            ws.notifications.configure({"channels": {"fragile": {}}}, by="dee")
        assert ws.storage.stored_document("notifications") is None

    @pytest.mark.parametrize(("settings", "words"), [
        pytest.param({"x": float("nan")}, "finite number", id="nan"),
        pytest.param({"x": [1.0, float("inf")]}, "finite number", id="inf-in-list"),
        pytest.param({"x": datetime(2030, 1, 1)}, "datetime values", id="datetime"),
        pytest.param({"x": {1, 2}}, "set values", id="set"),
        pytest.param({"x": b"k"}, "bytes values", id="bytes"),
        pytest.param({"x": deep(25)}, "nested more than 20", id="too-deep"),
        pytest.param({"x": {"a\nb": 1}}, "control character", id="key-newline"),
        pytest.param({"x": {2: 1}}, "keys must be text", id="key-int"),
        pytest.param({"x": SURROGATE}, "surrogate", id="surrogate"),
        pytest.param({"x": "s" * 60_000}, "limit is 50,000", id="long-text"),
    ])
    def test_plugin_channel_settings_must_be_storable(
            self, make_ws: Callable[..., Workspace], url: str, settings: dict[str, Any],
            words: str) -> None:
        """A plugin channel may take any settings, but only plain JSON data every
        backend stores and reads back alike (no NaN, dates, sets, bytes, odd keys or
        deep nesting): the rest is a ConfigError naming the setting."""

        class Lenient:
            @postflow.hookspecs.hookimpl
            def postflow_register_notification_channels(
                    self, register: Callable[[str, Any], None]) -> None:
                register("lenient", self)

            def configure(self, settings: Any) -> None:
                pass

            def send(self, message: Any) -> None:
                pass

        ws = make_ws(url, plugins=[Lenient()])
        ws.team.add("dee", roles={"admin"})
        with pytest.raises(postflow.ConfigError, match=r"channels\.lenient") as caught:
            ws.notifications.configure({"channels": {"lenient": settings}}, by="dee")
        assert words in str(caught.value)
        assert ws.storage.stored_document("notifications") is None
        ws.notifications.configure({"channels": {"lenient": {"x": 1.5}}}, by="dee")
        ws.notifications.configure({"channels": {"lenient": {"x": 2.5}}}, by="dee")
        assert ws.notifications.config().channels == {"lenient": {"x": 2.5}}

    @pytest.mark.parametrize("errors", [5, [1, 2], "abc", None])
    def test_odd_audit_data_does_not_stop_routing(
            self, bad_ws: Workspace, notified: postflow.Post, clock: FixedClock,
            errors: object) -> None:
        """Data a caller passed to ws.fire (errors=5, a table as the reason …) is
        input too: routing uses what it can and goes on."""
        ws = bad_ws
        ws.notifications.configure(notify_config(
            rule={"events": ["post.failed"], "to": ["author"]}), by="dee")
        ws.approve(notified.id, by="ben")
        ws.approve(notified.id, by="bea")
        ws.schedule(notified.id, by="cy", at=clock.now() + timedelta(hours=1))
        ws.notifications.run_once(worker="w")
        ws.fire(notified.id, "fail", by="cy", errors=errors, reason={"a": [1]})
        report = ws.notifications.run_once(worker="w")
        assert report.routed == 2  # ana, through inbox and null
        assert ws.changes.position("notifications") == ws.audit_log()[-1].id
        assert ws.inbox("ana")[0].title.startswith(f"Post {notified.id} failed")

    def test_a_bad_delivery_error_is_stored_clean(
            self, clock: FixedClock, make_ws: Callable[..., Workspace], url: str) -> None:
        """A channel's error text (a plugin's, a server's) is stored as one short line:
        a lone surrogate or a megabyte of it are not refused by the backend."""

        class Failing:
            @postflow.hookspecs.hookimpl
            def postflow_register_notification_channels(
                    self, register: Callable[[str, Any], None]) -> None:
                register("failing", self)

            def configure(self, settings: Any) -> None:
                pass

            def send(self, message: Any) -> None:
                raise postflow.exceptions.DeliveryError(
                    "bad \ud800 answer\r\n" + "x" * 1_000_000, retryable=False)

        ws = make_ws(url, plugins=[Failing()])
        ws.team.add("ana", roles={"author"})
        ws.team.add("dee", roles={"admin"})
        ws.channels.add("acme-x", network="x")
        ws.notifications.configure({"rules": [{"name": "r", "events": ["post.created"],
                                               "to": ["role:admin"],
                                               "channels": ["failing"]}]}, by="dee")
        ws.posts.create(author="ana", text="Hi", channels=["acme-x"])
        report = ws.notifications.run_once(worker="w")
        assert report.deliveries[0].failed == 1
        (failed,) = ws.notifications.outbox(status="failed")
        assert failed.last_error is not None
        assert failed.last_error.startswith("bad answer x")
        assert len(failed.last_error) <= 1_000


NOTIFY_TEXT_FIELDS: list[Any] = [
    pytest.param(lambda ws, s: ws.notifications.configure(notify_config(rule={"name": s}),
                                                          by="dee"), id="rule-name"),
    pytest.param(lambda ws, s: ws.notifications.configure(notify_config(
        templates={"post.submitted": {"text": s}}), by="dee"), id="template-text"),
    pytest.param(lambda ws, s: ws.notifications.configure(notify_config(
        settings={"from": s}), by="dee"), id="from"),
    pytest.param(lambda ws, s: ws.notifications.configure(notify_config(
        channels={"webhook": {"url": s}}), by="dee"), id="webhook-url"),
    pytest.param(lambda ws, s: ws.notifications.set_preferences(
        "ben", {"campaigns": [s]}, by="ben"), id="campaign"),
    pytest.param(lambda ws, s: ws.notifications.set_preferences(
        "ben", {"quiet_hours": s}, by="ben"), id="quiet-hours"),
    pytest.param(lambda ws, s: ws.notifications.set_preferences(
        "ben", {"timezone": s}, by="ben"), id="timezone"),
    pytest.param(lambda ws, s: ws.notifications.outbox(recipient=s), id="outbox-recipient"),
    pytest.param(lambda ws, s: ws.inbox(s), id="inbox-member"),
    pytest.param(lambda ws, s: ws.notifications.deliver(worker=s), id="worker"),
]


class TestNotificationStrings:
    """Any string through any notification text field: accepted, or a PostflowError
    with nothing stored; never another exception, on any backend."""

    @pytest.mark.parametrize("call", NOTIFY_TEXT_FIELDS)
    @settings(max_examples=40, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(text=st.text(st.characters(codec=None), max_size=120)
           | st.sampled_from([SURROGATE, ZERO_WIDTH, "\x00", "a\n", "x" * 60_000, "$",
                              "${", "{member.x}", "http://", "25:00-07:00"]))
    def test_accepted_or_refused(self, bad_ws: Workspace, call: Callable[..., Any],
                                 text: str) -> None:
        """Whatever the text, either the call works or nothing changes."""
        before = bad_ws.audit_log()
        try:
            call(bad_ws, text)
        except postflow.PostflowError:
            assert bad_ws.audit_log() == before


class TestNotifyCommandLine:
    """``postflow notify`` and ``postflow inbox`` turn bad values into usage errors or
    the API's refusal, never a traceback."""

    @pytest.mark.parametrize(("args", "words"), [
        pytest.param(["inbox", "ana", "--mark-read", "99999999999999999999"], ["ids"],
                     id="inbox-id-huge"),
        pytest.param(["inbox", "ana", "--mark-read", "0"], ["ids"], id="inbox-id-zero"),
        pytest.param(["inbox", "ana\x00"], ["no member"], id="inbox-member-nul"),
        pytest.param(["notify", "--once", "--id", "w\x00"], ["worker"], id="worker-nul"),
        pytest.param(["notify", "--once", "--interval", "inf"], ["--interval"],
                     id="interval-inf"),
        pytest.param(["notify", "outbox", "--limit", "99999999999999999999"], ["limit"],
                     id="outbox-limit-huge"),
        pytest.param(["notify", "outbox", "--recipient", "a\x00"], ["recipient"],
                     id="outbox-recipient-nul"),
        pytest.param(["notify", "prefs", "ana", "--by", "ana", "--set",
                      "quiet_hours=25:00-07:00"], ["quiet_hours"], id="prefs-quiet-25"),
        pytest.param(["notify", "prefs", "ana", "--by", "ana", "--set",
                      "timezone=" + "z" * 10_000], ["timezone"], id="prefs-timezone-long"),
    ])
    def test_refused(self, tmp_path: Path, args: list[str], words: list[str]) -> None:
        """A non-zero exit naming the option; nothing stored changes."""
        from click.testing import CliRunner

        from conftest import add_team
        from postflow.cli import cli

        url = f"sqlite:///{tmp_path / 'p.db'}"
        ws = postflow.open(url, entry_points=False)
        add_team(ws)
        ws.close()
        for i, arg in enumerate(args):
            if arg in ("inbox", "outbox", "prefs") or (arg == "notify" and i == 0):
                db_at = i + 1
        args = [*args[:db_at], "--db", url, *args[db_at:]]
        before_ws = postflow.open(url, entry_points=False)
        before = before_ws.audit_log()
        before_ws.close()
        result = CliRunner().invoke(cli, args)
        assert result.exit_code != 0
        assert result.exception is None or isinstance(
            result.exception, SystemExit | postflow.PostflowError), result.exception
        shown = result.output + str(result.exception or "")
        for word in words:
            assert word in shown
        after_ws = postflow.open(url, entry_points=False)
        assert after_ws.audit_log() == before
        after_ws.close()

    def test_config_show_round_trips_odd_text(self, tmp_path: Path) -> None:
        """``notify config show`` writes TOML that ``config apply`` reads back: quotes,
        tabs, non-ASCII and DEL in templates and rule names."""
        from click.testing import CliRunner

        from conftest import add_team
        from postflow.cli import cli

        url = f"sqlite:///{tmp_path / 'p.db'}"
        ws = postflow.open(url, entry_points=False)
        add_team(ws)
        config = notify_config(rule={"name": 'r\u00e9 "q"'},
                               templates={"post.submitted": {"text": "a\x7fb\n\t\u00e9"}})
        config.pop("escalations")
        ws.notifications.configure(config, by="dee")
        stored = ws.notifications.config()
        ws.close()
        shown = CliRunner().invoke(cli, ["notify", "config", "show", "--db", url])
        assert shown.exit_code == 0, shown.output
        (tmp_path / "back.toml").write_text(shown.output, encoding="utf-8")
        applied = CliRunner().invoke(cli, ["notify", "config", "apply", "--db", url,
                                           "--by", "dee", str(tmp_path / "back.toml")])
        assert applied.exit_code == 0, applied.output
        ws = postflow.open(url, entry_points=False)
        assert ws.notifications.config() == stored
        ws.close()


class TestNotificationServers:
    """What a server sends back is input too: one dripping its answer a byte at a time
    cannot hold a delivery past twice the channel's ``timeout`` (socket timeouts alone
    are per read); the message is put back to be retried."""

    @pytest.mark.parametrize("kind", ["webhook", "email"])
    def test_a_dripping_server_is_cut_off(self, kind: str) -> None:
        """The send fails retryably within about twice the timeout, saying why."""
        import socket
        import threading
        import time

        from postflow.models import Member
        from postflow.notifications.channels import EmailChannel, Message, WebhookChannel

        server = socket.create_server(("127.0.0.1", 0))
        stop = threading.Event()

        def drip() -> None:
            conn, _ = server.accept()
            with conn:
                if kind == "webhook":
                    conn.recv(65536)
                answer = b"HTTP/1.1 200 OK\r\nX: " if kind == "webhook" else b"220-"
                for byte in answer + b"p" * 10_000:
                    if stop.is_set():
                        break
                    try:
                        conn.send(bytes([byte]))
                    except OSError:
                        break
                    time.sleep(0.05)

        thread = threading.Thread(target=drip, daemon=True)
        thread.start()
        port = server.getsockname()[1]
        sender: EmailChannel | WebhookChannel
        if kind == "webhook":
            sender = WebhookChannel()
            sender.configure({"url": f"http://127.0.0.1:{port}/", "timeout": 0.25})
        else:
            sender = EmailChannel()
            sender.configure({"host": "127.0.0.1", "port": port, "timeout": 0.25})
        message = Message(dedup_key="k", recipient=Member(
            name="ana", email="ana@example.org", roles=frozenset({"author"})),
            subject="s", text="t", html=None, events=({},))
        started = time.monotonic()
        try:
            with pytest.raises(postflow.exceptions.DeliveryError,
                               match=r"took over 0\.5 s in all") as caught:
                sender.send(message)
        finally:
            stop.set()
            server.close()
        assert time.monotonic() - started < 3
        assert caught.value.retryable
