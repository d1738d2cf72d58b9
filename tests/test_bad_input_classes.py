"""Classes of bad input, each refused at its root on every backend.

Strings (lone surrogates, control and invisible characters, trailing newlines in names),
numbers and ids (too large, bools and floats), types (filters, pauses, slot searches,
audit pages, settings, ``postflow.open``) and lengths (a documented limit per field).
Each case asserts the exact error class, a message naming the field or rule, and that
nothing stored changed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
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
