"""``postflow worker``, ``pause``, ``resume`` and ``status`` as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import postflow

pytestmark = pytest.mark.acceptance
POSTFLOW = Path(sys.executable).with_name("postflow")


def make_db(folder: Path, posts: int, *, seconds: float = 0.5) -> str:
    """A SQLite file with ``posts`` posts due in ``seconds`` on a dry-run channel."""
    url = f"sqlite:///{folder / 'social.db'}"
    ws = postflow.open(url, entry_points=False)
    ws.team.add("ana", roles={"author"})
    ws.team.add("ben", roles={"approver"})
    ws.team.add("cy", roles={"publisher"})
    ws.channels.add("acme-x", network="x", publisher="dry-run",
                    settings={"path": str(folder / "sent.jsonl")})
    at = datetime.now(UTC) + timedelta(seconds=seconds)
    for i in range(posts):
        post = ws.posts.create(author="ana", text=f"post {i}", channels=["acme-x"])
        ws.submit(post.id, by="ana")
        ws.approve(post.id, by="ben")
        ws.schedule(post.id, at=at, by="cy")
    ws.close()
    time.sleep(seconds + 0.1)
    return url


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(POSTFLOW), *args], capture_output=True, text=True,
                          timeout=120, check=False, env={**os.environ, **(env or {})})


class TestWorker:
    """The worker loop."""

    def test_once_publishes_everything_due_and_logs_json(self, tmp_path: Path) -> None:
        """--once drains what is due (more than one batch) and logs one JSON line each."""
        url = make_db(tmp_path, 7)
        done = run("worker", "--db", url, "--once", "--batch", "3", "--log-format", "json",
                   "--id", "w1")
        assert done.returncode == 0, done.stderr
        lines = [json.loads(line) for line in done.stderr.splitlines()]
        lines = [line for line in lines if "result" in line]  # outcomes, not messages
        assert sorted(line["post"] for line in lines) == list(range(1, 8))
        assert {line["result"] for line in lines} == {"published"}
        assert {line["worker"] for line in lines} == {"w1"}
        assert "progress: 7 published" in done.stderr
        assert "Finished processing state" not in done.stderr  # transitions' INFO lines
        sent = (tmp_path / "sent.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(sent) == 7

    def test_sigterm_stops_gracefully(self, tmp_path: Path) -> None:
        """SIGTERM ends the loop between passes with exit code 0."""
        url = make_db(tmp_path, 1)
        worker = subprocess.Popen([str(POSTFLOW), "worker", "--db", url, "--interval", "0.2"],
                                  stderr=subprocess.PIPE, text=True)
        assert worker.stderr is not None
        deadline = time.monotonic() + 30
        seen = ""
        while "result=published" not in seen and time.monotonic() < deadline:
            seen += worker.stderr.readline()
        worker.send_signal(signal.SIGTERM)
        _, rest = worker.communicate(timeout=30)
        assert worker.returncode == 0
        assert "stopped on SIGTERM" in seen + rest

    def test_bad_lease_is_a_clean_error(self, tmp_path: Path) -> None:
        """A lease that is not positive is refused before anything runs."""
        url = make_db(tmp_path, 0, seconds=0)
        done = run("worker", "--db", url, "--once", "--lease", "0")
        assert done.returncode != 0
        assert "lease time must be positive" in done.stderr
        assert "Traceback" not in done.stderr


class TestPauseCommands:
    """pause, resume and status."""

    def test_pause_status_resume(self, tmp_path: Path) -> None:
        """A pause shows in status and holds the worker; resume lets it publish."""
        url = make_db(tmp_path, 2)
        assert run("pause", "--db", url, "--by", "cy", "--reason", "crisis").returncode == 0
        status = run("status", "--db", url).stdout
        assert "PAUSED ALL publishing" in status
        assert "crisis" in status
        assert "Due now: 2" in status
        assert "result=" not in run("worker", "--db", url, "--once").stderr
        assert run("resume", "--db", url, "--by", "cy").returncode == 0
        assert run("worker", "--db", url, "--once").stderr.count("result=published") == 2
        again = run("resume", "--db", url, "--by", "cy")
        assert again.returncode != 0
        assert "not paused" in again.stderr

    def test_empty_reason_is_refused(self, tmp_path: Path) -> None:
        """A pause without a reason is a clean error."""
        url = make_db(tmp_path, 0, seconds=0)
        done = run("pause", "--db", url, "--by", "cy", "--reason", " ")
        assert done.returncode != 0
        assert "reason" in done.stderr


class TestResolveCommand:
    """postflow resolve settles an unconfirmed delivery from the command line."""

    def test_status_points_to_resolve_which_settles_and_retries(self, tmp_path: Path) -> None:
        """An unconfirmed delivery shows in status; resolve --published --retry clears it
        and the next worker pass publishes without sending again."""
        url = make_db(tmp_path, 1)
        ws = postflow.open(url, entry_points=False)
        # a publisher without a status check: only a person can settle the delivery
        ws.channels.update("acme-x", publisher="webhook",
                           settings={"url": "http://127.0.0.1:9/never-called"})
        now = datetime.now(UTC)
        [post] = ws.storage.claim_due(now, "dead", now, 5, frozenset(), "c")
        ws.storage.save_deliveries(post.id, [postflow.Delivery(
            post.id, "acme-x", 1, "unconfirmed", "k", 1, updated_at=now)], worker=None,
            now=now)
        ws.close()
        assert run("worker", "--db", url, "--once").returncode == 0
        status = run("status", "--db", url).stdout
        assert f"postflow resolve {post.id} acme-x" in status
        done = run("resolve", "--db", url, str(post.id), "acme-x", "--by", "cy",
                   "--published", "--remote-id", "r1", "--retry")
        assert done.returncode == 0, done.stderr
        assert "scheduled again" in done.stdout
        assert "result=published" in run("worker", "--db", url, "--once").stderr
        with postflow.open(url, entry_points=False) as check:
            assert [d.status for d in check.deliveries(post.id)] == ["sent"]
            assert check.deliveries(post.id)[0].remote_id == "r1"
