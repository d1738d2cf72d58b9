"""``postflow approvals``: what waits for approval, where, on whom, since and until when."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from postflow.cli._app import (
    cli,
    db_option,
    emit_json,
    json_option,
    open_workspace,
    show_time,
    tz_option,
    workflow_option,
    zone_option_value,
)
from postflow.cli.post import post_zone


@cli.command()
@db_option
@workflow_option
@json_option
@tz_option
@click.option("--member", default=None, help="Only what waits on this member.")
@click.option("--overdue", is_flag=True, help="Only what is overdue.")
def approvals(url: str, workflow_file: Path | None, as_json: bool, tz: str | None,
              member: str | None, overdue: bool) -> None:
    """List the posts waiting for approval, oldest first."""
    zone = zone_option_value(tz)
    with open_workspace(url, workflow_file) as ws:
        pending = ws.approvals(member=member, overdue=overdue)
        rows: list[dict[str, Any]] = []
        for p in pending:
            shown = post_zone(ws, ws.posts.get(p.post_id), zone)
            rows.append({"post_id": p.post_id, "revision": p.revision, "author": p.author,
                         "text": p.text, "channels": list(p.channels), "stage": p.stage,
                         "needed": p.needed, "approved_by": list(p.approved_by),
                         "waiting_on": list(p.waiting_on),
                         "since": show_time(p.since, shown),
                         "due_at": show_time(p.due_at, shown), "overdue": p.overdue,
                         "zone": str(getattr(shown, "key", shown))})
    if as_json:
        emit_json({"approvals": rows})
        return
    if not rows:
        click.echo("Nothing waits for approval.")
        return
    for r in rows:
        text = r["text"].replace("\n", " ")
        text = text if len(text) <= 40 else text[:39] + "…"
        due = f", due {r['due_at'].replace('T', ' ')}" if r["due_at"] else ""
        late = " OVERDUE" if r["overdue"] else ""
        click.echo(f"#{r['post_id']:<5} {r['stage']} {len(r['approved_by'])}/{r['needed']}"
                   f" waiting on {', '.join(r['waiting_on']) or 'no one eligible'}; since "
                   f"{r['since'].replace('T', ' ')}{due}{late}  {text!r}")
