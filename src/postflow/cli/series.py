"""``postflow series list|end``: recurring series."""

from __future__ import annotations

from typing import Any

import click

from postflow.cli._app import (
    by_option,
    cli,
    db_option,
    emit_json,
    json_option,
    open_workspace,
    show_time,
    tz_option,
    zone_option_value,
)
from postflow.models import Series


def series_json(s: Series, zone: Any) -> dict[str, Any]:
    return {"id": s.id, "author": s.author, "text": s.text, "channels": list(s.channels),
            "rrule": s.rrule, "start": s.start.isoformat(), "zone": s.zone,
            "campaign": s.campaign, "created_until": show_time(s.created_until, zone),
            "ended_at": show_time(s.ended_at, zone), "ended_by": s.ended_by,
            "version": s.version}


@cli.group()
def series() -> None:
    """List and end recurring series."""


@series.command("list")
@db_option
@json_option
@tz_option
@click.option("--ended/--running", default=None,
              help="Only ended series, or only running ones (default: all).")
def series_list(url: str, as_json: bool, tz: str | None, ended: bool | None) -> None:
    """List recurring series."""
    zone = zone_option_value(tz)
    with open_workspace(url, None) as ws:
        found = ws.scheduling.list_series(ended=ended)
    if as_json:
        emit_json({"series": [series_json(s, zone or _zone(s)) for s in found]})
        return
    for s in found:
        status = f"ended {show_time(s.ended_at, zone or _zone(s))} by {s.ended_by}" \
            if s.ended_at else "running"
        text = s.text if len(s.text) <= 40 else s.text[:39] + "…"
        click.echo(f"#{s.id:<4} {s.rrule} from {s.start.isoformat(timespec='minutes')} "
                   f"{s.zone} [{', '.join(s.channels)}] {status}  {text}")


def _zone(s: Series) -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(s.zone)


@series.command("end")
@db_option
@by_option("Its author, a publisher or an admin")
@click.argument("series_id", type=int)
@click.option("--comment", default=None, help="Why (recorded in the trail).")
def series_end(url: str, by: str, series_id: int, comment: str | None) -> None:
    """End series SERIES_ID: no more occurrences are created (those made stay)."""
    with open_workspace(url, None) as ws:
        ws.scheduling.end_series(series_id, by=by, comment=comment)
    click.echo(f"Series {series_id} ended: no more occurrences will be created.")
