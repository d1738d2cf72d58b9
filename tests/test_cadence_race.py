"""Cadence is checked and written in one atomic step: two processes (or threads)
scheduling into a ``max_per_day=1`` channel never both succeed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import postflow
from postflow.testing import FixedClock

ROUNDS = 6
DAY0 = datetime(2030, 2, 1, tzinfo=UTC)

SCHEDULER = """
import sys, time
from datetime import datetime, timedelta, UTC
import postflow
from postflow.testing import FixedClock

class SlowDown:  # widens the window between the cadence check and the write
    @postflow.hookimpl
    def postflow_before_transition(self, trigger):
        if trigger == "schedule":
            time.sleep(0.05)

url, go, hour = sys.argv[1], sys.argv[2], int(sys.argv[3])
ws = postflow.open(url, entry_points=False, clock=FixedClock(), plugins=[SlowDown()])
while not __import__("os").path.exists(go):
    time.sleep(0.001)
results = []
for n, post in enumerate(p for p in ws.posts.list(state="approved") if p.text.endswith(str(hour))):
    day = datetime(2030, 2, 1, tzinfo=UTC) + timedelta(days=int(post.text.split()[1]))
    try:
        ws.schedule(post.id, at=day + timedelta(hours=hour), by="cy")
        results.append("ok")
    except postflow.ValidationFailed as exc:
        assert exc.problems[0].code == "cadence-daily-limit", exc
        results.append("refused")
print(" ".join(results))
"""


class SlowDown:
    """Widens the window between the cadence check and the write, as a slow disk or a
    busy machine would."""

    @postflow.hookimpl
    def postflow_before_transition(self, trigger: str) -> None:
        if trigger == "schedule":
            time.sleep(0.05)


def fill(ws: postflow.Workspace) -> None:
    """A team, a max_per_day=1 channel and two approved posts for each day."""
    ws.team.add("ana", roles={"author"})
    ws.team.add("ben", roles={"approver"})
    ws.team.add("cy", roles={"publisher"})
    ws.channels.add("slow", network="x", cadence=postflow.Cadence(max_per_day=1))
    for day in range(ROUNDS):
        for hour in (10, 11):
            post = ws.posts.create(author="ana", text=f"day {day} at {hour}",
                                   channels=["slow"])
            ws.submit(post.id, by="ana")
            ws.approve(post.id, by="ben")


def prepare(url: str) -> None:
    with postflow.open(url, entry_points=False, clock=FixedClock()) as ws:
        fill(ws)


def scheduled_per_day(url: str) -> list[int]:
    with postflow.open(url, entry_points=False, clock=FixedClock()) as ws:
        posts = ws.posts.list(state="scheduled")
    return [sum(1 for p in posts if p.scheduled_at is not None
                and p.scheduled_at.date() == (DAY0 + timedelta(days=d)).date())
            for d in range(ROUNDS)]


@pytest.mark.slow
class TestTwoProcesses:
    """Two real processes race for the same days on one SQLite file."""

    def test_one_post_a_day_whoever_wins(self, tmp_path: Path) -> None:
        """Every day ends with exactly one post; the loser hears the cadence rule."""
        url = f"sqlite:///{tmp_path / 'race.db'}"
        prepare(url)
        script = tmp_path / "scheduler.py"
        script.write_text(textwrap.dedent(SCHEDULER), encoding="utf-8")
        go = tmp_path / "go"
        procs = [subprocess.Popen([sys.executable, str(script), url, str(go), str(hour)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for hour in (10, 11)]
        time.sleep(1.0)  # both opened and waiting
        go.touch()
        outputs = [p.communicate(timeout=120) for p in procs]
        for proc, (_, err) in zip(procs, outputs, strict=True):
            assert proc.returncode == 0, err
        results = [out.split() for out, _ in outputs]
        assert scheduled_per_day(url) == [1] * ROUNDS
        assert sum(r.count("ok") for r in results) == ROUNDS
        assert sum(r.count("refused") for r in results) == ROUNDS


class TestThreads:
    """The same race between threads sharing a backend (memory:// and SQLite)."""

    def test_one_post_a_day(self, url: str) -> None:
        """Threads released together never put two posts on one day."""
        ws = postflow.open(url, entry_points=False, clock=FixedClock(), plugins=[SlowDown()])
        fill(ws)
        barrier = threading.Barrier(2)
        outcomes: list[str] = []

        def schedule(hour: int) -> None:
            posts = [p for p in ws.posts.list(state="approved")
                     if p.text.endswith(str(hour))]
            barrier.wait()
            for post in posts:
                day = DAY0 + timedelta(days=int(post.text.split()[1]))
                try:
                    ws.schedule(post.id, at=day + timedelta(hours=hour), by="cy")
                    outcomes.append("ok")
                except postflow.ValidationFailed:
                    outcomes.append("refused")

        threads = [threading.Thread(target=schedule, args=(h,)) for h in (10, 11)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        posts = ws.posts.list(state="scheduled")
        per_day = [sum(1 for p in posts if p.scheduled_at is not None
                       and p.scheduled_at.date() == (DAY0 + timedelta(days=d)).date())
                   for d in range(ROUNDS)]
        ws.close()
        assert per_day == [1] * ROUNDS
        assert sorted(outcomes) == ["ok"] * ROUNDS + ["refused"] * ROUNDS
