"""Acceptance tests: the installed ``postflow`` console script, run as a subprocess."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

import postflow
from postflow._plugins import BLOCK_ENV, BUILTIN_PLUGINS
from postflow.cli._app import URL_ENV
from postflow.cli.demo import DEMO_WORKFLOW, TEAM
from postflow.workflow import DEFAULT_WORKFLOW, Workflow

pytestmark = pytest.mark.acceptance

POSTFLOW = Path(sys.executable).parent / "postflow"
DEFAULT_STATES = Workflow.default().states
DEMO_POSTS = 5
"""Posts one demo run adds (one per kind of walk in ``postflow.cli.demo``)."""

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(name="run")
def _run(tmp_path: Path) -> Run:
    """Run ``postflow ARGS`` in ``cwd`` (default: tmp_path); return the finished process."""
    env = {k: v for k, v in os.environ.items() if k not in {URL_ENV, BLOCK_ENV}}
    env["PYTHONIOENCODING"] = "utf-8"

    def run(*args: str, cwd: Path = tmp_path, extra_env: dict[str, str] | None = None,
            ) -> subprocess.CompletedProcess[str]:
        assert POSTFLOW.exists(), f"console script not installed at {POSTFLOW}"
        return subprocess.run(
            [str(POSTFLOW), *args], cwd=cwd, env={**env, **(extra_env or {})},
            capture_output=True, text=True, encoding="utf-8", timeout=120, check=False,
        )

    return run


@pytest.fixture(name="demo_dir", scope="module")
def _demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder where ``postflow demo`` ran once (read-only for the tests using it)."""
    folder = tmp_path_factory.mktemp("demo")
    done = subprocess.run([str(POSTFLOW), "demo"], cwd=folder, capture_output=True,
                          text=True, encoding="utf-8", timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    (folder / "first-run.txt").write_text(done.stdout, encoding="utf-8")
    return folder


def demo_url(folder: Path) -> str:
    """The storage URL of the demo database in ``folder``."""
    return f"sqlite:///{folder / 'postflow-demo.db'}"


def open_demo(folder: Path) -> postflow.Workspace:
    """Open the demo database in-process, with the demo's workflow and no installed plugins."""
    return postflow.open(demo_url(folder), workflow=Workflow.from_dict(DEMO_WORKFLOW),
                         entry_points=False)


def board_counts(text: str) -> dict[str, int]:
    """``{state: n}`` from the ``STATE (n)`` headings of a printed board."""
    return {m[1].lower(): int(m[2])
            for m in re.finditer(r"^([A-Z_]+) \((\d+)\)$", text, re.MULTILINE)}


def assert_clean_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    """The process failed with one ``postflow: error:`` line and no traceback."""
    assert done.returncode != 0
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("postflow: error: ")
    assert "Traceback" not in done.stderr
    for needle in needles:
        assert needle in lines[0]


class TestDemo:
    """``postflow demo`` builds a database and walks posts through the workflow."""

    def test_first_run_creates_the_database_and_prints_the_board(self, demo_dir: Path) -> None:
        """The first run creates ./postflow-demo.db and prints a heading for every state."""
        out = (demo_dir / "first-run.txt").read_text(encoding="utf-8")
        assert (demo_dir / "postflow-demo.db").is_file()
        assert "Creating postflow-demo.db" in out
        counts = board_counts(out)
        assert list(counts) == list(DEFAULT_STATES)
        for state in ("draft", "review", "scheduled", "published", "archived"):
            assert counts[state] >= 1, state

    def test_board_matches_what_is_stored(self, demo_dir: Path) -> None:
        """The printed counts equal the stored counts, and each kind of post exists."""
        counts = board_counts((demo_dir / "first-run.txt").read_text(encoding="utf-8"))
        with open_demo(demo_dir) as ws:
            assert counts == {s: ws.posts.count(state=s) for s in DEFAULT_STATES}
            assert ws.posts.count() == DEMO_POSTS
            [published] = ws.posts.list(state="published")
            assert published.revision == 2
            assert {a.member for a in published.approvals} == {"ben", "lena"}
            [scheduled] = ws.posts.list(state="scheduled")
            assert scheduled.scheduled_zone == "Europe/Berlin"
            assert scheduled.scheduled_at is not None
            [pending] = ws.posts.list(state="review")
            assert [s.name for s in ws.stages(pending.id) if s.satisfied] == ["editorial"]
            [planned] = ws.posts.list(state="draft")
            assert planned.planned_for is not None
            [archived] = ws.posts.list(state="archived")
            assert "withdraw" in [e.action for e in ws.history(archived.id)]

    def test_prints_the_audit_trail(self, demo_dir: Path) -> None:
        """The demo's audit trail shows the request for changes, the edit, both approvals
        and the worker publishing through the dry-run publisher."""
        out = (demo_dir / "first-run.txt").read_text(encoding="utf-8")
        trail = out.split("Audit trail of post #1:", 1)[1]
        actions = [line.split()[3] for line in trail.strip().splitlines()[:11]]
        assert actions == ["create", "submit", "request_changes", "edit", "submit",
                           "comment", "approve", "approve", "schedule", "claim", "publish"]
        assert '"Add the sign-up link, please."' in trail
        sent = (demo_dir / "postflow-demo-sent.jsonl").read_text(encoding="utf-8")
        assert len(sent.splitlines()) == 2  # the dry-run publisher, once per channel
        with open_demo(demo_dir) as ws:
            assert [e.action for e in ws.history(1)] == actions

    def test_notifications_reach_the_inboxes(self, demo_dir: Path) -> None:
        """The demo's rules put what happened in the team's inboxes: lena hears of her
        mention and of each post waiting for her legal sign-off, ana of her post going
        out; the run prints them."""
        out = (demo_dir / "first-run.txt").read_text(encoding="utf-8")
        assert "lena's inbox:" in out
        with open_demo(demo_dir) as ws:
            lena = {(i.event, i.post_id) for i in ws.inbox("lena")}
            assert ("member.mentioned", 1) in lena
            assert ("post.approved", 3) in lena  # post 3 waits at legal
            assert ("post.published", 1) in {(i.event, i.post_id) for i in ws.inbox("ana")}
            assert ws.notifications.outbox(status="pending") == []

    def test_second_run_reuses_and_third_fresh_starts_over(
        self, run: Run, tmp_path: Path
    ) -> None:
        """A second run says it reuses the file and adds posts; --fresh starts from scratch."""
        assert run("demo").returncode == 0
        second = run("demo")
        assert second.returncode == 0, second.stderr
        assert "Reusing postflow-demo.db" in second.stdout
        assert f"{DEMO_POSTS} posts so far" in second.stdout
        with open_demo(tmp_path) as ws:
            assert ws.posts.count() == 2 * DEMO_POSTS
            assert sorted(m.name for m in ws.team.list()) == sorted(TEAM)
            assert len(ws.channels.list()) == 2
            assert len(ws.campaigns.list()) == 1
        fresh = run("demo", "--fresh")
        assert fresh.returncode == 0, fresh.stderr
        assert "Starting over" in fresh.stdout
        assert "Creating postflow-demo.db" in fresh.stdout
        with open_demo(tmp_path) as ws:
            assert ws.posts.count() == DEMO_POSTS
            assert sorted(m.name for m in ws.team.list()) == sorted(TEAM)

    def test_db_option_picks_the_file(self, run: Run, tmp_path: Path) -> None:
        """``postflow demo --db other.db`` writes there and not to the default file."""
        done = run("demo", "--db", "other.db")
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "other.db").is_file()
        assert not (tmp_path / "postflow-demo.db").exists()


class TestBoardAndHistory:
    """``postflow board`` and ``postflow history`` read an existing database."""

    def test_board_on_the_demo_db(self, run: Run, demo_dir: Path) -> None:
        """The board lists every state with the stored counts and each post's id."""
        done = run("board", "--db", demo_url(demo_dir))
        assert done.returncode == 0, done.stderr
        with open_demo(demo_dir) as ws:
            assert board_counts(done.stdout) == {s: ws.posts.count(state=s)
                                                 for s in DEFAULT_STATES}
            for post in ws.posts.list():
                assert re.search(rf"^  #{post.id}\s+r{post.revision} ", done.stdout,
                                 re.MULTILINE)

    def test_board_reads_the_url_from_the_environment(self, run: Run, demo_dir: Path) -> None:
        """Without --db, the board uses POSTFLOW_URL."""
        done = run("board", extra_env={URL_ENV: demo_url(demo_dir)})
        assert done.returncode == 0, done.stderr
        assert board_counts(done.stdout)["published"] == 1

    def test_history_on_the_demo_db(self, run: Run, demo_dir: Path) -> None:
        """History prints one line per stored audit entry, in order."""
        done = run("history", "--db", demo_url(demo_dir), "1")
        assert done.returncode == 0, done.stderr
        lines = done.stdout.strip().splitlines()
        with open_demo(demo_dir) as ws:
            entries = ws.history(1)
        assert len(lines) == len(entries)
        for line, entry in zip(lines, entries, strict=True):
            assert line.split()[2:4] == [entry.actor, entry.action]
        assert "review -> draft" in lines[2]
        assert '"Legal OK."' in lines[7]

    def test_unknown_post_is_a_clean_error(self, run: Run, demo_dir: Path) -> None:
        """An unknown post id exits non-zero with a one-line error naming the post."""
        assert_clean_error(run("history", "--db", demo_url(demo_dir), "999"), "post 999")

    def test_file_that_is_not_a_database_is_a_clean_error(
        self, run: Run, tmp_path: Path
    ) -> None:
        """A text file given as the database gives one error line and is left untouched."""
        notes = tmp_path / "notes.txt"
        notes.write_text("shopping list\n" * 20, encoding="utf-8")
        assert_clean_error(run("history", "--db", f"sqlite:///{notes}", "1"), "notes.txt")
        assert notes.read_text(encoding="utf-8") == "shopping list\n" * 20

    def test_unknown_scheme_is_a_clean_error(self, run: Run) -> None:
        """A storage URL nobody handles names the scheme in one error line."""
        assert_clean_error(run("board", "--db", "nosuch://x"), "'nosuch'")

    def test_missing_workflow_file_is_a_clean_error(self, run: Run, tmp_path: Path) -> None:
        """A workflow file that does not exist is reported, and no database is created."""
        done = run("board", "--db", f"sqlite:///{tmp_path / 'b.db'}", "--workflow", "no.toml")
        assert_clean_error(done, "no.toml")
        assert not (tmp_path / "b.db").exists()

    def test_board_uses_the_stored_workflow(self, run: Run, tmp_path: Path) -> None:
        """Posts in a custom workflow's state are shown, unflagged, when viewed without
        --workflow: the database remembers its workflow."""
        definition = copy.deepcopy(dict(DEFAULT_WORKFLOW))
        definition["states"] = [*definition["states"], "needs_translation"]
        definition["transitions"] = [*definition["transitions"], {
            "trigger": "request_translation", "source": "review",
            "dest": "needs_translation", "roles": ["approver"]}, {
            "trigger": "translated", "source": "needs_translation", "dest": "review",
            "roles": ["author"]}]
        db = tmp_path / "custom.db"
        with postflow.open(f"sqlite:///{db}", workflow=postflow.Workflow.from_dict(
                definition), entry_points=False) as ws:
            ws.team.add("ana", roles={"author"})
            ws.team.add("ben", roles={"approver"})
            ws.channels.add("acme-x", network="x")
            post = ws.posts.create(author="ana", text="Hallo", channels=["acme-x"])
            ws.submit(post.id, by="ana")
            ws.fire(post.id, "request_translation", by="ben")
        shown = run("board", "--db", f"sqlite:///{db}")
        assert shown.returncode == 0, shown.stderr
        assert "NEEDS_TRANSLATION (1)\n" in shown.stdout
        assert "not a state of workflow" not in shown.stdout
        assert "'Hallo'" in shown.stdout

    def test_missing_database_is_a_clean_error(self, run: Run, tmp_path: Path) -> None:
        """Reading commands refuse a database file that does not exist instead of creating it."""
        missing = tmp_path / "nothing-here.db"
        assert_clean_error(run("board", "--db", f"sqlite:///{missing}"), "no database at")
        assert not missing.exists()

    def test_bad_argument_is_a_usage_error(self, run: Run, demo_dir: Path) -> None:
        """A post id that is not a number is a click usage error (exit 2), not a traceback."""
        done = run("history", "--db", demo_url(demo_dir), "abc")
        assert done.returncode == 2
        assert "Usage: postflow history" in done.stderr
        assert "Traceback" not in done.stderr


class TestWorkflowShow:
    """``postflow workflow show`` prints a workflow definition."""

    def test_default_workflow(self, run: Run) -> None:
        """Without a file it prints the default workflow's states and every trigger."""
        done = run("workflow", "show")
        assert done.returncode == 0, done.stderr
        wf = Workflow.default()
        assert done.stdout.startswith("workflow default\n")
        assert f"states: {', '.join(wf.states)}" in done.stdout
        for trigger in wf.triggers:
            assert re.search(rf"^\s+{trigger}\s", done.stdout, re.MULTILINE), trigger

    def test_mermaid_diagram(self, run: Run) -> None:
        """``--format mermaid`` prints a state diagram with the submit edge."""
        done = run("workflow", "show", "--format", "mermaid")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("stateDiagram-v2")
        assert "draft --> review: submit" in done.stdout

    def test_workflow_file(self, run: Run, tmp_path: Path) -> None:
        """A TOML file with an extra legal stage is loaded and shown."""
        (tmp_path / "legal.toml").write_text(textwrap.dedent("""\
            name = "with-legal"
            initial = "draft"
            states = ["draft", "review", "approved", "published"]
            roles = ["legal"]
            [[transitions]]
            trigger = "submit"
            source = "draft"
            dest = "review"
            roles = ["author"]
            [[transitions]]
            trigger = "approve"
            source = "review"
            dest = "approved"
            [[transitions]]
            trigger = "publish"
            source = "approved"
            dest = "published"
            roles = ["publisher"]
            [[stages]]
            name = "editorial"
            roles = ["approver"]
            [[stages]]
            name = "legal"
            roles = ["legal"]
            """), encoding="utf-8")
        done = run("workflow", "show", "legal.toml")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("workflow with-legal\n")
        assert "legal" in done.stdout.split("approval stages", 1)[1]

    def test_malformed_workflow_file_is_a_clean_error(self, run: Run, tmp_path: Path) -> None:
        """A file that is not TOML gives one error line naming the file."""
        (tmp_path / "broken.toml").write_text("states = [draft\n", encoding="utf-8")
        assert_clean_error(run("workflow", "show", "broken.toml"), "broken.toml")


class TestMisc:
    """``--version``, ``--help`` and ``postflow plugins``."""

    def test_version(self, run: Run) -> None:
        """``postflow --version`` prints the installed version."""
        done = run("--version")
        assert done.returncode == 0
        assert done.stdout == f"postflow, version {postflow.__version__}\n"

    def test_plugins_lists_the_builtins(self, run: Run) -> None:
        """``postflow plugins`` names every built-in and the hook it implements."""
        done = run("plugins")
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        hooks = {"postflow.storage.memory": "postflow_storage",
                 "postflow.storage.sqlite": "postflow_schema",
                 "postflow.calendar": "postflow_calendar_event",
                 "postflow.publishers": "postflow_register_publishers",
                 "postflow.notifications.channels": "postflow_register_notification_channels"}
        assert set(hooks) == set(BUILTIN_PLUGINS)
        for name in BUILTIN_PLUGINS:
            i = lines.index(f"{name}  (built-in)")
            assert lines[i + 1] == f"    {hooks[name]}"
        sqlite = lines.index("postflow.storage.sqlite  (built-in)")
        assert lines[sqlite + 2] == "    postflow_storage"

    def test_installed_plugin_command_appears(self, run: Run, tmp_path: Path) -> None:
        """A distribution on the path with a 'postflow' entry point adds its command."""
        site = tmp_path / "site"
        info = site / "postflow_hello-0.3.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: postflow-hello\nVersion: 0.3\n", encoding="utf-8")
        (info / "entry_points.txt").write_text("[postflow]\nhello = postflow_hello\n",
                                               encoding="utf-8")
        (site / "postflow_hello.py").write_text(textwrap.dedent('''\
            import click
            import postflow

            @postflow.hookimpl
            def postflow_register_commands(cli):
                @cli.command()
                def hello():
                    """Wave from an installed plugin."""
                    click.echo("hello from the plugin")
            '''), encoding="utf-8")
        env = {"PYTHONPATH": str(site)}
        helped = run("--help", extra_env=env)
        assert helped.returncode == 0, helped.stderr
        assert re.search(r"^\s+hello\s+Wave from an installed plugin\.", helped.stdout,
                         re.MULTILINE)
        assert run("hello", extra_env=env).stdout == "hello from the plugin\n"
        listed = run("plugins", extra_env=env).stdout.splitlines()
        i = listed.index("hello  (postflow-hello 0.3)")
        assert listed[i + 1] == "    postflow_register_commands"
        blocked = run("--help", extra_env={**env, BLOCK_ENV: "hello"})
        assert "hello" not in blocked.stdout.split("Commands:", 1)[1]

    def test_broken_installed_plugin_does_not_break_the_cli(
        self, run: Run, tmp_path: Path
    ) -> None:
        """A plugin that fails to import leaves the built-in commands working and is named."""
        site = tmp_path / "site"
        info = site / "postflow_broken-0.1.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: postflow-broken\nVersion: 0.1\n", encoding="utf-8")
        (info / "entry_points.txt").write_text("[postflow]\nbroken = postflow_broken\n",
                                               encoding="utf-8")
        (site / "postflow_broken.py").write_text("raise ImportError('half-installed')\n",
                                                 encoding="utf-8")
        env = {"PYTHONPATH": str(site)}
        shown = run("workflow", "show", extra_env=env)
        assert shown.returncode == 0
        assert "workflow default" in shown.stdout
        assert "plugin commands not loaded" in shown.stderr
        assert "half-installed" in shown.stderr
        listed = run("plugins", extra_env=env)
        assert listed.returncode != 0
        assert "half-installed" in listed.stderr
        assert "Traceback" not in listed.stderr
