"""The calendar through the workspace: content fields, SEQUENCE, exports, feeds, imports.

Independent readers (ical.js, icalendar, raw bytes) check the files in
``test_calendar_readers.py``; this module checks postflow's own rules on every backend.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import icalendar
import pytest

import postflow
from conftest import add_team
from postflow.calendar import CalendarSettings
from postflow.hookspecs import hookimpl
from postflow.testing import FixedClock

MakeWs = Callable[..., postflow.Workspace]


def events(data: bytes) -> dict[str, icalendar.Event]:
    """The VEVENTs of a calendar by UID."""
    calendar = icalendar.Calendar.from_ical(data)
    return {str(e["uid"]): e for e in calendar.walk("VEVENT")}


def uid(post: postflow.Post, channel: str = "acme-x") -> str:
    return f"post-{post.id}-{channel}@postflow.invalid"


def scheduled(ws: postflow.Workspace, clock: FixedClock, *, days: float = 1,
              channels: tuple[str, ...] = ("acme-x",), **create: Any) -> postflow.Post:
    """A post taken to ``scheduled`` at now + ``days``."""
    post = ws.posts.create(author="ana", text=create.pop("text", "Launch day"),
                           channels=list(channels), **create)
    ws.submit(post.id, by="ana")
    ws.approve(post.id, by="ben")
    return ws.schedule(post.id, at=clock.now() + timedelta(days=days), by="cy")


class CountingBuilder:
    """A plugin counting the events it sees, and stamping one property on each."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str]] = []

    @hookimpl
    def postflow_calendar_event(self, post: postflow.Post, channel: postflow.Channel,
                                event: icalendar.Event) -> None:
        self.calls.append((post.id, channel.name))
        event.add("x-postflow-channel", channel.name)
        event["summary"] = f"{event['summary']} (plugin)"


class TestContentFields:
    """Media, published URLs and their validation."""

    def test_media_is_part_of_the_revision(self, ws: postflow.Workspace) -> None:
        """Media given at creation and changed by an edit are kept per revision."""
        post = ws.posts.create(author="ana", text="hi", channels=["acme-x"],
                               media=["https://cdn.example.org/a.png"])
        assert post.media == ("https://cdn.example.org/a.png",)
        edited = ws.edit(post.id, by="ana", media=["https://cdn.example.org/b.mp4"])
        assert (edited.revision, edited.media) == (2, ("https://cdn.example.org/b.mp4",))
        assert [r.media for r in ws.revisions(post.id)] == [
            ("https://cdn.example.org/a.png",), ("https://cdn.example.org/b.mp4",)]
        assert ws.posts.get(post.id) == edited
        assert postflow.replay(ws.history(post.id)) == edited

    @pytest.mark.parametrize("media", [["ftp://x.org/a"], ["not a url"], ["/relative.png"],
                                       ["https://"], "https://x.org/a.png", [3],
                                       ["https://x.org/a\nb"]])
    def test_bad_media_is_refused_and_nothing_stored(
        self, ws: postflow.Workspace, media: Any
    ) -> None:
        """Media must be a list of absolute http(s) URLs."""
        with pytest.raises(postflow.ValidationFailed) as info:
            ws.posts.create(author="ana", text="hi", channels=["acme-x"], media=media)
        assert info.value.problems[0].field == "media"
        assert ws.posts.count() == 0

    def test_publish_records_urls_per_channel(self, ws: postflow.Workspace,
                                              clock: FixedClock) -> None:
        """urls= on publish is merged into published_urls and replayed from the trail."""
        post = scheduled(ws, clock, channels=("acme-x", "acme-li"))
        published = ws.mark_published(post.id, by="cy", urls={"acme-x": "https://x.com/acme/1"})
        assert dict(published.published_urls) == {"acme-x": "https://x.com/acme/1"}
        assert ws.posts.get(post.id) == published
        assert postflow.replay(ws.history(post.id)) == published
        with pytest.raises(TypeError):
            published.published_urls["acme-li"] = "x"  # type: ignore[index]

    @pytest.mark.parametrize(("urls", "field"), [
        ({"acme-ig": "https://i.com/1"}, "urls"), ({"acme-x": "javascript:alert(1)"}, "urls"),
        (["https://x.com/1"], "urls")])
    def test_bad_urls_are_refused(self, ws: postflow.Workspace, clock: FixedClock,
                                  urls: Any, field: str) -> None:
        """A channel the post does not go to, a non-http URL or a non-mapping is refused."""
        post = scheduled(ws, clock)
        with pytest.raises(postflow.ValidationFailed) as info:
            ws.mark_published(post.id, by="cy", urls=urls)
        assert info.value.problems[0].field == field
        assert ws.posts.get(post.id) == post

    def test_urls_is_a_reserved_data_key(self, ws: postflow.Workspace,
                                         clock: FixedClock) -> None:
        """The audit key behind urls= cannot be forged through extra data."""
        post = scheduled(ws, clock)
        with pytest.raises(postflow.ValidationFailed, match="published_urls"):
            ws.fire(post.id, "publish", by="cy", published_urls={"acme-x": "https://e.org"})


class TestSequence:
    """Post.sequence goes up exactly when its calendar time or status changes."""

    def test_time_and_status_changes_count(self, ws: postflow.Workspace,
                                           clock: FixedClock) -> None:
        """Planning, scheduling, rescheduling and unplanning each raise it; edits do not."""
        post = ws.posts.create(author="ana", text="idea", channels=["acme-x"])
        assert post.sequence == 0
        post = ws.plan(post.id, on=date(2030, 2, 1), by="ana")
        assert post.sequence == 1
        post = ws.edit(post.id, by="ana", text="better idea")
        assert post.sequence == 1  # same day, same status
        post = ws.plan(post.id, on=date(2030, 2, 2), by="ana")
        assert post.sequence == 2
        ws.submit(post.id, by="ana")  # still tentative on the same day
        ws.approve(post.id, by="ben")
        assert ws.posts.get(post.id).sequence == 2
        post = ws.schedule(post.id, at=clock.now() + timedelta(days=3), by="cy")
        assert post.sequence == 3  # tentative day -> confirmed time
        post = ws.unschedule(post.id, by="cy")
        assert post.sequence == 4  # back to tentative on the planned day
        post = ws.schedule(post.id, at=clock.now() + timedelta(days=4), by="cy")
        post = ws.archive(post.id, by="dee")
        assert post.sequence == 6  # off the calendar
        assert postflow.replay(ws.history(post.id)) == post

    def test_sequence_survives_reopening(self, tmp_path: Path, make_ws: MakeWs,
                                         clock: FixedClock) -> None:
        """The persisted sequence is read back by a new workspace and keeps rising."""
        url = f"sqlite:///{tmp_path / 'seq.db'}"
        ws = make_ws(url)
        add_team(ws)
        post = scheduled(ws, clock)
        ws.close()
        again = make_ws(url)
        assert again.posts.get(post.id).sequence == post.sequence == 1
        moved = again.unschedule(post.id, by="cy")
        assert moved.sequence == 2


class TestIcal:
    """ws.calendar.ical(): what is on the calendar and the filters."""

    def test_states_on_the_calendar(self, ws: postflow.Workspace, clock: FixedClock) -> None:
        """Scheduled and published posts are confirmed, planned ones tentative, the rest
        absent."""
        confirmed = scheduled(ws, clock)
        published = ws.mark_published(scheduled(ws, clock, days=2).id, by="cy")
        direct = ws.posts.create(author="ana", text="now", channels=["acme-x"])
        ws.submit(direct.id, by="ana")
        ws.approve(direct.id, by="ben")
        direct = ws.mark_published(direct.id, by="cy")  # published without a schedule
        planned = ws.plan(ws.posts.create(author="ana", text="p", channels=["acme-x"]).id,
                          on=date(2030, 1, 10), by="ana")
        unplanned = ws.posts.create(author="ana", text="u", channels=["acme-x"])
        archived = scheduled(ws, clock, days=3)
        ws.archive(archived.id, by="dee")
        found = events(ws.calendar.ical())
        assert set(found) == {uid(confirmed), uid(published), uid(direct), uid(planned)}
        assert uid(unplanned) not in found
        assert str(found[uid(planned)]["status"]) == "TENTATIVE"
        assert found[uid(planned)].decoded("dtstart") == date(2030, 1, 10)
        assert found[uid(direct)].decoded("dtstart") == direct.state_changed_at
        assert {str(found[uid(p)]["status"]) for p in (confirmed, published, direct)} == {
            "CONFIRMED"}

    def test_one_event_per_channel(self, ws: postflow.Workspace, clock: FixedClock) -> None:
        """A post on two channels has two events with their own UIDs and categories."""
        post = scheduled(ws, clock, channels=("acme-x", "acme-li"), campaign="spring")
        found = events(ws.calendar.ical())
        assert set(found) == {uid(post, "acme-x"), uid(post, "acme-li")}
        li = found[uid(post, "acme-li")]
        assert [str(c) for c in li["categories"].cats] == ["acme-li", "linkedin", "spring"]
        assert str(li["summary"]).startswith("[acme-li] ")

    def test_filters(self, ws: postflow.Workspace, clock: FixedClock) -> None:
        """Channel, campaign, state and author filters select events."""
        a = scheduled(ws, clock, channels=("acme-x", "acme-li"), campaign="spring")
        b = scheduled(ws, clock, days=2)
        c = ws.posts.create(author="aaron", text="c", channels=["acme-li"])
        c = ws.plan(c.id, on=date(2030, 1, 20), by="aaron")
        assert set(events(ws.calendar.ical(channels=["acme-li"]))) == {
            uid(a, "acme-li"), uid(c, "acme-li")}
        assert set(events(ws.calendar.ical(campaigns=["spring"]))) == {
            uid(a, "acme-x"), uid(a, "acme-li")}
        assert set(events(ws.calendar.ical(states=["draft"]))) == {uid(c, "acme-li")}
        assert set(events(ws.calendar.ical(authors=["ana"], channels="acme-x"))) == {
            uid(a), uid(b)}

    def test_window(self, ws: postflow.Workspace, clock: FixedClock) -> None:
        """start/end select [start, end); the default window rolls with the clock."""
        soon = scheduled(ws, clock, days=1)
        later = scheduled(ws, clock, days=40)
        now = clock.now()
        assert set(events(ws.calendar.ical(start=now, end=now + timedelta(days=2)))) == {
            uid(soon)}
        assert set(events(ws.calendar.ical(start=now + timedelta(days=1)))) == {
            uid(soon), uid(later)}
        clock.advance(days=35)  # soon is 34 days old: out of the 30-day default window
        assert set(events(ws.calendar.ical())) == {uid(later)}

    def test_planned_day_overlapping_the_start_is_in(self, ws: postflow.Workspace) -> None:
        """An all-day event whose day contains the window's start is in the window."""
        post = ws.plan(ws.posts.create(author="ana", text="p", channels=["acme-x"]).id,
                       on=date(2030, 1, 10), by="ana")
        noon = datetime(2030, 1, 10, 12, tzinfo=UTC)
        assert set(events(ws.calendar.ical(start=noon))) == {uid(post)}
        assert events(ws.calendar.ical(start=noon + timedelta(days=1))) == {}
        assert events(ws.calendar.ical(start=noon - timedelta(days=2),
                                       end=noon - timedelta(hours=12))) == {}

    def test_planning_entries_follow_the_planning_flag(
        self, ws: postflow.Workspace, clock: FixedClock
    ) -> None:
        """Imported entries show beside filtered posts unless planning=False."""
        post = scheduled(ws, clock)
        ws.calendar.import_ical(HOLIDAYS)
        with_planning = events(ws.calendar.ical(channels=["acme-x"]))
        assert len(with_planning) == 3
        assert uid(post) in with_planning
        assert set(events(ws.calendar.ical(planning=False))) == {uid(post)}
        feed, _ = ws.feeds.create("posts-only", planning=False)
        assert ws.feeds.get("posts-only").planning is False
        body = ws.calendar.render_feed(feed).body
        assert set(events(body)) == {uid(post)}

    def test_events_are_in_time_order(self, ws: postflow.Workspace, clock: FixedClock
                                      ) -> None:
        """Posts and planning entries interleave by start time."""
        late = scheduled(ws, clock, days=20)
        early = scheduled(ws, clock, days=1)
        ws.calendar.import_ical(HOLIDAYS)  # 2030-01-15 and 2030-12-25
        found = [str(e["uid"]) for e in
                 icalendar.Calendar.from_ical(ws.calendar.ical()).walk("VEVENT")]
        assert found[:2] == [uid(early), found[1]]
        assert found[1].startswith("planning-")  # the launch on 2030-01-15
        assert found[2] == uid(late)
        assert found[3].startswith("planning-")

    def test_blocked_builtin_builder_is_a_clear_error(
        self, url: str, make_ws: MakeWs, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without the built-in event builder the render fails instead of emitting husks."""
        monkeypatch.setenv("POSTFLOW_DISABLE_PLUGINS", "postflow.calendar")
        ws = make_ws(url)
        add_team(ws)
        post = scheduled(ws, clock)
        with pytest.raises(postflow.ConfigError, match=f"post {post.id} on 'acme-x'"):
            ws.calendar.ical()

    def test_a_plugin_can_replace_the_builtin_builder(
        self, url: str, make_ws: MakeWs, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With the built-in blocked, a sole builder taking only some arguments is used."""

        class MinimalBuilder:
            @hookimpl
            def postflow_calendar_event(self, post: postflow.Post,
                                        event: icalendar.Event) -> None:
                event.add("uid", f"mine-{post.id}")
                event.add("dtstart", post.scheduled_at)
                event.add("summary", "minimal")

        monkeypatch.setenv("POSTFLOW_DISABLE_PLUGINS", "postflow.calendar")
        ws = make_ws(url, plugins=[MinimalBuilder()])
        add_team(ws)
        post = scheduled(ws, clock)
        assert str(events(ws.calendar.ical())[f"mine-{post.id}"]["summary"]) == "minimal"

    def test_backslash_n_is_text_not_a_line_break(self, ws: postflow.Workspace,
                                                  clock: FixedClock) -> None:
        """A literal backslash before N survives (icalendar's own escaper loses it)."""
        post = scheduled(ws, clock, text="Saved to C:\\New folder\\Notes")
        event = events(ws.calendar.ical())[uid(post)]
        assert str(event["description"]).startswith("Saved to C:\\New folder\\Notes\n")
        assert b"C:\\\\New folder" in ws.calendar.ical()

    def test_plugins_change_events_after_the_builtin(
        self, url: str, make_ws: MakeWs, clock: FixedClock
    ) -> None:
        """postflow_calendar_event implementations see the built-in properties."""
        counter = CountingBuilder()
        ws = make_ws(url, plugins=[counter])
        add_team(ws)
        post = scheduled(ws, clock)
        event = events(ws.calendar.ical())[uid(post)]
        assert str(event["x-postflow-channel"]) == "acme-x"
        assert str(event["summary"]) == "[acme-x] Launch day (plugin)"

    def test_settings_name_domain_link_and_length(
        self, url: str, make_ws: MakeWs, clock: FixedClock
    ) -> None:
        """CalendarSettings set the calendar name, UID domain, post link and event length."""
        ws = make_ws(url, calendar=CalendarSettings(
            name="Acme social", domain="social.acme.test", event_minutes=30,
            post_url="https://app.acme.test/posts/{id}"))
        add_team(ws)
        post = scheduled(ws, clock)
        data = ws.calendar.ical()
        calendar = icalendar.Calendar.from_ical(data)
        assert str(calendar["x-wr-calname"]) == "Acme social"
        event = events(data)[f"post-{post.id}-acme-x@social.acme.test"]
        assert event.decoded("dtend") - event.decoded("dtstart") == timedelta(minutes=30)
        assert f"https://app.acme.test/posts/{post.id}" in str(event["description"])


class TestBadInput:
    """Exports refuse bad windows and unknown names, naming the field."""

    @pytest.mark.parametrize(("kwargs", "code"), [
        ({"start": datetime(2030, 2, 1, tzinfo=UTC), "end": datetime(2030, 1, 1, tzinfo=UTC)},
         "start-after-end"),
        ({"start": datetime(2030, 1, 1, tzinfo=UTC), "end": datetime(2030, 1, 1, tzinfo=UTC)},
         "start-after-end"),
        ({"start": datetime(2030, 1, 1)}, "naive-datetime"),
        ({"channels": ["acme-ig"]}, "unknown-channel"),
        ({"campaigns": ["autumn"]}, "unknown-campaign"),
        ({"states": ["pending"]}, "unknown-state"),
        ({"authors": ["zed"]}, "unknown-author"),
    ])
    def test_refused(self, ws: postflow.Workspace, kwargs: dict[str, Any], code: str) -> None:
        """Each bad argument raises ValidationFailed with its code."""
        with pytest.raises(postflow.ValidationFailed) as info:
            ws.calendar.ical(**kwargs)
        assert info.value.problems[0].code == code


HOLIDAYS = b"""BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//test//holidays//EN\r
BEGIN:VEVENT\r
UID:xmas-2030@holidays.test\r
SUMMARY:Christmas Day\r
DTSTART;VALUE=DATE:20301225\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:launch@acme.test\r
SUMMARY:Product launch\r
DESCRIPTION:Keynote\\, then demos\r
DTSTART:20300115T160000Z\r
DTEND:20300115T170000Z\r
END:VEVENT\r
BEGIN:VEVENT\r
SUMMARY:No UID here\r
DTSTART;VALUE=DATE:20300101\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:weekly@acme.test\r
SUMMARY:Standup\r
DTSTART:20300101T090000Z\r
RRULE:FREQ=WEEKLY\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:floating@acme.test\r
SUMMARY:Floating\r
DTSTART:20300102T090000\r
END:VEVENT\r
END:VCALENDAR\r
"""


class TestImport:
    """Planning entries imported from another calendar."""

    def test_import_reports_and_never_duplicates(self, ws: postflow.Workspace) -> None:
        """Entries are added once by UID; unusable events are skipped with a reason."""
        report = ws.calendar.import_ical(HOLIDAYS)
        assert report.added == ("xmas-2030@holidays.test", "launch@acme.test")
        reasons = dict(report.skipped)
        assert reasons == {
            "event 3 ('No UID here')": "it has no UID",
            "event 'weekly@acme.test'": "recurring events are not imported",
            "event 'floating@acme.test'": "it has a floating time (no time zone)",
        }
        again = ws.calendar.import_ical(HOLIDAYS)
        assert (again.added, again.updated) == ((), ())
        assert len(again.unchanged) == 2
        assert len(ws.storage.list_planning_entries()) == 2
        imports = [e for e in ws.audit_log() if e.action == "calendar.import"]
        assert len(imports) == 1  # the unchanged re-import wrote nothing

    def test_entries_show_in_the_calendar_in_their_category(
        self, ws: postflow.Workspace
    ) -> None:
        """Imported entries are tentative, in their category, with stable UIDs."""
        ws.calendar.import_ical(HOLIDAYS, category="holidays")
        found = icalendar.Calendar.from_ical(ws.calendar.ical()).walk("VEVENT")
        assert sorted(str(e["summary"]) for e in found) == ["Christmas Day", "Product launch"]
        for event in found:
            assert str(event["status"]) == "TENTATIVE"
            assert [str(c) for c in event["categories"].cats] == ["holidays"]
            assert str(event["uid"]).startswith("planning-")
        launch = next(e for e in found if str(e["summary"]) == "Product launch")
        assert launch.decoded("dtstart") == datetime(2030, 1, 15, 16, tzinfo=UTC)
        assert str(launch["description"]) == "Keynote, then demos"

    def test_moved_entry_is_updated_with_a_higher_sequence(
        self, ws: postflow.Workspace
    ) -> None:
        """A re-imported event with a new time replaces the entry and bumps SEQUENCE."""
        ws.calendar.import_ical(HOLIDAYS)
        moved = HOLIDAYS.replace(b"20300115T160000Z", b"20300116T160000Z").replace(
            b"20300115T170000Z", b"20300116T170000Z")
        report = ws.calendar.import_ical(moved)
        assert report.updated == ("launch@acme.test",)
        launch = [e for e in ws.storage.list_planning_entries() if e.uid == "launch@acme.test"]
        assert (launch[0].sequence, launch[0].version) == (1, 2)
        assert launch[0].start == datetime(2030, 1, 16, 16, tzinfo=UTC)

    def test_prune_removes_what_the_file_no_longer_has(self, ws: postflow.Workspace) -> None:
        """With prune=True, entries of that category missing from the file go; others stay."""
        ws.calendar.import_ical(HOLIDAYS)
        ws.calendar.import_ical(HOLIDAYS.replace(b"xmas-2030", b"other-cal"), category="x")
        only_launch = HOLIDAYS.replace(b"UID:xmas-2030@holidays.test", b"")
        kept = ws.calendar.import_ical(only_launch)
        assert (kept.removed, len(ws.storage.list_planning_entries())) == ((), 3)
        pruned = ws.calendar.import_ical(only_launch, prune=True)
        assert pruned.removed == ("xmas-2030@holidays.test",)
        assert sorted(e.uid for e in ws.storage.list_planning_entries()) == [
            "launch@acme.test", "other-cal@holidays.test"]
        assert ws.calendar.ical().count(b"SUMMARY:Christmas Day") == 1  # the other category
        assert ws.audit_log()[-1].data["removed"] == ("xmas-2030@holidays.test",)

    @pytest.mark.parametrize("data", [b"", b"hello world", b"BEGIN:VCARD\r\nEND:VCARD\r\n",
                                      b"\x89PNG\r\n\x1a\n\x00\x00"])
    def test_not_icalendar_imports_nothing(self, ws: postflow.Workspace, data: bytes) -> None:
        """Data that is not iCalendar raises ValidationFailed and stores nothing."""
        before = len(ws.audit_log())
        with pytest.raises(postflow.ValidationFailed) as info:
            ws.calendar.import_ical(data)
        assert info.value.problems[0].code == "not-icalendar"
        assert ws.storage.list_planning_entries() == []
        assert len(ws.audit_log()) == before

    def test_only_admins_import(self, ws: postflow.Workspace) -> None:
        """An import by a non-admin member is denied."""
        with pytest.raises(postflow.PermissionDenied):
            ws.calendar.import_ical(HOLIDAYS, by="ana")
        ws.calendar.import_ical(HOLIDAYS, by="dee")
        assert ws.audit_log()[-1].actor == "dee"


class TestFeeds:
    """ws.feeds: tokens, rotation, revocation."""

    def test_token_is_long_random_and_stored_hashed(self, ws: postflow.Workspace) -> None:
        """The token has 256 bits, only its SHA-256 is stored, and it finds the feed."""
        feed, token = ws.feeds.create("team", channels=["acme-x"])
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
        assert feed.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert token not in repr(ws.storage.list_feeds())
        assert not any(token in repr(e) for e in ws.audit_log())
        assert ws.feeds.find(token) == feed
        assert ws.feeds.find(token[:-1]) is None
        _other, other_token = ws.feeds.create("all")
        assert other_token != token

    def test_rotate_and_revoke(self, ws: postflow.Workspace) -> None:
        """Rotation retires the old token; revocation leaves no token at all."""
        _feed, old = ws.feeds.create("team")
        rotated, new = ws.feeds.rotate("team")
        assert (ws.feeds.find(old), ws.feeds.find(new)) == (None, rotated)
        revoked = ws.feeds.revoke("team")
        assert revoked.revoked
        assert ws.feeds.find(new) is None
        assert ws.storage.find_feed(hashlib.sha256(new.encode()).hexdigest()) is None
        _, newest = ws.feeds.rotate("team")
        assert ws.feeds.find(newest) is not None
        assert [e.action for e in ws.audit_log()][-4:] == [
            "feed.create", "feed.rotate", "feed.revoke", "feed.rotate"]

    @pytest.mark.parametrize(("kwargs", "error"), [
        ({"channels": ["acme-ig"]}, postflow.ValidationFailed),
        ({"campaigns": ["autumn"]}, postflow.ValidationFailed),
        ({"by": "ana"}, postflow.PermissionDenied),
    ])
    def test_create_refuses(self, ws: postflow.Workspace, kwargs: dict[str, Any],
                            error: type[Exception]) -> None:
        """Unknown filter names and non-admins are refused; nothing is stored."""
        with pytest.raises(error):
            ws.feeds.create("team", **kwargs)
        assert ws.feeds.list() == []

    def test_names_are_unique_and_lookups_name_the_feed(self, ws: postflow.Workspace) -> None:
        """A taken name is refused; an unknown one is NotFound."""
        ws.feeds.create("team")
        with pytest.raises(postflow.ValidationFailed, match="already exists"):
            ws.feeds.create("team")
        with pytest.raises(postflow.NotFound, match="'nope'"):
            ws.feeds.rotate("nope")


class TestRenderFeed:
    """Feed bytes are re-rendered only when something changed, event by event."""

    def test_cache_serialises_only_what_changed(
        self, url: str, make_ws: MakeWs, clock: FixedClock
    ) -> None:
        """An unchanged feed renders nothing; a changed post re-renders only its events."""
        counter = CountingBuilder()
        ws = make_ws(url, plugins=[counter])
        add_team(ws)
        posts = [scheduled(ws, clock, days=d) for d in (1, 2, 3)]
        feed, _ = ws.feeds.create("team")
        first = ws.calendar.render_feed(feed)
        assert len(counter.calls) == 3
        assert ws.calendar.render_feed(feed) is first
        assert len(counter.calls) == 3
        ws.comment(posts[0].id, by="ben", text="looks good")  # a change, not to an event
        second = ws.calendar.render_feed(feed)
        assert second.body == first.body
        assert second.etag == first.etag
        assert len(counter.calls) == 3
        ws.unschedule(posts[1].id, by="cy")
        ws.schedule(posts[1].id, at=clock.now() + timedelta(days=5), by="cy")
        third = ws.calendar.render_feed(feed)
        assert counter.calls[3:] == [(posts[1].id, "acme-x")]
        assert third.etag != first.etag
        assert third.body == ws.calendar.ical(name="postflow: team")

    def test_channel_change_rerenders_its_posts(self, ws: postflow.Workspace,
                                                clock: FixedClock) -> None:
        """Editing a channel's handle shows in the events without any post changing."""
        scheduled(ws, clock)
        before = ws.calendar.ical()
        ws.channels.update("acme-x", handle="@acme_hq")
        after = ws.calendar.ical()
        assert b"@acme_hq" in after
        assert b"@acme_hq" not in before

    def test_last_modified_follows_changes_and_deletions(
        self, ws: postflow.Workspace, clock: FixedClock
    ) -> None:
        """Last-Modified is the latest change, including a post leaving the feed."""
        post = scheduled(ws, clock)
        feed, _ = ws.feeds.create("team")
        first = ws.calendar.render_feed(feed)
        assert first.last_modified == clock.now().replace(microsecond=0)
        clock.advance(minutes=10, seconds=0.5)
        ws.archive(post.id, by="dee")
        gone = ws.calendar.render_feed(feed)
        assert uid(post).encode() not in gone.body
        assert gone.last_modified == clock.now().replace(microsecond=0)
        assert gone.etag != first.etag

    def test_window_exit_moves_last_modified_to_midnight(
        self, ws: postflow.Workspace, clock: FixedClock
    ) -> None:
        """Days later, with no change stored, Last-Modified is when the window last moved."""
        scheduled(ws, clock)
        feed, _ = ws.feeds.create("team")
        ws.calendar.render_feed(feed)
        clock.advance(days=40)
        later = ws.calendar.render_feed(feed)
        midnight = clock.now().replace(hour=0, minute=0, second=0, microsecond=0)
        assert later.last_modified == midnight
        assert b"BEGIN:VEVENT" not in later.body


def test_importing_postflow_does_not_import_icalendar() -> None:
    """icalendar (about 0.1 s to import) loads only when a calendar is rendered or read."""
    import subprocess
    import sys

    code = ("import sys, postflow; postflow.open('memory://', entry_points=False); "
            "assert 'icalendar' not in sys.modules, 'imported too early'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


class TestReviewFindings:
    """Defects an independent review found, each pinned."""

    def test_last_modified_never_goes_back(self, ws: postflow.Workspace,
                                           clock: FixedClock) -> None:
        """A change committed after a later-stamped one still moves Last-Modified on."""
        scheduled(ws, clock)
        feed, _ = ws.feeds.create("team")
        clock.advance(minutes=10)
        ws.comment(ws.posts.list()[0].id, by="ben", text="later writer")
        first = ws.calendar.render_feed(feed)
        clock.advance(minutes=-5)  # a writer whose clock read came earlier commits now
        scheduled(ws, clock, days=2)
        second = ws.calendar.render_feed(feed)
        assert second.etag != first.etag
        assert second.last_modified > first.last_modified

    @pytest.mark.parametrize(("lines", "reason"), [
        ("DTSTART:20300101T090000Z\r\nDURATION:garbage", "cannot be read"),
        ("DTSTART;VALUE=DATE:99991231", "cannot be read"),
        ("DTSTART:99991231T230000Z\r\nDURATION:PT2H", "cannot be read"),
        ("DTSTART:20300101T090000Z\r\nRECURRENCE-ID:20300101T090000Z",
         "recurrence overrides"),
        ("UID:second\r\nDTSTART:20300101T090000Z", "twice"),
    ])
    def test_unreadable_events_are_skipped_not_fatal(
        self, ws: postflow.Workspace, lines: str, reason: str
    ) -> None:
        """Bad times, overrides and doubled properties skip one event, not the file."""
        data = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:t\r\nBEGIN:VEVENT\r\nUID:bad\r\n"
                f"SUMMARY:Bad\r\n{lines}\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:good\r\n"
                "SUMMARY:Good\r\nDTSTART;VALUE=DATE:20300105\r\nEND:VEVENT\r\n"
                "END:VCALENDAR\r\n").encode()
        report = ws.calendar.import_ical(data)
        assert report.added == ("good",)
        assert len(report.skipped) == 1
        assert reason in report.skipped[0][1]

    def test_timed_entry_without_end_gets_the_event_length(self, ws: postflow.Workspace
                                                           ) -> None:
        """A timed event with no DTEND or DURATION lasts event_minutes, not zero."""
        ws.calendar.import_ical(b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:t\r\n"
                                b"BEGIN:VEVENT\r\nUID:u\r\nSUMMARY:s\r\n"
                                b"DTSTART:20300105T090000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
        [entry] = ws.storage.list_planning_entries()
        assert entry.end - entry.start == timedelta(minutes=15)  # type: ignore[operator]

    def test_custom_workflow_states_with_a_schedule_are_confirmed(
        self, url: str, make_ws: MakeWs, clock: FixedClock
    ) -> None:
        """A workflow that calls its states 'queued' and 'live' still puts posts on it."""
        import copy
        import json

        from postflow.workflow import DEFAULT_WORKFLOW
        definition = json.loads(json.dumps(copy.deepcopy(DEFAULT_WORKFLOW))
                                .replace('"scheduled"', '"queued"')
                                .replace('"published"', '"live"'))
        ws = make_ws(url, workflow=postflow.Workflow.from_dict(definition))
        add_team(ws)
        post = ws.plan(ws.posts.create(author="ana", text="t", channels=["acme-x"]).id,
                       on=date(2030, 1, 9), by="ana")
        ws.submit(post.id, by="ana")
        ws.approve(post.id, by="ben")
        queued = ws.schedule(post.id, at=clock.now() + timedelta(days=1), by="cy")
        event = events(ws.calendar.ical())[uid(queued)]
        assert str(event["status"]) == "CONFIRMED"
        assert event.decoded("dtstart") == queued.scheduled_at
        assert queued.sequence == 2

    def test_settings_are_checked_and_fixed(self, ws: postflow.Workspace) -> None:
        """Bad settings are a ConfigError; the settings of an open workspace are fixed."""
        for bad in ({"event_minutes": 0}, {"post_url": "https://a/p"},
                    {"domain": "a b"}, {"past_days": -1}):
            with pytest.raises(postflow.ConfigError):
                CalendarSettings(**bad)  # type: ignore[arg-type]
        with pytest.raises(AttributeError):
            ws.calendar.settings = CalendarSettings()  # type: ignore[misc]

    def test_post_url_may_hold_other_braces(self, url: str, make_ws: MakeWs,
                                            clock: FixedClock) -> None:
        """Only {id} is filled in; other braces are kept."""
        ws = make_ws(url, calendar=CalendarSettings(
            post_url="https://app.test/p/{id}?utm={source}"))
        add_team(ws)
        post = scheduled(ws, clock)
        assert f"https://app.test/p/{post.id}?utm={{source}}" in str(
            events(ws.calendar.ical())[uid(post)]["description"])

    @pytest.mark.parametrize("kwargs", [{"states": 5}, {"channels": [["acme-x"]]},
                                        {"name": 5}])
    def test_bad_argument_types_are_validation_errors(
        self, ws: postflow.Workspace, kwargs: dict[str, Any]
    ) -> None:
        """Wrong types get ValidationFailed, not a TypeError."""
        with pytest.raises(postflow.ValidationFailed):
            ws.calendar.ical(**kwargs)
        assert ws.feeds.find(5) is None  # type: ignore[arg-type]

    def test_zoneinfo_utc_clock_is_fine(self, url: str, make_ws: MakeWs) -> None:
        """A clock answering in ZoneInfo('UTC') still gives GMT validators."""
        from zoneinfo import ZoneInfo

        from postflow.web import feed_app

        class ZoneClock:
            def now(self) -> datetime:
                return datetime(2030, 1, 1, 9, tzinfo=ZoneInfo("UTC"))

        ws = make_ws(url, clock=ZoneClock())
        add_team(ws)
        _, token = ws.feeds.create("team")
        statuses: list[str] = []
        feed_app(ws)({"REQUEST_METHOD": "GET", "PATH_INFO": f"/feeds/{token}.ics"},
                     lambda status, headers: statuses.append(status))
        assert statuses == ["200 OK"]

    def test_v1_file_gets_the_sequence_its_trail_implies(self, tmp_path: Path,
                                                         make_ws: MakeWs) -> None:
        """Migrating a v1 file computes each post's sequence by replaying its trail."""
        import sqlite3

        from postflow.storage import sqlite as backend
        path = tmp_path / "v1.db"
        ws = make_ws(f"sqlite:///{path}")
        add_team(ws)
        post = ws.plan(ws.posts.create(author="ana", text="t", channels=["acme-x"]).id,
                       on=date(2030, 3, 1), by="ana")
        post = ws.plan(post.id, on=date(2030, 3, 2), by="ana")
        assert post.sequence == 2
        ws.close()
        db = sqlite3.connect(path)  # pretend it was written before the calendar existed
        db.execute("UPDATE posts SET sequence = 0")
        db.execute("UPDATE postflow_meta SET value = '1'")
        db.execute("DROP INDEX posts_planned")
        v1 = sqlite3.connect(":memory:")  # what a version 1 file has
        for statement in backend._SCHEMA_V1.split(";"):
            if statement.strip():
                v1.execute(statement)
        for table in [r[0] for r in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")]:
            keep = {r[1] for r in v1.execute(f"PRAGMA table_info({table})")}
            if not keep:
                if not table.startswith("sqlite_"):
                    db.execute(f"DROP TABLE {table}")
                continue
            for column in [r[1] for r in db.execute(f"PRAGMA table_info({table})")]:
                if column not in keep:
                    db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        db.commit()
        db.close()
        again = make_ws(f"sqlite:///{path}")
        assert again.storage.schema_version() == backend.SCHEMA_VERSION  # type: ignore
        migrated = again.posts.get(post.id)
        assert migrated.sequence == 2
        assert postflow.replay(again.history(post.id)) == migrated
