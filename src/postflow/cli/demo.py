"""``postflow demo``: a small team walks posts through every state of a workflow."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click

import postflow
from postflow.cli._app import cli
from postflow.cli._logging import verbosity_options
from postflow.cli.render import render_board, render_history
from postflow.workflow import DEFAULT_WORKFLOW, Workflow

DEMO_WORKFLOW: dict[str, Any] = {
    **DEFAULT_WORKFLOW,
    "name": "demo",
    "roles": ["legal"],
    "stages": [
        {"name": "editorial", "roles": ["approver"], "quorum": 1, "due": "24h"},
        {"name": "legal", "roles": ["legal"], "quorum": 1, "due": "48h"},
    ],
}
"""The default workflow plus a legal sign-off after the editorial one."""

DEMO_NOTIFICATIONS: dict[str, Any] = {"rules": [
    {"name": "reviewers hear what waits for them", "events": ["post.submitted", "post.approved"],
     "to": ["approvers"], "channels": ["inbox"]},
    {"name": "authors hear how their posts fare",
     "events": ["post.changes_requested", "post.approved", "post.published", "post.failed"],
     "to": ["author"], "channels": ["inbox"]},
    {"name": "mentions", "events": ["member.mentioned"], "to": ["mentioned"],
     "channels": ["inbox"]},
]}
"""The demo's notification rules: everything goes to the in-app inbox."""

TEAM = {
    "ana": {"author"},
    "ben": {"approver"},
    "lena": {"legal"},
    "cy": {"publisher"},
    "dee": {"admin"},
}


def run_demo(path: Path, *, fresh: bool, echo: Callable[[str], None]) -> None:
    """Create or reuse the demo database at ``path`` and walk a batch of posts."""
    if fresh:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        echo(f"Starting over: removed {path}.")
    reused = path.exists()
    berlin = ZoneInfo("Europe/Berlin")
    # what the dry-run publisher "sends", one JSON line per post and channel
    sent_file = path.with_name(f"{path.stem}-sent.jsonl")
    dry_run = {"path": str(sent_file)}
    with postflow.open(f"sqlite:///{path}", workflow=Workflow.from_dict(DEMO_WORKFLOW)) as ws:
        if reused and ws.team.list():
            for channel in ws.channels.list():
                if channel.publisher is None:  # a demo database from before publishing
                    ws.channels.update(channel.name, publisher="dry-run", settings=dry_run)
            echo(f"Reusing {path}: {len(ws.team.list())} members, "
                 f"{len(ws.channels.list())} channels, {ws.posts.count()} posts so far "
                 "(run with --fresh to start over). Adding another batch of posts.")
        else:
            echo(f"Creating {path} with a team, two channels and a campaign.")
            for name, roles in TEAM.items():
                ws.team.add(name, roles=roles, email=f"{name}@example.org")
            ws.channels.add("acme-x", network="x", handle="@acme", timezone="Europe/Berlin",
                            publisher="dry-run", settings=dry_run)
            ws.channels.add("acme-li", network="linkedin", handle="acme-gmbh",
                            timezone="Europe/Berlin", publisher="dry-run", settings=dry_run)
            ws.campaigns.add("spring-launch", goal="Get 500 sign-ups for the spring beta",
                             hashtags=["AcmeSpring", "beta"], by="dee")
        if not ws.notifications.config().rules:  # new, or from before notifications
            ws.notifications.configure(DEMO_NOTIFICATIONS, by="dee")
        tomorrow = (ws.clock.now().astimezone(berlin) + timedelta(days=1)).replace(
            hour=9, minute=30, second=0, microsecond=0)

        # 1. Changes requested, edited, approved by both stages, scheduled a moment ahead
        #    and published by the worker step through the dry-run publisher.
        launch = ws.posts.create(author="ana", channels=["acme-x", "acme-li"],
                                 campaign="spring-launch",
                                 text="Our spring beta opens today! #AcmeSpring")
        ws.submit(launch.id, by="ana")
        ws.request_changes(launch.id, by="ben", comment="Add the sign-up link, please.")
        ws.edit(launch.id, by="ana", text="Our spring beta opens today: "
                "https://acme.example/beta #AcmeSpring")
        ws.submit(launch.id, by="ana")
        ws.comment(launch.id, by="ben", text="@lena the link leads to the beta terms.")
        ws.approve(launch.id, by="ben", comment="Good to go.")
        ws.approve(launch.id, by="lena", comment="Legal OK.")
        due = ws.clock.now() + timedelta(seconds=1)
        ws.schedule(launch.id, at=due, by="cy")
        time.sleep(max((due - ws.clock.now()).total_seconds(), 0) + 0.05)
        published = [o for o in ws.publish_due(worker="demo") if o.post_id == launch.id]

        # 2. Approved, then edited: the edit voids approvals and needs a new round.
        teaser = ws.posts.create(author="ana", channels=["acme-x"], campaign="spring-launch",
                                 text="Something is coming tomorrow…")
        ws.submit(teaser.id, by="ana")
        ws.approve(teaser.id, by="ben")
        ws.approve(teaser.id, by="lena")
        ws.edit(teaser.id, by="ana", text="Something is coming tomorrow at 9:30 ⏰")
        ws.submit(teaser.id, by="ana")
        ws.approve(teaser.id, by="ben")
        ws.approve(teaser.id, by="lena")
        ws.schedule(teaser.id, at=tomorrow, by="cy")

        # 3. Half-way through approval: editorial done, legal pending.
        pending = ws.posts.create(author="ana", channels=["acme-li"],
                                  text="We are hiring a community manager in Berlin.")
        ws.submit(pending.id, by="ana")
        ws.approve(pending.id, by="ben")

        # 4. Planned for next week, still a draft.
        ws.posts.create(author="ana", channels=["acme-x"],
                        planned_for=date.today() + timedelta(days=7),
                        text="Behind the scenes: how the beta was built.")

        # 5. Withdrawn and archived.
        old = ws.posts.create(author="ana", channels=["acme-x"], text="Winter sale ends!")
        ws.submit(old.id, by="ana")
        ws.withdraw(old.id, by="ana", comment="The sale was cancelled.")
        ws.archive(old.id, by="cy")

        echo("")
        if published and published[0].result == "published":
            echo(f"Published post #{launch.id} on {len(published[0].deliveries)} channels "
                 f"through the dry-run publisher (see {sent_file}).")
        echo(render_board(ws))
        echo("")
        echo(f"Audit trail of post #{launch.id}:")
        echo(render_history(ws.history(launch.id)))
        stages = ws.stages(pending.id)
        echo("")
        echo(f"Approval stages of post #{pending.id}: " + "; ".join(
            f"{s.name} {len(s.approved_by)}/{s.needed}"
            + (f" (due {s.due_at:%Y-%m-%d %H:%M} UTC)" if s.due_at else "") for s in stages))
        ws.notifications.run_once(worker="demo")
        for member in ("ana", "lena"):
            unread = ws.inbox(member, unread=True)
            echo("")
            echo(f"{member}'s inbox: {len(unread)} unread notification(s), newest first:")
            for item in unread[:4]:
                echo(f"  #{item.id} {item.title}")
        echo("")
        echo(f"Explore: postflow board --db sqlite:///{path}   |   "
             f"postflow history --db sqlite:///{path} {launch.id}   |   "
             f"postflow inbox --db sqlite:///{path} ana")


DEMO_URL = "sqlite:///postflow-demo.db"
"""Where ``postflow demo`` writes by default (``postflow board --db`` reads the same URL)."""


def demo_path(db: str) -> tuple[Path, str | None]:
    """The SQLite file of ``--db`` (a ``sqlite:///path`` URL), and a deprecation note when
    it was given as a bare path; another kind of URL is refused."""
    if db.startswith("sqlite:///"):
        path = db[len("sqlite:///"):]
        if not path:
            raise click.BadParameter("the URL names no file (sqlite:///postflow-demo.db)",
                                     param_hint="--db")
        return Path(path), None
    if "://" in db:
        raise click.BadParameter(
            f"{db!r}: the demo writes a SQLite file; pass a sqlite:///path URL",
            param_hint="--db")
    return Path(db), (f"postflow: warning: --db takes a URL, as in every other command; "
                      f"a bare path is deprecated: pass --db sqlite:///{db}")


@cli.command()
@verbosity_options
@click.option("--db", default=DEMO_URL, show_default=True, metavar="URL",
              help="SQLite URL the demo writes (a bare path is deprecated).")
@click.option("--fresh", is_flag=True, help="Delete the demo database and start over.")
def demo(db: str, fresh: bool) -> None:
    """Walk a small team's posts through every state and show the result."""
    path, note = demo_path(db)
    if note:
        click.echo(note, err=True)
    run_demo(path, fresh=fresh, echo=click.echo)
