"""Per-channel cadence: daily limits, minimum gaps, quiet hours, and suggested slots."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

import postflow
from conftest import add_team
from postflow import Cadence
from postflow.testing import FixedClock

BERLIN = ZoneInfo("Europe/Berlin")
MakeWs = Callable[..., postflow.Workspace]


@pytest.fixture(name="cws")
def _cws(url: str, make_ws: MakeWs, clock: FixedClock) -> postflow.Workspace:
    """A workspace whose Berlin channel allows 2 posts a day, 2 h apart, none 22-07."""
    clock.set(datetime(2030, 3, 1, 8, tzinfo=UTC))
    ws = make_ws(url)
    add_team(ws)
    ws.channels.update("acme-li", cadence=Cadence(
        max_per_day=2, min_gap=timedelta(hours=2), quiet_start=time(22),
        quiet_end=time(7)))
    return ws


def approved(ws: postflow.Workspace, channel: str = "acme-li") -> postflow.Post:
    post = ws.posts.create(author="ana", text="hello", channels=[channel])
    ws.submit(post.id, by="ana")
    return ws.approve(post.id, by="ben")


def refused(ws: postflow.Workspace, at: datetime, channel: str = "acme-li") -> str:
    """Schedule a fresh post at ``at`` and return the rule code it breaks."""
    post = approved(ws, channel)
    with pytest.raises(postflow.ValidationFailed) as info:
        ws.schedule(post.id, at=at, by="cy")
    assert ws.posts.get(post.id).state == "approved"
    problem = info.value.problems[0]
    assert problem.channel == channel
    return f"{problem.code}: {problem.message}"


class TestRules:
    """schedule refuses a slot that breaks a rule, naming the rule and the clash."""

    def test_quiet_hours_in_the_channel_zone(self, cws: postflow.Workspace) -> None:
        """23:30 Berlin is quiet; 07:00 is not (the range wraps midnight)."""
        message = refused(cws, datetime(2030, 3, 2, 23, 30, tzinfo=BERLIN))
        assert message.startswith("cadence-quiet-hours: 23:30")
        assert "22:00-07:00 Europe/Berlin" in message
        post = approved(cws)
        cws.schedule(post.id, at=datetime(2030, 3, 2, 7, 0, tzinfo=BERLIN), by="cy")

    def test_minimum_gap_names_the_clashing_post(self, cws: postflow.Workspace) -> None:
        """A post 1 h after another breaks the 2 h gap; 2 h after is fine."""
        first = approved(cws)
        cws.schedule(first.id, at=datetime(2030, 3, 2, 9, tzinfo=BERLIN), by="cy")
        message = refused(cws, datetime(2030, 3, 2, 10, tzinfo=BERLIN))
        assert message.startswith("cadence-min-gap")
        assert f"post {first.id} is at 2030-03-02 09:00" in message
        ok = approved(cws)
        cws.schedule(ok.id, at=datetime(2030, 3, 2, 11, tzinfo=BERLIN), by="cy")

    def test_daily_limit_counts_the_local_day(self, cws: postflow.Workspace) -> None:
        """Two posts on the Berlin day fill it; the next Berlin day is free."""
        for hour in (8, 12):
            post = approved(cws)
            cws.schedule(post.id, at=datetime(2030, 3, 2, hour, tzinfo=BERLIN), by="cy")
        message = refused(cws, datetime(2030, 3, 2, 18, tzinfo=BERLIN))
        assert message.startswith("cadence-daily-limit")
        assert "2030-03-02 already has 2" in message
        post = approved(cws)
        # 23:30 UTC on the 2nd is 00:30 on the 3rd in Berlin: a new day, but quiet
        assert refused(cws, datetime(2030, 3, 2, 23, 30, tzinfo=UTC)).startswith(
            "cadence-quiet-hours")
        cws.schedule(post.id, at=datetime(2030, 3, 3, 8, tzinfo=BERLIN), by="cy")

    def test_rescheduling_does_not_clash_with_itself(self, cws: postflow.Workspace) -> None:
        """Moving a post by an hour does not count the post against itself."""
        post = approved(cws)
        cws.schedule(post.id, at=datetime(2030, 3, 2, 9, tzinfo=BERLIN), by="cy")
        cws.unschedule(post.id, by="cy")
        cws.schedule(post.id, at=datetime(2030, 3, 2, 10, tzinfo=BERLIN), by="cy")

    def test_channels_without_rules_are_free(self, cws: postflow.Workspace) -> None:
        """acme-x has no cadence: anything goes."""
        for minute in (0, 1):
            post = approved(cws, "acme-x")
            cws.schedule(post.id, at=datetime(2030, 3, 2, 23, minute, tzinfo=BERLIN),
                         by="cy")

    def test_rules_survive_reopening(self, tmp_path: object, make_ws: MakeWs) -> None:
        """The cadence is stored with the channel."""
        from pathlib import Path

        url = f"sqlite:///{Path(str(tmp_path)) / 'c.db'}"
        ws = make_ws(url)
        add_team(ws)
        rules = Cadence(max_per_day=3, min_gap=timedelta(minutes=90), quiet_start=time(23),
                        quiet_end=time(6, 30))
        ws.channels.update("acme-x", cadence=rules)
        ws.close()
        assert make_ws(url).channels.get("acme-x").cadence == rules

    @pytest.mark.parametrize("kwargs", [
        {"max_per_day": 0}, {"min_gap": timedelta(0)}, {"quiet_start": time(22)},
        {"quiet_start": time(7), "quiet_end": time(7)},
    ])
    def test_bad_rules(self, kwargs: dict[str, object]) -> None:
        """Rules that cannot work are a ConfigError."""
        with pytest.raises(postflow.ConfigError):
            Cadence(**kwargs)  # type: ignore[arg-type]


class TestSuggestSlots:
    """ws.suggest_slots proposes free times."""

    def test_slots_respect_every_rule(self, cws: postflow.Workspace) -> None:
        """Suggestions skip quiet hours, keep the gap and fill each day to its limit."""
        taken = approved(cws)
        cws.schedule(taken.id, at=datetime(2030, 3, 1, 10, tzinfo=BERLIN), by="cy")
        slots = cws.suggest_slots("acme-li", after=datetime(2030, 3, 1, 9, 5, tzinfo=BERLIN),
                                  count=4)
        assert [s.isoformat() for s in slots] == [
            "2030-03-01T12:00:00+01:00",  # 10:00 is taken, +2 h gap
            "2030-03-02T07:00:00+01:00",  # the 1st is full (2), then quiet until 07:00
            "2030-03-02T09:00:00+01:00",
            "2030-03-03T07:00:00+01:00",
        ]
        for slot in slots[:1]:
            post = approved(cws)
            cws.schedule(post.id, at=slot, by="cy")  # a suggested slot is accepted

    def test_unknown_channel(self, cws: postflow.Workspace) -> None:
        """An unknown channel is NotFound."""
        with pytest.raises(postflow.NotFound):
            cws.suggest_slots("nope")
