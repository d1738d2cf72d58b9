"""Recurring posts: an RRULE in the channel's zone, occurrences as posts of their own."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import postflow
from conftest import add_team
from postflow.scheduling import MAX_AHEAD, MAX_PENDING_OCCURRENCES
from postflow.testing import FixedClock

BERLIN = ZoneInfo("Europe/Berlin")
MakeWs = Callable[..., postflow.Workspace]


@pytest.fixture(name="rws")
def _rws(url: str, make_ws: MakeWs, clock: FixedClock) -> postflow.Workspace:
    clock.set(datetime(2030, 3, 20, 12, tzinfo=UTC))
    ws = make_ws(url)
    add_team(ws)
    return ws


def weekly(ws: postflow.Workspace, **kwargs: object) -> tuple[postflow.Series,
                                                               list[postflow.Post]]:
    """Every Monday 09:00 Berlin on acme-li (a Berlin channel), three weeks ahead."""
    options: dict[str, object] = {
        "author": "ana", "text": "Monday tip", "channels": ["acme-li"],
        "rrule": "FREQ=WEEKLY;BYDAY=MO", "start": datetime(2030, 3, 25, 9, tzinfo=BERLIN),
        "ahead": timedelta(days=21)}
    options.update(kwargs)
    return ws.posts.create_series(**options)  # type: ignore[arg-type]


class TestOccurrences:
    """Occurrences are posts of their own, at the same wall-clock time across DST."""

    def test_wall_clock_time_survives_the_dst_change(self, rws: postflow.Workspace) -> None:
        """09:00 Berlin is 08:00Z before 2030-03-31 and 07:00Z after."""
        series, posts = weekly(rws)
        assert [p.occurrence_at for p in posts] == [
            datetime(2030, 3, 25, 8, tzinfo=UTC), datetime(2030, 4, 1, 7, tzinfo=UTC),
            datetime(2030, 4, 8, 7, tzinfo=UTC)]
        assert [p.planned_for for p in posts] == [date(2030, 3, 25), date(2030, 4, 1),
                                                  date(2030, 4, 8)]
        for post in posts:
            assert (post.state, post.series_id, post.text) == ("draft", series.id,
                                                               "Monday tip")
            assert [e.action for e in rws.history(post.id)] == ["create"]
            assert postflow.replay(rws.history(post.id)) == post
        assert len({p.id for p in posts}) == 3

    def test_more_occurrences_as_time_passes_never_twice(
        self, rws: postflow.Workspace, clock: FixedClock
    ) -> None:
        """create_occurrences adds only the new ones, however often it runs."""
        weekly(rws)
        assert rws.create_occurrences() == []
        clock.advance(days=14)
        later = rws.create_occurrences()
        assert [p.planned_for for p in later] == [date(2030, 4, 15), date(2030, 4, 22)]
        assert rws.create_occurrences() == []
        assert rws.posts.count() == 5

    def test_two_processes_do_not_duplicate(self, tmp_path: Path, make_ws: MakeWs,
                                            clock: FixedClock) -> None:
        """Two workspaces on one file extending the same series create each once."""
        clock.set(datetime(2030, 3, 20, 12, tzinfo=UTC))
        url = f"sqlite:///{tmp_path / 'r.db'}"
        one = make_ws(url)
        add_team(one)
        weekly(one)
        two = make_ws(url)
        clock.advance(days=14)
        series = one.storage.list_series()[0]
        made = one.scheduling._extend_series(series, clock.now())
        assert two.scheduling._extend_series(series, clock.now()) == []  # stale: the other won
        assert len(made) == 2
        assert two.posts.count() == 5

    def test_schedule_uses_the_occurrence_time(self, rws: postflow.Workspace) -> None:
        """An approved occurrence is scheduled at its own time when no 'at' is given."""
        _, posts = weekly(rws)
        second = posts[1]
        rws.submit(second.id, by="ana")
        rws.approve(second.id, by="ben")
        scheduled = rws.schedule(second.id, at=None, by="cy")  # type: ignore[arg-type]
        assert scheduled.scheduled_at == datetime(2030, 4, 1, 7, tzinfo=UTC)
        assert scheduled.scheduled_zone == "Europe/Berlin"

    @pytest.mark.parametrize("rrule", ["FREQ=FORTNIGHTLY", "BYDAY=XX", "",
                                       "DTSTART:20300101T000000\nRRULE:FREQ=DAILY"])
    def test_invalid_rrule_stores_nothing(self, rws: postflow.Workspace, rrule: str) -> None:
        """A rule dateutil cannot read is a ValidationFailed naming the rrule."""
        with pytest.raises(postflow.ValidationFailed) as info:
            weekly(rws, rrule=rrule)
        assert info.value.problems[0].field == "rrule"
        assert rws.storage.list_series() == []
        assert rws.posts.count() == 0

    def test_an_hourly_rule_is_bounded_per_series(self, rws: postflow.Workspace,
                                                  clock: FixedClock) -> None:
        """A series keeps at most MAX_PENDING_OCCURRENCES drafts ahead, whatever its
        window: more come only as those fall due, never thousands at once."""
        series, posts = weekly(rws, rrule="FREQ=HOURLY", ahead=timedelta(days=100),
                               start=datetime(2030, 3, 20, 14, tzinfo=BERLIN))
        assert len(posts) == MAX_PENDING_OCCURRENCES
        assert rws.create_occurrences() == []  # the series has its drafts ahead
        clock.advance(hours=10)  # ten of them fell due
        more = rws.create_occurrences()
        assert len(more) == 10
        assert min(p.occurrence_at for p in more) > max(p.occurrence_at for p in posts)
        assert rws.posts.count() == MAX_PENDING_OCCURRENCES + 10
        assert all(p.series_id == series.id for p in more)

    def test_a_window_over_a_year_is_refused(self, rws: postflow.Workspace) -> None:
        """``ahead`` is at most MAX_AHEAD."""
        with pytest.raises(postflow.ValidationFailed, match="ahead"):
            weekly(rws, ahead=MAX_AHEAD + timedelta(days=1))

    @pytest.mark.parametrize("rrule", ["FREQ=MINUTELY", "FREQ=SECONDLY",
                                       "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30"])
    def test_too_frequent_or_impossible_rules_are_refused(
        self, rws: postflow.Workspace, rrule: str
    ) -> None:
        """Sub-hourly rules and rules that never occur are refused at once."""
        with pytest.raises(postflow.ValidationFailed):
            weekly(rws, rrule=rrule)

    def test_utc_until_is_accepted(self, rws: postflow.Workspace) -> None:
        """UNTIL in UTC (as RFC 5545 wants with a zoned start) bounds the series."""
        _, posts = weekly(rws, rrule="FREQ=WEEKLY;UNTIL=20300402T000000Z",
                          ahead=timedelta(days=60))
        assert [p.planned_for for p in posts] == [date(2030, 3, 25), date(2030, 4, 1)]

    def test_past_occurrences_are_not_created(self, rws: postflow.Workspace) -> None:
        """A start in the past creates only the occurrences still ahead."""
        _, posts = weekly(rws, start=datetime(2030, 1, 7, 9, tzinfo=BERLIN))
        assert [p.planned_for for p in posts] == [date(2030, 3, 25), date(2030, 4, 1),
                                                  date(2030, 4, 8)]

    def test_no_occurrences_after_the_author_left(self, rws: postflow.Workspace,
                                                  clock: FixedClock) -> None:
        """A series whose author is no longer active creates nothing more."""
        weekly(rws)
        rws.team.update("ana", active=False)
        clock.advance(days=30)
        assert rws.create_occurrences() == []

    def test_hourly_over_the_spring_gap_has_no_twin(self, rws: postflow.Workspace) -> None:
        """Two local times that fall into one instant at the DST gap give one post."""
        _, posts = weekly(rws, rrule="FREQ=HOURLY", ahead=timedelta(days=12),
                          start=datetime(2030, 3, 30, 22, tzinfo=BERLIN))
        instants = [p.occurrence_at for p in posts]
        assert len(instants) == len(set(instants))
