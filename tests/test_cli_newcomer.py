"""What a newcomer's first hour with the ``postflow`` command met, fixed one by one."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import shutil
import signal
import socket
import subprocess
import time
import types
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

import postflow
from postflow._plugins import BLOCK_ENV, BUILTIN_PLUGINS
from postflow.cli import cli
from postflow.cli._logging import LOGGER
from postflow.cli.calendar import is_public_url
from postflow.cli.demo import DEMO_WORKFLOW, TEAM
from postflow.cli.render import render_board, render_history
from postflow.models import AuditEntry, freeze
from postflow.workflow import Workflow
from test_cli import Run, _demo_dir, _run, assert_clean_error, demo_url
from test_worker_cli import POSTFLOW, make_db
from test_worker_cli import run as run_worker

__all__ = ["_demo_dir", "_run"]  # fixtures shared with test_cli


@pytest.mark.acceptance
class TestServeErrors:
    """``postflow serve`` that cannot listen says why in one line."""

    def test_port_in_use(self, run: Run, demo_dir: Path) -> None:
        """A port another server holds is named, with what to do, and no traceback."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            done = run("serve", "--feeds", "--db", demo_url(demo_dir), "--port", str(port))
        assert_clean_error(done, f"127.0.0.1:{port}", "already in use", "--port")

    @pytest.mark.parametrize(("host", "needle"), [
        ("no-such-host.invalid", "is not known"),
        ("192.0.2.1", "not an address of this machine"),
    ])
    def test_bad_host(self, run: Run, demo_dir: Path, host: str, needle: str) -> None:
        """A host that does not resolve, or is not this machine's, is one error line."""
        done = run("serve", "--feeds", "--db", demo_url(demo_dir), "--host", host,
                   "--port", "0")
        assert_clean_error(done, host, needle)

    def test_port_out_of_range_is_a_usage_error(self, run: Run, demo_dir: Path) -> None:
        """A port above 65535 is refused by the option parser, not by a traceback."""
        done = run("serve", "--feeds", "--db", demo_url(demo_dir), "--port", "70000")
        assert done.returncode == 2
        assert "Traceback" not in done.stderr


def demo_workspace() -> postflow.Workspace:
    """An in-memory workspace with the demo's team, channels and two-stage workflow."""
    ws = postflow.open("memory://", workflow=Workflow.from_dict(DEMO_WORKFLOW),
                       entry_points=False)
    for name, roles in TEAM.items():
        ws.team.add(name, roles=roles)
    ws.channels.add("acme-x", network="x")
    return ws


def board_line(board: str, post_id: int) -> str:
    """The board's line of post ``post_id``."""
    [line] = [ln for ln in board.splitlines() if ln.startswith(f"  #{post_id} ")]
    return line


class TestBoardApprovals:
    """Only a post whose approvals are complete reads as approved on the board."""

    def test_partial_approval_shows_progress(self) -> None:
        """Editorial done, legal pending: '1 of 2 approvals (editorial: ben)'."""
        with demo_workspace() as ws:
            post = ws.posts.create(author="ana", channels=["acme-x"], text="Hiring!")
            ws.submit(post.id, by="ana")
            assert "0 of 2 approvals" in board_line(render_board(ws), post.id)
            ws.approve(post.id, by="ben")
            line = board_line(render_board(ws), post.id)
            assert line.endswith("  1 of 2 approvals (editorial: ben)")
            assert "approved by" not in line
            ws.approve(post.id, by="lena")
            assert ws.posts.get(post.id).state == "approved"
            assert board_line(render_board(ws), post.id).endswith("  approved by ben, lena")

    def test_draft_without_approvals_shows_none(self) -> None:
        """A draft has nothing to say about approvals."""
        with demo_workspace() as ws:
            post = ws.posts.create(author="ana", channels=["acme-x"], text="Later")
            assert board_line(render_board(ws), post.id).endswith("'Later'")

    @pytest.mark.acceptance
    def test_demo_and_board_without_the_demo_workflow(self, run: Run, demo_dir: Path
                                                      ) -> None:
        """The demo's own board counts approvals; 'postflow board' on the demo database
        (no --workflow, as the README runs it) uses the workflow stored with it, so it
        counts them too and never calls the pending post approved."""
        first = (demo_dir / "first-run.txt").read_text(encoding="utf-8")
        assert "1 of 2 approvals (editorial: ben)" in first
        done = run("board", "--db", demo_url(demo_dir))
        assert done.returncode == 0, done.stderr
        review = done.stdout.split("REVIEW (1)\n", 1)[1].splitlines()[0]
        assert review.endswith("1 of 2 approvals (editorial: ben)")
        published = done.stdout.split("PUBLISHED (1)\n", 1)[1].splitlines()[0]
        assert published.endswith("approved by ben, lena")


def entry(data: dict[str, object], comment: str | None = None) -> AuditEntry:
    """An audit entry of a failed publication carrying ``data``."""
    return AuditEntry(1, "fail", "worker", datetime(2030, 1, 1, 9, tzinfo=UTC), "c1",
                      post_id=1, from_state="scheduled", to_state="failed", revision=1,
                      comment=comment, data=freeze(data))


class TestHistoryValues:
    """History shows error reasons, errors and comments whole; only the post's text is
    shortened (rule: :data:`postflow.cli.render.SHORTENED_KEYS`)."""

    LONG = ("the network refused the post: duplicate content, the same text was posted "
            "less than 24 hours ago on this account")

    def test_reason_errors_and_comment_are_whole(self) -> None:
        """Long values of 'reason', 'errors' (a mapping) and the comment are not cut."""
        line = render_history([entry(
            {"reason": self.LONG, "errors": {"acme-x": self.LONG, "acme-li": "HTTP 503"},
             "deliveries": {"acme-x": "failed"}},
            comment=self.LONG)])
        assert f'"{self.LONG}"' in line  # the comment
        assert f"reason={self.LONG!r}" in line
        assert f'errors={{"acme-x": "{self.LONG}", "acme-li": "HTTP 503"}}' in line
        assert "…" not in line
        assert "\n" not in line

    def test_newlines_stay_on_one_line(self) -> None:
        """A multi-line value is escaped, never split over lines or cut."""
        line = render_history([entry({"reason": "first line\nsecond line"})])
        assert line.endswith(r"reason='first line\nsecond line'")

    def test_post_text_is_shortened(self) -> None:
        """Only the post's text is shortened (to 40 characters)."""
        line = render_history([entry({"text": "x " * 100, "channels": ["a", "b"]})])
        assert f"text={('x ' * 20)[:39] + '…'!r}" in line
        assert "channels=a,b" in line


@pytest.mark.acceptance
class TestDemoDbUrl:
    """``postflow demo --db`` takes a URL, as every other command does."""

    def test_url_picks_the_file_and_board_reads_it(self, run: Run, tmp_path: Path) -> None:
        """--db sqlite:///other.db writes other.db, which board reads by the same URL."""
        done = run("demo", "--db", "sqlite:///other.db")
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
        assert (tmp_path / "other.db").is_file()
        assert not (tmp_path / "postflow-demo.db").exists()
        assert "postflow board --db sqlite:///other.db" in done.stdout
        board = run("board", "--db", "sqlite:///other.db")
        assert board.returncode == 0, board.stderr
        assert "PUBLISHED (1)" in board.stdout

    def test_absolute_url(self, run: Run, tmp_path: Path) -> None:
        """sqlite:////abs/path works too."""
        target = tmp_path / "sub" / "demo.db"
        target.parent.mkdir()
        done = run("demo", "--db", f"sqlite:///{target}", cwd=tmp_path / "sub")
        assert done.returncode == 0, done.stderr
        assert target.is_file()

    def test_default_is_the_readme_url(self, run: Run, tmp_path: Path) -> None:
        """The README's two commands: 'postflow demo', then board on its default URL."""
        assert run("demo").returncode == 0
        board = run("board", "--db", "sqlite:///postflow-demo.db")
        assert board.returncode == 0, board.stderr
        assert "PUBLISHED (1)" in board.stdout
        assert "default: sqlite:///postflow-demo.db" in run("demo", "--help").stdout

    def test_bare_path_still_works_with_a_note(self, run: Run, tmp_path: Path) -> None:
        """A bare path is accepted, with a one-line deprecation note on stderr."""
        done = run("demo", "--db", "old.db")
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "old.db").is_file()
        assert done.stderr.strip() == ("postflow: warning: --db takes a URL, as in every "
                                       "other command; a bare path is deprecated: pass "
                                       "--db sqlite:///old.db")

    @pytest.mark.parametrize("url", ["memory://", "postgresql://localhost/x", "sqlite:///"])
    def test_other_urls_are_usage_errors(self, run: Run, tmp_path: Path, url: str) -> None:
        """A URL that is not a SQLite file is refused before anything is written."""
        done = run("demo", "--db", url)
        assert done.returncode == 2
        assert "--db" in done.stderr
        assert "Traceback" not in done.stderr
        assert list(tmp_path.iterdir()) == []


class TestGoogleLink:
    """The Google "add by URL" link is printed only for a base URL Google can reach."""

    @pytest.mark.parametrize("url", [
        "http://127.0.0.1:8080", "http://localhost:8080", "http://LOCALHOST.", "http://[::1]",
        "http://10.0.0.5", "https://192.168.1.20/cal", "http://172.16.0.1", "http://0.0.0.0",
        "http://169.254.10.1", "http://[fe80::1]:8080", "http://[fd00::1]", "http://100.64.0.1",
        "http://feeds.localhost", "http://nas.local", "http://cal.corp.internal",
        "http://myserver:8080", "not a url",
    ])
    def test_not_public(self, url: str) -> None:
        """Loopback, private, link-local and local-only names are not public."""
        assert not is_public_url(url)

    @pytest.mark.parametrize("url", [
        "https://social.acme.example", "https://cal.acme.test:8443/base", "http://8.8.8.8",
        "https://[2001:4860:4860::8888]",
    ])
    def test_public(self, url: str) -> None:
        """Names with a dot and global addresses are public."""
        assert is_public_url(url)

    @pytest.mark.acceptance
    def test_create_on_the_default_base_url_prints_the_note(self, run: Run, demo_dir: Path,
                                                            tmp_path: Path) -> None:
        """The default http://127.0.0.1:8080 gets a note instead of a useless link;
        rotate with a public --base-url prints the Google link."""
        shutil.copy(demo_dir / "postflow-demo.db", tmp_path / "postflow-demo.db")
        db = demo_url(tmp_path)
        created = run("feed", "create", "social", "--db", db)
        assert created.returncode == 0, created.stderr
        assert "calendar.google.com" not in created.stdout
        [note] = [ln for ln in created.stdout.splitlines() if "Google Calendar:" in ln]
        assert "Google fetches feeds from its own servers" in note
        assert "must be public" in note
        assert "http://127.0.0.1:8080/feeds/" in created.stdout
        rotated = run("feed", "rotate", "social", "--db", db,
                      "--base-url", "https://social.acme.example")
        assert rotated.returncode == 0, rotated.stderr
        assert ("https://calendar.google.com/calendar/r?cid=https%3A%2F%2Fsocial.acme.example"
                "%2Ffeeds%2F") in rotated.stdout
        assert "must be public" not in rotated.stdout


class FakeDist:
    """An installed distribution as importlib.metadata (and pluggy) sees one."""

    def __init__(self, name: str, version: str, entry_points: list[FakeEntryPoint]) -> None:
        self.name = name
        self.version = version
        self.metadata = {"name": name, "version": version}
        self.entry_points = entry_points
        for ep in entry_points:
            ep.dist = self


class FakeEntryPoint:
    """A 'postflow' entry point whose load() returns ``plugin`` or raises it."""

    group = "postflow"

    def __init__(self, name: str, plugin: object) -> None:
        self.name = name
        self.value = f"{name}_module"
        self.plugin = plugin
        self.dist: FakeDist | None = None

    def load(self) -> object:
        if isinstance(self.plugin, BaseException):
            raise self.plugin
        return self.plugin


def good_plugin() -> types.ModuleType:
    """A plugin module implementing postflow_after_change."""
    module = types.ModuleType("postflow_fake_good")

    @postflow.hookimpl
    def postflow_after_change(workspace: object, entries: object) -> None:
        """Nothing to do."""

    module.postflow_after_change = postflow_after_change  # type: ignore[attr-defined]
    return module


def bad_hook_plugin() -> types.ModuleType:
    """A plugin module implementing a hook postflow does not have."""
    module = types.ModuleType("postflow_fake_typo")

    @postflow.hookimpl
    def postflow_after_chnage(workspace: object) -> None:
        """A typo."""

    module.postflow_after_chnage = postflow_after_chnage  # type: ignore[attr-defined]
    return module


@pytest.fixture(name="installed")
def _installed(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Fake the installed distributions (nothing is installed)."""
    monkeypatch.delenv(BLOCK_ENV, raising=False)

    def install(*dists: FakeDist) -> None:
        eps = [ep for d in dists for ep in d.entry_points]
        monkeypatch.setattr(importlib.metadata, "distributions", lambda: list(dists))
        monkeypatch.setattr(importlib.metadata, "entry_points",
                            lambda group=None: [ep for ep in eps if ep.group == group])

    return install


class TestPluginsListing:
    """``postflow plugins`` with a broken installed plugin lists it and the others."""

    def test_broken_import_is_listed_with_the_others(self, installed: Callable[..., None]
                                                     ) -> None:
        """An entry point that fails to import reads 'broken: <error>'; the good plugin
        and the built-ins are listed as usual; the exit status is 1."""
        installed(FakeDist("postflow-good", "1.0", [FakeEntryPoint("good", good_plugin())]),
                  FakeDist("postflow-broken", "0.1", [
                      FakeEntryPoint("broken", ImportError("half-installed"))]))
        result = CliRunner().invoke(cli, ["plugins"])
        assert result.exit_code == 1, result.output
        lines = result.stdout.splitlines()
        i = lines.index("good  (postflow-good 1.0)")
        assert lines[i + 1] == "    postflow_after_change"
        i = lines.index("broken  (postflow-broken 0.1)")
        assert lines[i + 1] == "    broken: ImportError: half-installed"
        for name in BUILTIN_PLUGINS:
            assert f"{name}  (built-in)" in lines
        assert "plugin 'broken' failed to load: ImportError: half-installed" in result.stderr
        assert f"{BLOCK_ENV}=broken" in result.stderr

    def test_unknown_hook_is_broken_too(self, installed: Callable[..., None]) -> None:
        """A plugin refused by validation (a hook postflow lacks) is named as broken."""
        installed(FakeDist("postflow-typo", "2.0", [FakeEntryPoint("typo", bad_hook_plugin())]),
                  FakeDist("postflow-good", "1.0", [FakeEntryPoint("good", good_plugin())]))
        result = CliRunner().invoke(cli, ["plugins"])
        assert result.exit_code == 1
        lines = result.stdout.splitlines()
        i = lines.index("typo  (postflow-typo 2.0)")
        assert lines[i + 1].startswith("    broken: ")
        assert "postflow_after_chnage" in lines[i + 1]
        assert "good  (postflow-good 1.0)" in lines

    def test_blocked_broken_plugin_is_left_out(self, installed: Callable[..., None],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
        """Blocked with POSTFLOW_DISABLE_PLUGINS, the broken one is skipped: exit 0."""
        installed(FakeDist("postflow-good", "1.0", [FakeEntryPoint("good", good_plugin())]),
                  FakeDist("postflow-broken", "0.1", [
                      FakeEntryPoint("broken", ImportError("half-installed"))]))
        monkeypatch.setenv(BLOCK_ENV, "broken")
        result = CliRunner().invoke(cli, ["plugins"])
        assert result.exit_code == 0, result.output
        assert "broken" not in result.output
        assert "good  (postflow-good 1.0)" in result.stdout.splitlines()


def json_lines(stderr: str) -> list[dict[str, Any]]:
    """Every line of ``stderr``, each of which must be one JSON object."""
    lines = stderr.splitlines()
    assert lines
    parsed = []
    for line in lines:
        value = json.loads(line)  # fails on any plain-text line
        assert isinstance(value, dict), line
        parsed.append(value)
    return parsed


@pytest.mark.acceptance
class TestWorkerJsonAndPauses:
    """``postflow worker --log-format json`` writes only JSON lines, and the worker says
    when publishing is paused and when it resumes."""

    def test_every_line_is_json(self, tmp_path: Path) -> None:
        """Outcomes, the worker's own messages and publishers' log records are all JSON."""
        url = make_db(tmp_path, 3)
        with postflow.open(url, entry_points=False) as ws:
            # the dry-run publisher without a file logs each line at INFO
            ws.channels.update("acme-x", settings={})
        done = run_worker("worker", "--db", url, "--once", "--log-format", "json",
                          "--id", "w1")
        assert done.returncode == 0, done.stderr
        lines = json_lines(done.stderr)
        assert [ln["result"] for ln in lines if "result" in ln] == ["published"] * 3
        records = [ln for ln in lines if "logger" in ln]
        assert any(r["logger"] == "postflow.publishers" and "dry-run" in r["message"]
                   for r in records)
        assert all(set(r) >= {"at", "level", "logger", "message"} for r in records)
        events = [ln["event"] for ln in lines if "event" in ln]
        assert events[0] == "started"
        assert events[-2:] == ["progress", "stopped"]
        assert all(ln["worker"] == "w1" for ln in lines if "event" in ln)

    def test_paused_once_then_resumed(self, tmp_path: Path) -> None:
        """A running worker logs the pause once (however many passes it waits), then
        'resumed' when it is lifted, and publishes."""
        url = make_db(tmp_path, 2)
        assert run_worker("pause", "--db", url, "--by", "cy", "--reason",
                          "brand crisis").returncode == 0
        worker = subprocess.Popen(
            [str(POSTFLOW), "worker", "--db", url, "--interval", "0.05", "--log-format",
             "json"], stderr=subprocess.PIPE, text=True)
        assert worker.stderr is not None
        seen: list[str] = []

        def read_until(key: str, value: str) -> dict[str, Any]:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                line = worker.stderr.readline()  # type: ignore[union-attr]
                seen.append(line)
                found = json.loads(line)
                if found.get(key) == value:
                    return dict(found)
            raise AssertionError(f"no {key}={value!r} line in {seen}")

        try:
            paused = read_until("event", "paused")
            assert paused["holds"][0]["reason"] == "brand crisis"
            assert paused["holds"][0]["scope"] == "*"
            assert "brand crisis" in paused["message"]
            time.sleep(0.5)  # several passes while paused
            assert run_worker("resume", "--db", url, "--by", "cy").returncode == 0
            read_until("event", "resumed")
            read_until("result", "published")
            read_until("result", "published")
        finally:
            worker.send_signal(signal.SIGTERM)
            _, rest = worker.communicate(timeout=30)
        assert worker.returncode == 0
        lines = json_lines("".join(seen) + rest)
        assert [ln.get("event") for ln in lines].count("paused") == 1
        assert [ln.get("event") for ln in lines].count("resumed") == 1

    def test_text_format_says_paused(self, tmp_path: Path) -> None:
        """In text format the pause is one plain line naming who paused and why."""
        url = make_db(tmp_path, 1)
        assert run_worker("pause", "--db", url, "--by", "cy", "--reason", "storm",
                          "--channel", "acme-x").returncode == 0
        done = run_worker("worker", "--db", url, "--once")
        assert done.returncode == 0, done.stderr
        [line] = [ln for ln in done.stderr.splitlines() if "publishing paused" in ln]
        assert "channel acme-x" in line
        assert "by cy: storm" in line
        assert "result=" not in done.stderr


OWNED_COMMANDS = [["board"], ["history"], ["plugins"], ["calendar", "export"],
                  ["calendar", "import"], ["feed", "create"], ["feed", "rotate"],
                  ["feed", "revoke"], ["feed", "list"], ["serve"], ["demo"]]


@pytest.fixture(name="postflow_logger")
def _postflow_logger() -> Iterator[logging.Logger]:
    """The ``postflow`` logger, its level restored afterwards."""
    logger = logging.getLogger(LOGGER)
    level = logger.level
    yield logger
    logger.setLevel(level)


class TestVerbosity:
    """``-v``/``-q`` (``postflow.cli._logging.verbosity_options``) set the level of the
    ``postflow`` logger."""

    @pytest.mark.parametrize("path", OWNED_COMMANDS, ids=" ".join)
    def test_commands_take_v_and_q(self, path: list[str]) -> None:
        """Every command of these modules has -v/--verbose and -q/--quiet."""
        command: click.Command = cli
        for name in path:
            assert isinstance(command, click.Group)
            command = command.commands[name]
        opts = {o for p in command.params for o in p.opts}
        assert {"-v", "--verbose", "-q", "--quiet"} <= opts

    @pytest.mark.parametrize(("args", "level"), [
        (["-v"], logging.INFO), (["-vv"], logging.DEBUG), (["-vvv"], logging.DEBUG),
        (["-q"], logging.ERROR), (["-qq"], logging.CRITICAL), (["-v", "-q"], logging.WARNING),
        (["--verbose", "--verbose"], logging.DEBUG),
    ])
    def test_levels(self, postflow_logger: logging.Logger, args: list[str], level: int
                    ) -> None:
        """-v lowers the level from WARNING a step each, -q raises it."""
        postflow_logger.setLevel(logging.NOTSET)
        result = CliRunner().invoke(cli, ["plugins", *args])
        assert result.exit_code == 0, result.output
        assert postflow_logger.level == level

    def test_without_options_the_level_is_left_alone(self, postflow_logger: logging.Logger
                                                      ) -> None:
        """No -v or -q: the logger keeps whatever the program set."""
        postflow_logger.setLevel(logging.NOTSET)
        assert CliRunner().invoke(cli, ["plugins"]).exit_code == 0
        assert postflow_logger.level == logging.NOTSET

    @pytest.mark.acceptance
    def test_demo_v_shows_info_and_q_hides_it(self, run: Run, tmp_path: Path) -> None:
        """'postflow demo -v' shows postflow's INFO records on stderr; plain or -q, none."""
        plain = run("demo", "--db", "sqlite:///a.db")
        assert plain.returncode == 0, plain.stderr
        assert plain.stderr == ""
        loud = run("demo", "-v", "--db", "sqlite:///b.db")
        assert loud.returncode == 0, loud.stderr
        assert "INFO postflow.publishing: post 1: publish by demo" in loud.stderr
        quiet = run("demo", "-q", "--db", "sqlite:///c.db")
        assert quiet.returncode == 0, quiet.stderr
        assert quiet.stderr == ""
        assert quiet.stdout.count("\n") == plain.stdout.count("\n")
