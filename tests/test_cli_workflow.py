"""The workflow command line: ``postflow post``, ``team``, ``channel``, ``campaign``,
``series``, ``approvals``, ``db`` and ``status``, run in-process through
:func:`postflow.cli.main` on SQLite files (a few as real subprocesses), each checked
against what is stored."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import postflow
from postflow.cli import main
from postflow.cli._app import URL_ENV, USER_ENV
from postflow.storage.sqlite import SCHEMA_VERSION, stored_schema_version


class Result:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def json(self) -> Any:
        return json.loads(self.out)

    def __repr__(self) -> str:
        return f"<exit {self.code} out={self.out!r} err={self.err!r}>"


Run = Callable[..., Result]


@pytest.fixture(name="db")
def _db(tmp_path: Path) -> Path:
    """A SQLite file with a team, three channels (one sends through dry-run, one has no
    publisher so it fails) and a campaign."""
    path = tmp_path / "team.db"
    with postflow.open(f"sqlite:///{path}", entry_points=False) as ws:
        for name, roles in {"ana": {"author"}, "ben": {"approver"}, "bea": {"approver"},
                            "cy": {"publisher"}, "dee": {"admin"}}.items():
            ws.team.add(name, roles=roles)
        sent = str(tmp_path / "sent.jsonl")
        ws.channels.add("acme-x", network="x", handle="@acme", timezone="Europe/Berlin",
                        publisher="dry-run", settings={"path": sent})
        ws.channels.add("acme-li", network="linkedin", timezone="America/New_York",
                        publisher="dry-run", settings={"path": sent})
        ws.channels.add("acme-ma", network="mastodon")  # no publisher: sending fails
        ws.campaigns.add("spring", goal="sign-ups", hashtags=["AcmeSpring"])
    return path


@pytest.fixture(name="run")
def _run(db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
         ) -> Run:
    """``postflow ARGS`` in-process on ``db``; returns exit code and output."""
    monkeypatch.setenv(URL_ENV, f"sqlite:///{db}")
    monkeypatch.delenv(USER_ENV, raising=False)
    monkeypatch.setenv("POSTFLOW_DISABLE_PLUGINS", "")

    def run(*args: str, user: str | None = None) -> Result:
        capsys.readouterr()
        if user is not None:
            monkeypatch.setenv(USER_ENV, user)
        else:
            monkeypatch.delenv(USER_ENV, raising=False)
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture(name="stored")
def _stored(db: Path) -> Iterator[postflow.Workspace]:
    """The database as the library sees it (for checking what commands stored)."""
    ws = postflow.open(f"sqlite:///{db}", entry_points=False)
    yield ws
    ws.close()


def new_post(run: Run, *extra: str) -> int:
    done = run("post", "create", "--by", "ana", "--text", "Spring is here\nSecond line",
               "--channel", "acme-x", *extra)
    assert done.code == 0, done
    return int(done.out.split()[2])


def approved_post(run: Run, *extra: str) -> int:
    post_id = new_post(run, *extra)
    assert run("post", "submit", str(post_id), user="ana").code == 0
    assert run("post", "approve", str(post_id), "--by", "ben").code == 0
    return post_id


class TestPostLifecycle:
    def test_create_edit_submit_approve_schedule_unschedule(
            self, run: Run, stored: postflow.Workspace) -> None:
        post_id = new_post(run, "--campaign", "spring", "--planned-for", "2030-01-05")
        post = stored.posts.get(post_id)
        assert (post.state, post.author, post.text, post.channels, post.campaign) == (
            "draft", "ana", "Spring is here\nSecond line", ("acme-x",), "spring")
        done = run("post", "edit", str(post_id), "--by", "ana", "--text", "New text",
                   "--channel", "acme-li", "--no-campaign")
        assert done.code == 0, done
        post = stored.posts.get(post_id)
        assert (post.revision, post.text, post.channels, post.campaign) == (
            2, "New text", ("acme-li",), None)
        assert run("post", "submit", str(post_id), user="ana").code == 0
        assert stored.posts.get(post_id).state == "review"
        assert run("post", "approve", str(post_id), "--by", "ben",
                   "--comment", "ok").code == 0
        assert stored.posts.get(post_id).state == "approved"
        done = run("post", "schedule", str(post_id), "--by", "cy",
                   "--at", "2030-01-05T09:00+01:00")
        assert done.code == 0, done
        post = stored.posts.get(post_id)
        assert post.state == "scheduled"
        assert post.scheduled_at == datetime(2030, 1, 5, 8, 0, tzinfo=UTC)
        assert "2030-01-05 03:00-05:00 (America/New_York)" in done.out  # channel zone
        assert run("post", "unschedule", str(post_id), "--by", "cy").code == 0
        assert stored.posts.get(post_id).state == "approved"

    def test_request_changes_needs_a_comment_and_withdraw(
            self, run: Run, stored: postflow.Workspace) -> None:
        post_id = new_post(run)
        run("post", "submit", str(post_id), user="ana")
        done = run("post", "request-changes", str(post_id), "--by", "ben")
        assert done.code == 65
        assert "needs a comment" in done.err
        assert stored.posts.get(post_id).state == "review"
        assert run("post", "request-changes", str(post_id), "--by", "ben",
                   "--comment", "shorter").code == 0
        assert stored.posts.get(post_id).state == "draft"
        run("post", "submit", str(post_id), user="ana")
        assert run("post", "withdraw", str(post_id), user="ana").code == 0
        assert stored.history(post_id)[-1].action == "withdraw"

    def test_publish_now_sends_once_through_the_publisher(
            self, run: Run, stored: postflow.Workspace, tmp_path: Path) -> None:
        post_id = approved_post(run)
        done = run("post", "publish", str(post_id), "--by", "cy")
        assert done.code == 0, done
        assert "published" in done.out
        assert stored.posts.get(post_id).state == "published"
        assert [d.status for d in stored.deliveries(post_id)] == ["sent"]
        sent = (tmp_path / "sent.jsonl").read_text().splitlines()
        assert len(sent) == 1
        again = run("post", "publish", str(post_id), "--by", "cy")
        assert again.code == 67  # InvalidTransition: it is published
        assert len((tmp_path / "sent.jsonl").read_text().splitlines()) == 1

    def test_publish_failure_exits_69_and_status_says_how_to_settle(
            self, run: Run, stored: postflow.Workspace) -> None:
        post_id = approved_post(run, "--channel", "acme-ma")
        done = run("post", "publish", str(post_id), "--by", "dee")
        assert done.code == 69
        assert "not published" in done.err
        assert stored.posts.get(post_id).state == "failed"
        status = run("status")
        assert status.code == 0
        assert f"post {post_id}: rejected" in status.out
        assert "no publisher for network 'mastodon'" in status.out
        assert f"postflow post retry {post_id} --by NAME" in status.out
        shown = run("post", "show", str(post_id))
        assert "acme-ma r1: failed" in shown.out
        assert "no publisher for network 'mastodon'" in shown.out
        assert run("post", "retry", str(post_id), "--by", "cy").code == 0
        assert stored.posts.get(post_id).state == "scheduled"

    def test_mark_published_records_without_sending(
            self, run: Run, stored: postflow.Workspace, tmp_path: Path) -> None:
        post_id = approved_post(run)
        done = run("post", "mark-published", str(post_id), "--by", "cy",
                   "--url", "acme-x=https://x.example/1")
        assert done.code == 0, done
        post = stored.posts.get(post_id)
        assert post.state == "published"
        assert post.published_urls == {"acme-x": "https://x.example/1"}
        assert not (tmp_path / "sent.jsonl").exists()

    def test_archive_restore_comment_fire(self, run: Run, stored: postflow.Workspace
                                          ) -> None:
        post_id = new_post(run)
        assert run("post", "archive", str(post_id), "--by", "cy").code == 0
        assert stored.posts.get(post_id).state == "archived"
        assert run("post", "restore", str(post_id), "--by", "dee").code == 0
        assert stored.posts.get(post_id).state == "draft"
        assert run("post", "comment", str(post_id), "--by", "ben",
                   "--text", "Nice").code == 0
        assert stored.history(post_id)[-1].comment == "Nice"
        assert run("post", "fire", str(post_id), "submit", user="ana").code == 0
        assert stored.posts.get(post_id).state == "review"

    def test_by_defaults_from_postflow_user(self, run: Run, stored: postflow.Workspace
                                            ) -> None:
        done = run("post", "create", "--text", "Hi", "--channel", "acme-x", user="ana")
        assert done.code == 0, done
        assert stored.posts.list()[-1].author == "ana"
        missing = run("post", "create", "--text", "Hi", "--channel", "acme-x")
        assert missing.code == 2
        assert "--by" in missing.err


class TestBadInput:
    @pytest.mark.parametrize(("args", "code", "needle"), [
        (("post", "show", "999"), 66, "post 999 does not exist"),
        (("post", "submit", "1", "--by", "nobody"), 77, "not a member"),
        (("post", "submit", "1", "--by", "ben"), 77, "may not submit"),
        (("post", "fire", "1", "launch", "--by", "cy"), 67, "no trigger 'launch'"),
        (("post", "schedule", "1", "--by", "cy", "--at", "2030-01-05T09:00"), 2,
         "use --at 2027-01-05T09:00+02:00"),
        (("post", "schedule", "1", "--by", "cy", "--at", "soon"), 2, "not a date-time"),
        (("post", "fire", "1", "schedule", "--by", "cy"), 2, "schedule needs a time"),
        (("post", "edit", "1", "--by", "ana", "--channel", "acme-zz"), 65,
         "no channel called 'acme-zz'"),
        (("post", "edit", "1", "--by", "ana", "--text", "x", "--expected-version", "9"), 75,
         "not 9"),
        (("post", "list", "--json", "--ids"), 2, "pick one"),
        (("post", "list", "--channel", "acme-zz"), 66, "no channel called"),
        (("post", "list", "--tz", "Mars/Olympus"), 2, "unknown time zone"),
        (("team", "remove", "nobody", "--by", "dee"), 66, "no member called"),
        (("series", "end", "5", "--by", "dee"), 66, "series 5 does not exist"),
    ])
    def test_refused_with_a_specific_code_and_nothing_stored(
            self, run: Run, stored: postflow.Workspace, args: tuple[str, ...], code: int,
            needle: str) -> None:
        post_id = new_post(run)
        assert post_id == 1
        before = stored.audit_log()
        done = run(*args)
        assert done.code == code, done
        assert needle in done.err
        assert "Traceback" not in done.err
        assert stored.audit_log() == before


class TestReadCommands:
    def test_show_json_shape(self, run: Run) -> None:
        post_id = new_post(run)
        run("post", "submit", str(post_id), user="ana")
        data = run("post", "show", str(post_id), "--json", "--tz", "UTC").json()
        assert set(data) == {
            "id", "version", "state", "author", "revised_by", "text", "channels",
            "campaign", "revision", "media", "planned_for", "scheduled_at",
            "scheduled_zone", "created_at", "updated_at", "state_changed_at",
            "published_urls", "series_id", "approvals", "zone", "stages", "deliveries"}
        assert data["text"] == "Spring is here\nSecond line"
        assert data["zone"] == "UTC"
        assert data["created_at"].endswith("+00:00")
        assert data["stages"] == [{
            "name": "review", "needed": 1, "approved_by": [], "waiting_on": ["bea", "ben"],
            "satisfied": False, "due_at": None, "overdue": False}]
        text = run("post", "show", str(post_id)).out
        assert "  Spring is here\n  Second line" in text
        assert "may still approve: bea, ben" in text

    def test_show_in_the_channel_zone_by_default(self, run: Run) -> None:
        post_id = new_post(run)
        data = run("post", "show", str(post_id), "--json").json()
        assert data["zone"] == "Europe/Berlin"
        assert data["created_at"][-6:] in ("+01:00", "+02:00")

    def test_list_pages_and_filters(self, run: Run, stored: postflow.Workspace) -> None:
        ids = [new_post(run) for _ in range(5)]
        run("post", "submit", str(ids[1]), user="ana")
        page = run("post", "list", "--json", "--limit", "2", "--offset", "1").json()
        assert (page["total"], page["limit"], page["offset"]) == (5, 2, 1)
        assert [p["id"] for p in page["posts"]] == ids[1:3]
        review = run("post", "list", "--state", "review", "--ids")
        assert review.out.split() == [str(ids[1])]
        assert run("post", "list", "--author", "ana", "--ids").out.split() == [
            str(i) for i in ids]
        text = run("post", "list", "--limit", "2").out
        assert "2 of 5 posts" in text
        assert "next page: --offset 2" in text

    def test_list_between(self, run: Run) -> None:
        first, second = approved_post(run), approved_post(run)
        run("post", "schedule", str(first), "--by", "cy", "--at", "2030-01-05T09:00Z")
        run("post", "schedule", str(second), "--by", "cy", "--at", "2030-02-05T09:00Z")
        found = run("post", "list", "--from", "2030-01-01", "--to", "2030-02-01", "--ids")
        assert found.out.split() == [str(first)]

    def test_approvals(self, run: Run) -> None:
        post_id = new_post(run)
        assert run("approvals").out.strip() == "Nothing waits for approval."
        run("post", "submit", str(post_id), user="ana")
        data = run("approvals", "--json", "--tz", "UTC").json()
        [row] = data["approvals"]
        assert set(row) == {"post_id", "revision", "author", "text", "channels", "stage",
                            "needed", "approved_by", "waiting_on", "since", "due_at",
                            "overdue", "zone"}
        assert (row["post_id"], row["stage"], row["waiting_on"]) == (
            post_id, "review", ["bea", "ben"])
        assert run("approvals", "--member", "cy", "--json").json() == {"approvals": []}
        assert run("approvals", "--member", "nobody").code == 66


class TestDirectory:
    def test_team(self, run: Run, stored: postflow.Workspace) -> None:
        assert run("team", "add", "eve", "--role", "author", "--role", "approver",
                   "--email", "eve@example.org", "--by", "dee").code == 0
        assert stored.team.get("eve").roles == {"author", "approver"}
        assert run("team", "update", "eve", "--role", "publisher", "--by", "dee").code == 0
        assert stored.team.get("eve").roles == {"publisher"}
        assert run("team", "remove", "eve", "--by", "dee").code == 0
        assert stored.team.get("eve").active is False
        assert stored.audit_log()[-1].action == "member.update"
        data = run("team", "list", "--json").json()
        eve = next(m for m in data["members"] if m["name"] == "eve")
        assert eve == {"name": "eve", "roles": ["publisher"], "email": "eve@example.org",
                       "active": False, "version": 3}
        assert run("team", "add", "zed", "--role", "author", "--by", "ana").code == 77

    def test_channel(self, run: Run, stored: postflow.Workspace) -> None:
        assert run("channel", "add", "acme-ig", "--network", "instagram",
                   "--timezone", "Asia/Tokyo", "--by", "dee").code == 0
        assert stored.channels.get("acme-ig").timezone == "Asia/Tokyo"
        assert run("channel", "update", "acme-ig", "--handle", "@acme.jp",
                   "--by", "dee").code == 0
        assert stored.channels.get("acme-ig").handle == "@acme.jp"
        assert run("channel", "remove", "acme-ig", "--by", "dee").code == 0
        assert stored.channels.get("acme-ig").active is False
        listed = run("channel", "list", "--json").json()["channels"]
        assert {c["name"]: c["active"] for c in listed}["acme-ig"] is False
        refused = run("post", "create", "--by", "ana", "--text", "x", "--channel", "acme-ig")
        assert refused.code == 65

    def test_campaign(self, run: Run, stored: postflow.Workspace) -> None:
        assert run("campaign", "add", "autumn", "--goal", "leads", "--hashtag", "Fall",
                   "--by", "dee").code == 0
        assert stored.campaigns.get("autumn").hashtags == ("#Fall",)
        assert run("campaign", "update", "autumn", "--goal", "more leads",
                   "--by", "dee").code == 0
        assert stored.campaigns.get("autumn").goal == "more leads"
        assert run("campaign", "remove", "autumn", "--by", "dee").code == 0
        assert stored.campaigns.get("autumn").active is False
        data = run("campaign", "list", "--json").json()
        assert {"name": "autumn", "goal": "more leads", "hashtags": ["#Fall"],
                "active": False, "version": 3} in data["campaigns"]
        refused = run("post", "create", "--by", "ana", "--text", "x", "--channel", "acme-x",
                      "--campaign", "autumn")
        assert refused.code == 65
        assert "retired" in refused.err


class TestSeries:
    def test_list_and_end(self, run: Run, stored: postflow.Workspace) -> None:
        series, _ = stored.posts.create_series(
            author="ana", text="Weekly tip", channels=["acme-x"], rrule="FREQ=WEEKLY",
            start=datetime.now(UTC) + timedelta(days=1))
        listed = run("series", "list", "--json").json()["series"]
        assert [(s["id"], s["ended_at"]) for s in listed] == [(series.id, None)]
        done = run("series", "end", str(series.id), "--by", "ana", "--comment", "over")
        assert done.code == 0, done
        ended = stored.scheduling.get_series(series.id)
        assert ended.ended_by == "ana"
        assert ended.ended_at is not None
        assert stored.create_occurrences(datetime.now(UTC) + timedelta(days=90)) == []
        assert run("series", "list", "--running", "--json").json() == {"series": []}
        assert run("series", "end", str(series.id), "--by", "ana").code == 67


class TestDb:
    def make_old(self, db: Path) -> bytes:
        con = sqlite3.connect(db)
        with con:
            con.execute("UPDATE postflow_meta SET value = '3' WHERE key = 'schema_version'")
            con.execute("DROP TABLE workflow")  # what schema 4 added
        con.close()
        return db.read_bytes()

    def test_read_commands_never_migrate(self, run: Run, db: Path) -> None:
        self.make_old(db)
        for args in (("post", "list"), ("board",), ("status",), ("approvals",)):
            done = run(*args)
            assert done.code == 78, (args, done)
            assert "postflow db migrate" in done.err
        assert stored_schema_version(str(db)) == 3

    def test_status_and_migrate_with_a_backup(self, run: Run, db: Path) -> None:
        self.make_old(db)
        status = run("db", "status", "--json").json()
        assert (status["schema_version"], status["current"]) == (3, SCHEMA_VERSION)
        assert [p["version"] for p in status["pending"]] == list(range(4, SCHEMA_VERSION + 1))
        assert f"pending migrations ({SCHEMA_VERSION - 3})" in run("db", "status").out.lower()
        done = run("db", "migrate")
        assert done.code == 0, done
        backup = Path(done.out.split("Backup: ")[1].split("\n")[0])
        assert stored_schema_version(str(backup)) == 3
        assert stored_schema_version(str(db)) == SCHEMA_VERSION
        assert "Up to date" in run("db", "status").out
        assert run("post", "list").code == 0
        assert "nothing to do" in run("db", "migrate").out

    def test_memory_url_has_no_migrations(self, run: Run) -> None:
        assert run("db", "status", "--db", "memory://").code == 78


POSTFLOW = Path(sys.executable).parent / "postflow"


@pytest.mark.acceptance
class TestAsASubprocess:
    def call(self, db: Path, *args: str, user: str = "") -> subprocess.CompletedProcess[str]:
        env = {**os.environ, URL_ENV: f"sqlite:///{db}", "PYTHONIOENCODING": "utf-8"}
        env.pop(USER_ENV, None)
        if user:
            env[USER_ENV] = user
        return subprocess.run([str(POSTFLOW), *args], env=env, capture_output=True,
                              text=True, encoding="utf-8", timeout=120, check=False)

    def test_a_post_from_draft_to_published(self, db: Path) -> None:
        created = self.call(db, "post", "create", "--text", "Hello", "--channel", "acme-x",
                            user="ana")
        assert created.returncode == 0, created.stderr
        post_id = created.stdout.split()[2]
        for args, user in ((("post", "submit", post_id), "ana"),
                           (("post", "approve", post_id), "ben"),
                           (("post", "publish", post_id), "cy")):
            done = self.call(db, *args, user=user)
            assert done.returncode == 0, done.stderr
        shown = json.loads(self.call(db, "post", "show", post_id, "--json").stdout)
        assert shown["state"] == "published"
        assert [d["status"] for d in shown["deliveries"]] == ["sent"]

    def test_errors_exit_with_their_codes(self, db: Path) -> None:
        missing = self.call(db, "post", "show", "42")
        assert (missing.returncode, missing.stdout) == (66, "")
        assert missing.stderr.startswith("postflow: error: post 42 does not exist")
        naive = self.call(db, "post", "schedule", "1", "--at", "2030-01-01T09:00",
                          user="cy")
        assert naive.returncode == 2
        assert "use --at 2027-01-05T09:00+02:00" in naive.stderr
