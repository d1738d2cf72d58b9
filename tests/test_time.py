"""Time: aware datetimes only, UTC plus the zone given, DST gaps and folds, the clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import pytest

import postflow
from postflow.testing import FixedClock

BERLIN = ZoneInfo("Europe/Berlin")


def approved_post(ws: postflow.Workspace) -> postflow.Post:
    """A new approved post ready to schedule."""
    post = ws.posts.create(author="ana", text="Timely", channels=["acme-x"])
    ws.submit(post.id, by="ana")
    return ws.approve(post.id, by="ben")


def only_problem(error: postflow.ValidationFailed) -> postflow.Problem:
    """The single problem of a ValidationFailed."""
    (problem,) = error.problems
    return problem


class TestNaive:
    """Naive datetimes are refused."""

    def test_schedule_naive(self, ws: postflow.Workspace) -> None:
        """schedule() with a naive datetime raises naive-datetime on field 'at'."""
        post = approved_post(ws)
        with pytest.raises(postflow.ValidationFailed) as info:
            ws.schedule(post.id, at=datetime(2031, 1, 1, 12, 0), by="cy")
        problem = only_problem(info.value)
        assert (problem.code, problem.field) == ("naive-datetime", "at")
        assert f"post {post.id}" in str(info.value)
        assert "timezone-aware" in str(info.value)
        assert ws.posts.get(post.id) == post

    def test_schedule_not_a_datetime(self, ws: postflow.Workspace) -> None:
        """schedule() with a string is refused."""
        post = approved_post(ws)
        with pytest.raises(postflow.ValidationFailed) as info:
            ws.schedule(post.id, at="2031-01-01T12:00Z", by="cy")  # type: ignore[arg-type]
        assert only_problem(info.value).code == "not-a-datetime"

    @pytest.mark.parametrize("index", [0, 1])
    def test_between_naive(self, ws: postflow.Workspace, index: int) -> None:
        """posts.list(between=...) with a naive end raises naive-datetime on that end."""
        aware = datetime(2031, 1, 1, tzinfo=UTC)
        naive = datetime(2031, 1, 2)
        between = (naive, aware + timedelta(days=5)) if index == 0 else (aware, naive)
        with pytest.raises(postflow.ValidationFailed) as info:
            ws.posts.list(between=between)
        problem = only_problem(info.value)
        assert problem.code == "naive-datetime"
        assert problem.field == f"between[{index}]"
        with pytest.raises(postflow.ValidationFailed):
            ws.posts.count(between=between)

    def test_between_in_other_zone(self, ws: postflow.Workspace, clock: FixedClock) -> None:
        """A range given in another zone selects by the instant, not the wall clock."""
        post = approved_post(ws)
        at = datetime(2030, 1, 2, 10, 0, tzinfo=UTC)
        ws.schedule(post.id, at=at, by="cy")
        # 11:00 in Berlin (winter, UTC+1) is 10:00 UTC.
        start = datetime(2030, 1, 2, 11, 0, tzinfo=BERLIN)
        assert [p.id for p in ws.posts.list(between=(start, None))] == [post.id]
        assert ws.posts.list(between=(start + timedelta(seconds=1), None)) == []


class TestStoredZone:
    """Scheduled times are stored as UTC plus the zone they were given in."""

    def test_iana_zone(self, ws: postflow.Workspace) -> None:
        """A Europe/Berlin time is stored in UTC with the zone name, and round-trips."""
        post = approved_post(ws)
        local = datetime(2030, 7, 1, 9, 30, tzinfo=BERLIN)
        scheduled = ws.schedule(post.id, at=local, by="cy")
        stored = ws.posts.get(post.id)
        assert stored == scheduled
        assert stored.scheduled_at == datetime(2030, 7, 1, 7, 30, tzinfo=UTC)
        assert stored.scheduled_at is not None
        assert stored.scheduled_at.utcoffset() == timedelta(0)
        assert stored.scheduled_zone == "Europe/Berlin"
        back = stored.scheduled_local
        assert back == local
        assert back is not None
        assert (back.hour, back.minute) == (9, 30)
        assert isinstance(back.tzinfo, ZoneInfo)
        assert back.tzinfo.key == "Europe/Berlin"

    def test_audit_records_utc_and_zone(self, ws: postflow.Workspace) -> None:
        """The schedule entry records the UTC instant and the zone."""
        post = approved_post(ws)
        ws.schedule(post.id, at=datetime(2030, 7, 1, 9, 30, tzinfo=BERLIN), by="cy")
        entry = ws.history(post.id)[-1]
        assert entry.data["scheduled_at"] == "2030-07-01T07:30:00+00:00"
        assert entry.data["scheduled_zone"] == "Europe/Berlin"

    def test_utc(self, ws: postflow.Workspace) -> None:
        """A UTC time is stored with zone 'UTC'."""
        post = approved_post(ws)
        post = ws.schedule(post.id, at=datetime(2030, 3, 1, 8, tzinfo=UTC), by="cy")
        assert post.scheduled_zone == "UTC"
        assert post.scheduled_local == datetime(2030, 3, 1, 8, tzinfo=UTC)

    @pytest.mark.parametrize(("offset", "name"), [
        (timedelta(hours=2), "UTC+02:00"),
        (timedelta(hours=-5, minutes=-30), "UTC-05:30"),
    ])
    def test_fixed_offset(self, ws: postflow.Workspace, offset: timedelta, name: str
                          ) -> None:
        """A fixed-offset tzinfo is stored as 'UTC±HH:MM' and converts back."""
        post = approved_post(ws)
        local = datetime(2030, 3, 1, 12, 0, tzinfo=timezone(offset))
        post = ws.schedule(post.id, at=local, by="cy")
        stored = ws.posts.get(post.id)
        assert stored.scheduled_zone == name
        assert stored.scheduled_at == local.astimezone(UTC)
        back = stored.scheduled_local
        assert back == local
        assert back is not None
        assert back.utcoffset() == offset


class TestInThePast:
    """schedule refuses times that are not in the future (by the injected clock)."""

    @pytest.mark.parametrize("delta", [timedelta(0), timedelta(seconds=-1),
                                       timedelta(days=-400)])
    def test_past_or_now(self, ws: postflow.Workspace, clock: FixedClock,
                         delta: timedelta) -> None:
        """Now or earlier is refused with in-the-past on field 'at'."""
        post = approved_post(ws)
        with pytest.raises(postflow.ValidationFailed) as info:
            ws.schedule(post.id, at=clock.now() + delta, by="cy")
        problem = only_problem(info.value)
        assert (problem.code, problem.field) == ("in-the-past", "at")
        assert "not in the future" in problem.message
        assert ws.posts.get(post.id) == post

    def test_one_second_ahead(self, ws: postflow.Workspace, clock: FixedClock) -> None:
        """One second after the clock's now is accepted."""
        post = approved_post(ws)
        post = ws.schedule(post.id, at=clock.now() + timedelta(seconds=1), by="cy")
        assert post.state == "scheduled"

    def test_follows_clock(self, ws: postflow.Workspace, clock: FixedClock) -> None:
        """A time that was in the future is refused once the clock has passed it."""
        post = approved_post(ws)
        at = clock.now() + timedelta(hours=1)
        clock.advance(hours=2)
        with pytest.raises(postflow.ValidationFailed, match="in-the-past"):
            ws.schedule(post.id, at=at, by="cy")


class TestDst:
    """DST gaps are refused; DST folds pick the occurrence by ``fold``."""

    @pytest.fixture(name="early_clock")
    def _early_clock(self, clock: FixedClock) -> FixedClock:
        """The shared clock moved back to 2027-01-01 so 2027 dates are in the future."""
        clock.set(datetime(2027, 1, 1, tzinfo=UTC))
        return clock

    def test_gap(self, ws: postflow.Workspace, early_clock: FixedClock) -> None:
        """2027-03-28 02:30 does not exist in Berlin: nonexistent-local-time."""
        post = approved_post(ws)
        with pytest.raises(postflow.ValidationFailed) as info:
            ws.schedule(post.id, at=datetime(2027, 3, 28, 2, 30, tzinfo=BERLIN), by="cy")
        problem = only_problem(info.value)
        assert (problem.code, problem.field) == ("nonexistent-local-time", "at")
        assert "Europe/Berlin" in problem.message
        assert "2027-03-28T02:30" in problem.message
        assert ws.posts.get(post.id) == post

    @pytest.mark.parametrize("fold", [0, 1])
    def test_gap_either_fold(self, ws: postflow.Workspace, early_clock: FixedClock,
                             fold: int) -> None:
        """A gap time is refused whatever its fold attribute."""
        post = approved_post(ws)
        at = datetime(2027, 3, 28, 2, 30, tzinfo=BERLIN, fold=fold)
        with pytest.raises(postflow.ValidationFailed, match="nonexistent-local-time"):
            ws.schedule(post.id, at=at, by="cy")

    def test_around_gap(self, ws: postflow.Workspace, early_clock: FixedClock) -> None:
        """01:59 and 03:00 on the gap day exist and are an hour apart in UTC."""
        a, b = approved_post(ws), approved_post(ws)
        a = ws.schedule(a.id, at=datetime(2027, 3, 28, 1, 59, tzinfo=BERLIN), by="cy")
        b = ws.schedule(b.id, at=datetime(2027, 3, 28, 3, 0, tzinfo=BERLIN), by="cy")
        assert a.scheduled_at == datetime(2027, 3, 28, 0, 59, tzinfo=UTC)
        assert b.scheduled_at == datetime(2027, 3, 28, 1, 0, tzinfo=UTC)

    def test_fold(self, ws: postflow.Workspace, early_clock: FixedClock) -> None:
        """2027-10-31 02:30 Berlin happens twice: fold=0 is CEST, fold=1 is CET."""
        first, second = approved_post(ws), approved_post(ws)
        first = ws.schedule(
            first.id, at=datetime(2027, 10, 31, 2, 30, tzinfo=BERLIN, fold=0), by="cy")
        second = ws.schedule(
            second.id, at=datetime(2027, 10, 31, 2, 30, tzinfo=BERLIN, fold=1), by="cy")
        assert first.scheduled_at == datetime(2027, 10, 31, 0, 30, tzinfo=UTC)
        assert second.scheduled_at == datetime(2027, 10, 31, 1, 30, tzinfo=UTC)
        stored_first = ws.posts.get(first.id)
        stored_second = ws.posts.get(second.id)
        assert stored_first.scheduled_at != stored_second.scheduled_at
        assert stored_first.scheduled_zone == stored_second.scheduled_zone == "Europe/Berlin"
        local_first, local_second = stored_first.scheduled_local, stored_second.scheduled_local
        assert local_first is not None
        assert local_second is not None
        assert (local_first.hour, local_first.minute, local_first.fold) == (2, 30, 0)
        assert (local_second.hour, local_second.minute, local_second.fold) == (2, 30, 1)
        assert local_first.utcoffset() == timedelta(hours=2)
        assert local_second.utcoffset() == timedelta(hours=1)
        in_order = ws.posts.list(state="scheduled",
                                 between=(datetime(2027, 10, 31, tzinfo=UTC), None))
        assert [p.id for p in in_order] == [first.id, second.id]


class TestFixedClock:
    """postflow.testing.FixedClock."""

    def test_default_start(self) -> None:
        """It starts at 2030-01-01 09:00 UTC and stands still."""
        clock = FixedClock()
        assert clock.now() == datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
        assert clock.now() == clock.now()

    def test_start_converted_to_utc(self) -> None:
        """An aware start in another zone is kept as the same instant in UTC."""
        clock = FixedClock(datetime(2030, 6, 1, 12, 0, tzinfo=BERLIN))
        assert clock.now() == datetime(2030, 6, 1, 10, 0, tzinfo=UTC)
        assert clock.now().tzinfo is UTC

    def test_naive_start_refused(self) -> None:
        """A naive start is refused."""
        with pytest.raises(postflow.ValidationFailed, match="naive-datetime"):
            FixedClock(datetime(2030, 1, 1))

    def test_advance(self) -> None:
        """advance() moves by a timedelta or keyword units and returns the new time."""
        clock = FixedClock()
        assert clock.advance(timedelta(hours=1)) == datetime(2030, 1, 1, 10, tzinfo=UTC)
        assert clock.advance(minutes=30, seconds=5) == datetime(2030, 1, 1, 10, 30, 5,
                                                                tzinfo=UTC)
        assert clock.now() == datetime(2030, 1, 1, 10, 30, 5, tzinfo=UTC)

    def test_set(self) -> None:
        """set() jumps to an aware instant, backwards too; naive is refused."""
        clock = FixedClock()
        clock.set(datetime(2029, 12, 31, 23, 0, tzinfo=BERLIN))
        assert clock.now() == datetime(2029, 12, 31, 22, 0, tzinfo=UTC)
        with pytest.raises(postflow.ValidationFailed, match="naive-datetime"):
            clock.set(datetime(2030, 1, 1))
        assert clock.now() == datetime(2029, 12, 31, 22, 0, tzinfo=UTC)

    def test_drives_workspace_times(self, ws: postflow.Workspace, clock: FixedClock
                                    ) -> None:
        """A workspace stamps posts and entries with the injected clock's time."""
        clock.set(datetime(2030, 5, 5, 5, 5, tzinfo=UTC))
        post = ws.posts.create(author="ana", text="now", channels=["acme-x"])
        assert post.created_at == datetime(2030, 5, 5, 5, 5, tzinfo=UTC)
        clock.advance(hours=1)
        post = ws.submit(post.id, by="ana")
        assert post.updated_at == datetime(2030, 5, 5, 6, 5, tzinfo=UTC)
        assert ws.history(post.id)[-1].at == datetime(2030, 5, 5, 6, 5, tzinfo=UTC)

    def test_system_clock(self) -> None:
        """The real clock returns an aware UTC time."""
        assert postflow.SystemClock().now().tzinfo is UTC


class _NamedZone(tzinfo):
    """A pytz-style zone: knows its IANA name as ``zone``, fixed at +01:00 here."""

    zone = "Europe/Berlin"

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return timedelta(hours=1) if dt is not None else None

    def dst(self, dt: datetime | None) -> timedelta | None:
        return timedelta(0)


class _OffsetOnlyZone(tzinfo):
    """A dateutil-style zone: no name, and no offset without a datetime."""

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return timedelta(hours=-5) if dt is not None else None

    def dst(self, dt: datetime | None) -> timedelta | None:
        return timedelta(0)


class TestOtherTzinfoKinds:
    """Zones from libraries other than zoneinfo keep a usable name."""

    def test_named_zone_keeps_its_name(self, ws: postflow.Workspace) -> None:
        """A zone with a ``zone`` attribute is stored under that IANA name."""
        post = approved_post(ws)
        at = datetime(2030, 1, 2, 10, 0, tzinfo=_NamedZone())
        done = ws.schedule(post.id, at=at, by="cy")
        assert done.scheduled_zone == "Europe/Berlin"
        assert done.scheduled_at == datetime(2030, 1, 2, 9, 0, tzinfo=UTC)

    def test_offset_only_zone_is_stored_as_its_offset(self, ws: postflow.Workspace) -> None:
        """A zone that only answers with a datetime is stored as that fixed offset."""
        post = approved_post(ws)
        at = datetime(2030, 1, 2, 10, 0, tzinfo=_OffsetOnlyZone())
        done = ws.schedule(post.id, at=at, by="cy")
        assert done.scheduled_zone == "UTC-05:00"
        assert done.scheduled_local == at

    def test_instant_out_of_range_is_a_validation_error(self, ws: postflow.Workspace) -> None:
        """A time that cannot be converted to UTC is refused with a clear code."""
        post = approved_post(ws)
        at = datetime(1, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))
        with pytest.raises(postflow.ValidationFailed) as info:
            ws.schedule(post.id, at=at, by="cy")
        assert info.value.problems[0].code == "out-of-range"
