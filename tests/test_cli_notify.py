"""``postflow notify`` (one pass, configuration, preferences, the outbox), ``postflow
inbox`` and ``postflow approvals --overdue``: output, JSON shapes and exit codes as
docs/cli.rst documents them."""

from __future__ import annotations

import copy
import json
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import postflow
from conftest import add_team
from postflow.cli import cli, exit_code
from postflow.exceptions import PostflowError
from postflow.testing import FixedClock
from postflow.workflow import DEFAULT_WORKFLOW

CONFIG = """\
[settings]
due_soon = "4h"
post_url = "https://app.example.org/posts/{post_id}"

[[rules]]
name = "reviewers hear of submissions and lateness"
events = ["post.submitted", "approval.overdue"]
to = ["approvers"]
channels = ["inbox"]

[[escalations]]
name = "legal is late"
stage = "legal"
after = "0h"
notify = ["role:admin"]
channels = ["inbox"]
add_approver = "al"
"""


def two_stages() -> postflow.Workflow:
    data = copy.deepcopy(dict(DEFAULT_WORKFLOW))
    data.update(name="two_stages", roles=["legal"], stages=[
        {"name": "editorial", "roles": ["approver"], "due": "24h"},
        {"name": "legal", "roles": ["legal"], "due": "24h"},
    ])
    return postflow.Workflow.from_dict(data)


def run(*args: str) -> tuple[int, str, Result]:
    """``postflow ARGS`` in-process: the exit status ``main`` gives, and the output."""
    result = CliRunner().invoke(cli, list(args))
    if isinstance(result.exception, PostflowError):
        return exit_code(result.exception), result.output, result
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output, result


def run_json(*args: str) -> Any:
    code, output, result = run(*args, "--json")
    assert code == 0, (output, result.exception)
    return json.loads(output)


@pytest.fixture(name="db")
def _db(tmp_path: Path) -> str:
    """A team whose post 1 has waited at the editorial stage for two days (overdue) and
    whose post 2 was submitted just now."""
    url = f"sqlite:///{tmp_path / 'team.db'}"
    clock = FixedClock(datetime.now(UTC) - timedelta(days=2))
    with postflow.open(url, entry_points=False, clock=clock, workflow=two_stages()) as ws:
        add_team(ws)
        ws.team.add("lou", roles={"legal"})
        late = ws.posts.create(author="ana", text="Late <b>launch</b>", channels=["acme-x"])
        ws.submit(late.id, by="ana")
    with postflow.open(url, entry_points=False) as ws:
        fresh = ws.posts.create(author="ana", text="Fresh", channels=["acme-x"])
        ws.submit(fresh.id, by="ana")
    return url


@pytest.fixture(name="config_file")
def _config_file(tmp_path: Path) -> Path:
    path = tmp_path / "notify.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


class TestConfig:
    def test_apply_then_show_round_trips(self, db: str, config_file: Path) -> None:
        code, output, _ = run("notify", "config", "apply", str(config_file), "--db", db,
                              "--by", "dee")
        assert code == 0, output
        assert "1 rule(s), 1 escalation(s)" in output
        code, shown, _ = run("notify", "config", "show", "--db", db)
        assert code == 0
        document = tomllib.loads(shown)
        assert document["rules"][0]["events"] == ["post.submitted", "approval.overdue"]
        assert document["escalations"][0]["add_approver"] == "al"
        data = run_json("notify", "config", "show", "--db", db)
        assert data == document

    def test_a_bad_file_is_refused_with_78(self, db: str, tmp_path: Path) -> None:
        bad = tmp_path / "bad.toml"
        bad.write_text(CONFIG.replace('"post.submitted"', '"post.teleported"'),
                       encoding="utf-8")
        code, _, result = run("notify", "config", "apply", str(bad), "--db", db,
                              "--by", "dee")
        assert code == 78
        assert "post.teleported" in str(result.exception)

    def test_only_an_admin_applies_it(self, db: str, config_file: Path) -> None:
        code, _, _ = run("notify", "config", "apply", str(config_file), "--db", db,
                         "--by", "ana")
        assert code == 77


class TestPreferences:
    def test_set_and_show(self, db: str) -> None:
        code, output, _ = run("notify", "prefs", "ana", "--db", db, "--by", "ana",
                              "--set", "digest=daily 08:00",
                              "--set", "mute_events=post.created,post.commented",
                              "--set", "quiet_hours=22:00-07:00",
                              "--set", "timezone=Europe/Berlin",
                              "--set", "urgent_bypass=false")
        assert code == 0, output
        assert "digest: daily 08:00" in output
        data = run_json("notify", "prefs", "ana", "--db", db, "--by", "ana")
        assert data["member"] == "ana"
        prefs = data["preferences"]
        assert prefs["mute_events"] == ["post.commented", "post.created"]
        assert (prefs["quiet_hours"], prefs["timezone"], prefs["urgent_bypass"]) == (
            "22:00-07:00", "Europe/Berlin", False)
        run("notify", "prefs", "ana", "--db", db, "--by", "ana", "--set", "quiet_hours=none")
        assert run_json("notify", "prefs", "ana", "--db", db,
                        "--by", "ana")["preferences"]["quiet_hours"] is None

    def test_refusals(self, db: str) -> None:
        assert run("notify", "prefs", "ana", "--db", db, "--by", "ben",
                   "--set", "digest=hourly")[0] == 77
        assert run("notify", "prefs", "ana", "--db", db, "--by", "ana",
                   "--set", "digest=weekly")[0] == 78
        assert run("notify", "prefs", "nobody", "--db", db, "--by", "dee")[0] == 66
        assert run("notify", "prefs", "ana", "--db", db, "--by", "ana",
                   "--set", "digest")[0] == 2

    def test_showing_needs_no_by_but_changing_does(self, db: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("POSTFLOW_USER", raising=False)
        assert run_json("notify", "prefs", "ana", "--db", db)["preferences"]["digest"] == "off"
        code, output, _ = run("notify", "prefs", "ana", "--db", db, "--set", "digest=hourly")
        assert code == 2
        assert "--set needs --by" in output
        assert run_json("notify", "prefs", "ana", "--db", db)["preferences"]["digest"] == "off"


class TestPassInboxOutbox:
    def test_once_routes_scans_delivers_to_the_inbox(self, db: str,
                                                     config_file: Path) -> None:
        run("notify", "config", "apply", str(config_file), "--db", db, "--by", "dee")
        code, output, _ = run("notify", "--db", db, "--once", "--json")
        assert code == 0, output
        report = json.loads(output.splitlines()[-1])
        assert set(report) == {"routed", "scanned", "pruned", "messages", "sent",
                               "retried", "failed", "errors"}
        # two submissions to two approvers; the first post is overdue for both
        assert (report["routed"], report["scanned"], report["sent"]) == (4, 2, 6)
        code, output, _ = run("notify", "--db", db, "--once")
        assert code == 0
        assert "0 routed, 0 from deadlines; 0 sent" in output

        items = run_json("inbox", "ben", "--db", db)["items"]
        assert sorted((i["event"], i["post_id"]) for i in items) == [
            ("approval.overdue", 1), ("post.submitted", 1), ("post.submitted", 2)]
        assert set(items[0]) == {"id", "event", "title", "body", "post_id", "created_at",
                                 "read_at", "unread"}
        overdue = next(i for i in items if i["event"] == "approval.overdue")
        assert run_json("inbox", "ben", "--db", db, "--mark-read",
                        str(overdue["id"])) == {"member": "ben", "marked_read": 1}
        unread = run_json("inbox", "ben", "--db", db, "--unread")["items"]
        assert [i["event"] for i in unread] == ["post.submitted", "post.submitted"]
        code, output, _ = run("inbox", "ben", "--db", db, "--mark-read")
        assert (code, output.strip()) == (0, "2 item(s) marked read.")
        assert run("inbox", "ben", "--db", db, "--unread")[1].strip() \
            == "No unread notifications."

        rows = run_json("notify", "outbox", "--db", db, "--status", "sent")["notifications"]
        assert len(rows) == 6
        assert {r["channel"] for r in rows} == {"inbox"}
        assert set(rows[0]) >= {"id", "dedup_key", "event_key", "event", "recipient",
                                "channel", "status", "attempts", "digest", "urgent",
                                "created_at", "not_before", "next_attempt_at",
                                "settled_at", "last_error", "post_id"}
        assert run_json("notify", "outbox", "--db", db,
                        "--status", "pending")["notifications"] == []
        code, output, _ = run("notify", "outbox", "--db", db)
        assert code == 0
        assert "sent" in output
        assert "via inbox" in output

    def test_inbox_refusals(self, db: str) -> None:
        assert run("inbox", "nobody", "--db", db)[0] == 66
        assert run("inbox", "ben", "--db", db, "3")[0] == 2
        assert run("notify", "outbox", "--db", db, "--status", "lost")[0] == 2


class TestApprovalsOverdue:
    def test_lists_what_waits_too_long_per_stage_and_on_whom(self, db: str) -> None:
        rows = run_json("approvals", "--db", db, "--overdue")["approvals"]
        assert [(r["post_id"], r["stage"], r["overdue"], r["waiting_on"]) for r in rows] \
            == [(1, "editorial", True, ["bea", "ben"])]
        since = datetime.fromisoformat(rows[0]["since"])
        assert datetime.fromisoformat(rows[0]["due_at"]) == since + timedelta(hours=24)
        everything = run_json("approvals", "--db", db)["approvals"]
        assert [(r["post_id"], r["overdue"]) for r in everything] == [(1, True), (2, False)]
        code, output, _ = run("approvals", "--db", db, "--overdue")
        assert code == 0
        assert "OVERDUE" in output
        assert "#2" not in output

    def test_a_later_stage_is_due_from_when_it_was_reached(self, db: str) -> None:
        with postflow.open(db, entry_points=False) as ws:
            ws.approve(1, by="ben")  # at legal from now: not overdue there
        rows = run_json("approvals", "--db", db)["approvals"]
        first = next(r for r in rows if r["post_id"] == 1)
        assert (first["stage"], first["overdue"], first["waiting_on"]) == (
            "legal", False, ["lou"])
        assert run_json("approvals", "--db", db, "--overdue")["approvals"] == []


class TestWorkerPass:
    """``postflow worker`` runs a notification pass after each publishing pass."""

    def test_the_worker_delivers_notifications(self, db: str, config_file: Path) -> None:
        run("notify", "config", "apply", str(config_file), "--db", db, "--by", "dee")
        code, output, result = run("worker", "--db", db, "--once", "--id", "w1")
        assert code == 0, (output, result.exception)
        assert len(run_json("inbox", "ben", "--db", db)["items"]) == 3

    def test_a_failing_notification_pass_never_stops_publishing(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
            capsys: pytest.CaptureFixture[str]) -> None:
        from postflow._worker import run_worker
        from postflow.notifications import Notifications

        def broken(self: Notifications, now: object = None, *, worker: object = None) -> None:
            raise RuntimeError("the outbox is on fire")

        monkeypatch.setattr(Notifications, "run_once", broken)
        clock = FixedClock(datetime.now(UTC) - timedelta(hours=1))
        url = f"sqlite:///{tmp_path / 'w.db'}"
        with postflow.open(url, entry_points=False, clock=clock) as ws:
            add_team(ws)
            ws.channels.add("dry", network="dry-run", publisher="dry-run",
                            settings={"path": str(tmp_path / "sent.jsonl")})
            post = ws.posts.create(author="ana", text="Goes out", channels=["dry"])
            ws.submit(post.id, by="ana")
            ws.approve(post.id, by="ben")
            ws.schedule(post.id, at=clock.now() + timedelta(minutes=1), by="cy")
        with postflow.open(url, entry_points=False) as ws:
            assert run_worker(ws, "w1", once=True, interval=1, json_logs=False) == 0
            assert ws.posts.get(post.id).state == "published"
        assert "notifications: RuntimeError: the outbox is on fire" in capsys.readouterr().err


@pytest.mark.acceptance
def test_the_loop_stops_on_sigterm_after_its_pass(db: str, config_file: Path) -> None:
    """``postflow notify`` passes every --interval seconds; SIGTERM ends it cleanly."""
    import signal
    import subprocess
    import sys
    import time

    run("notify", "config", "apply", str(config_file), "--db", db, "--by", "dee")
    script = Path(sys.executable).with_name("postflow")
    proc = subprocess.Popen([str(script), "notify", "--db", db, "--interval", "0.2",
                             "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    time.sleep(2.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    passes = [json.loads(line) for line in out.splitlines()]
    assert len(passes) >= 2
    assert passes[0]["sent"] == 6
    assert sum(p["sent"] for p in passes[1:]) == 0
