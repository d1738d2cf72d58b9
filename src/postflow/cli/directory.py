"""``postflow team``, ``channel`` and ``campaign``: the named records, added, changed,
retired (``remove`` keeps the name in the history) and listed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from postflow.cli._app import by_option, cli, db_option, emit_json, json_option, open_workspace
from postflow.models import Campaign, Channel, Member

ADMIN = "Admin making the change; without it and $POSTFLOW_USER: 'system'"


def member_json(m: Member) -> dict[str, Any]:
    return {"name": m.name, "roles": sorted(m.roles), "email": m.email, "active": m.active,
            "version": m.version}


def channel_json(c: Channel) -> dict[str, Any]:
    return {"name": c.name, "network": c.network, "handle": c.handle,
            "timezone": c.timezone, "active": c.active, "publisher": c.publisher,
            "settings": sorted(c.settings), "version": c.version}


def campaign_json(c: Campaign) -> dict[str, Any]:
    return {"name": c.name, "goal": c.goal, "hashtags": list(c.hashtags),
            "active": c.active, "version": c.version}


def _status(active: bool) -> str:
    return "active" if active else "retired"


# -- team -----------------------------------------------------------------------------

@cli.group()
def team() -> None:
    """Add, change, retire and list members."""


@team.command("add")
@db_option
@by_option(ADMIN, required=False)
@click.argument("name")
@click.option("--role", "roles", multiple=True, required=True,
              help="A role (repeat): author, approver, publisher, admin, analyst, or the "
                   "workflow's own.")
@click.option("--email", default=None)
@click.option("--workflow", "workflow_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Workflow TOML file (its roles are known).")
def team_add(url: str, by: str | None, name: str, roles: tuple[str, ...], email: str | None,
             workflow_file: Path | None) -> None:
    """Add member NAME."""
    with open_workspace(url, workflow_file) as ws:
        ws.team.add(name, roles=roles, email=email, by=by)
    click.echo(f"Member {name} added ({', '.join(sorted(roles))}).")


@team.command("update")
@db_option
@by_option(ADMIN, required=False)
@click.argument("name")
@click.option("--role", "roles", multiple=True, help="Replace the roles (repeat).")
@click.option("--email", default=None)
@click.option("--active/--inactive", default=None, help="Reactivate or retire.")
@click.option("--workflow", "workflow_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Workflow TOML file (its roles are known).")
def team_update(url: str, by: str | None, name: str, roles: tuple[str, ...],
                email: str | None, active: bool | None, workflow_file: Path | None) -> None:
    """Change member NAME's roles, email or active flag."""
    if not roles and email is None and active is None:
        raise click.UsageError("nothing to change: give --role, --email or --active/--inactive")
    with open_workspace(url, workflow_file) as ws:
        kwargs: dict[str, Any] = {"active": active, "by": by}
        if email is not None:
            kwargs["email"] = email
        member = ws.team.update(name, roles=roles or None, **kwargs)
    click.echo(f"Member {member.name}: {', '.join(sorted(member.roles))}, "
               f"{_status(member.active)}.")


@team.command("remove")
@db_option
@by_option(ADMIN, required=False)
@click.argument("name")
def team_remove(url: str, by: str | None, name: str) -> None:
    """Retire member NAME (they can no longer act; the history keeps their name)."""
    with open_workspace(url, None) as ws:
        ws.team.remove(name, by=by)
    click.echo(f"Member {name} retired.")


@team.command("list")
@db_option
@json_option
def team_list(url: str, as_json: bool) -> None:
    """List the members (retired ones too)."""
    with open_workspace(url, None) as ws:
        members = ws.team.list()
    if as_json:
        emit_json({"members": [member_json(m) for m in members]})
        return
    for m in members:
        click.echo(f"{m.name:<12} {_status(m.active):<8} {','.join(sorted(m.roles)):<24} "
                   f"{m.email or ''}".rstrip())


# -- channels -------------------------------------------------------------------------

def _settings(values: tuple[str, ...]) -> dict[str, str] | None:
    if not values:
        return None
    result = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: use --setting KEY=VALUE",
                                     param_hint="--setting")
        result[key] = value
    return result


@cli.group()
def channel() -> None:
    """Add, change, retire and list channels."""


@channel.command("add")
@db_option
@by_option(ADMIN, required=False)
@click.argument("name")
@click.option("--network", required=True, help="x, linkedin, mastodon …")
@click.option("--handle", default="", help="The account's handle.")
@click.option("--timezone", default="UTC", show_default=True,
              help="IANA zone its times are planned and shown in.")
@click.option("--publisher", default=None,
              help="Publisher that sends its posts (default: the network's).")
@click.option("--setting", "settings", multiple=True, metavar="KEY=VALUE",
              help="A publisher setting (repeat).")
def channel_add(url: str, by: str | None, name: str, network: str, handle: str,
                timezone: str, publisher: str | None, settings: tuple[str, ...]) -> None:
    """Add channel NAME."""
    with open_workspace(url, None) as ws:
        ws.channels.add(name, network=network, handle=handle, timezone=timezone,
                        publisher=publisher, settings=_settings(settings), by=by)
    click.echo(f"Channel {name} added ({network}).")


@channel.command("update")
@db_option
@by_option(ADMIN, required=False)
@click.argument("name")
@click.option("--handle", default=None)
@click.option("--timezone", default=None)
@click.option("--publisher", default=None)
@click.option("--setting", "settings", multiple=True, metavar="KEY=VALUE",
              help="Replace the publisher settings (repeat).")
@click.option("--active/--inactive", default=None, help="Reactivate or retire.")
def channel_update(url: str, by: str | None, name: str, handle: str | None,
                   timezone: str | None, publisher: str | None, settings: tuple[str, ...],
                   active: bool | None) -> None:
    """Change channel NAME."""
    if (handle, timezone, publisher, active) == (None, None, None, None) and not settings:
        raise click.UsageError("nothing to change: give --handle, --timezone, --publisher, "
                               "--setting or --active/--inactive")
    kwargs: dict[str, Any] = {}
    if publisher is not None:
        kwargs["publisher"] = publisher
    with open_workspace(url, None) as ws:
        changed = ws.channels.update(name, handle=handle, timezone=timezone, active=active,
                                     settings=_settings(settings), by=by, **kwargs)
    click.echo(f"Channel {changed.name}: {changed.network} {changed.handle} "
               f"{changed.timezone}, {_status(changed.active)}.")


@channel.command("remove")
@db_option
@by_option(ADMIN, required=False)
@click.argument("name")
def channel_remove(url: str, by: str | None, name: str) -> None:
    """Retire channel NAME (no new posts for it; the history keeps its name)."""
    with open_workspace(url, None) as ws:
        ws.channels.remove(name, by=by)
    click.echo(f"Channel {name} retired.")


@channel.command("list")
@db_option
@json_option
def channel_list(url: str, as_json: bool) -> None:
    """List the channels (retired ones too)."""
    with open_workspace(url, None) as ws:
        channels = ws.channels.list()
    if as_json:
        emit_json({"channels": [channel_json(c) for c in channels]})
        return
    for c in channels:
        click.echo(f"{c.name:<14} {_status(c.active):<8} {c.network:<10} {c.handle:<14} "
                   f"{c.timezone}")


# -- campaigns ------------------------------------------------------------------------

@cli.group()
def campaign() -> None:
    """Add, change, retire and list campaigns."""


@campaign.command("add")
@db_option
@by_option(ADMIN, required=False)
@click.argument("name")
@click.option("--goal", default="")
@click.option("--hashtag", "hashtags", multiple=True, help="A hashtag (repeat).")
def campaign_add(url: str, by: str | None, name: str, goal: str,
                 hashtags: tuple[str, ...]) -> None:
    """Add campaign NAME."""
    with open_workspace(url, None) as ws:
        ws.campaigns.add(name, goal=goal, hashtags=hashtags, by=by)
    click.echo(f"Campaign {name} added.")


@campaign.command("update")
@db_option
@by_option(ADMIN, required=False)
@click.argument("name")
@click.option("--goal", default=None)
@click.option("--hashtag", "hashtags", multiple=True, help="Replace the hashtags (repeat).")
@click.option("--active/--inactive", default=None, help="Reactivate or retire.")
def campaign_update(url: str, by: str | None, name: str, goal: str | None,
                    hashtags: tuple[str, ...], active: bool | None) -> None:
    """Change campaign NAME."""
    if goal is None and not hashtags and active is None:
        raise click.UsageError("nothing to change: give --goal, --hashtag or "
                               "--active/--inactive")
    with open_workspace(url, None) as ws:
        changed = ws.campaigns.update(name, goal=goal, hashtags=hashtags or None,
                                      active=active, by=by)
    click.echo(f"Campaign {changed.name}: {_status(changed.active)}.")


@campaign.command("remove")
@db_option
@by_option(ADMIN, required=False)
@click.argument("name")
def campaign_remove(url: str, by: str | None, name: str) -> None:
    """Retire campaign NAME (no new posts for it; its posts keep it)."""
    with open_workspace(url, None) as ws:
        ws.campaigns.remove(name, by=by)
    click.echo(f"Campaign {name} retired.")


@campaign.command("list")
@db_option
@json_option
def campaign_list(url: str, as_json: bool) -> None:
    """List the campaigns (retired ones too)."""
    with open_workspace(url, None) as ws:
        campaigns = ws.campaigns.list()
    if as_json:
        emit_json({"campaigns": [campaign_json(c) for c in campaigns]})
        return
    for c in campaigns:
        click.echo(f"{c.name:<16} {_status(c.active):<8} {' '.join(c.hashtags):<24} "
                   f"{c.goal}".rstrip())
