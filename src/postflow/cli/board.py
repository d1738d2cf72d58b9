"""``postflow board``, ``history`` and ``plugins``: what is there."""

from __future__ import annotations

import importlib
import importlib.metadata
from pathlib import Path

import click
import pluggy

from postflow import hookspecs
from postflow._plugins import (
    BLOCK_ENV,
    BUILTIN_PLUGINS,
    Hooks,
    blocked_names,
    make_plugin_manager,
)
from postflow.cli._app import cli, db_option, open_workspace, workflow_option
from postflow.cli._logging import verbosity_options
from postflow.cli.render import render_board, render_history
from postflow.hookspecs import PROJECT

PluginRow = tuple[str, str, list[str], str | None]
"""``(name, origin, hooks, error)``: one plugin of ``postflow plugins``; ``error`` is
``None`` for a plugin that loaded."""


@cli.command()
@click.pass_context
@verbosity_options
def plugins(ctx: click.Context) -> None:
    """List the plugins loaded and the hooks each implements.

    A plugin that fails to load is listed as "broken: <error>" (and the exit status is
    1); the others are listed as usual.
    """
    try:
        rows: list[PluginRow] = [(name, origin, hooks, None) for name, origin, hooks
                                 in Hooks(make_plugin_manager()).describe()]
    except Exception:  # an installed plugin failed to load or to validate: find which
        rows = describe_one_by_one()
    for name, origin, hooks, error in rows:
        click.echo(f"{name}  ({origin})")
        if error is not None:
            click.echo(f"    broken: {error}")
        for hook in hooks:
            click.echo(f"    {hook}")
    broken = [(name, error) for name, _, _, error in rows if error is not None]
    for name, error in broken:
        click.echo(f"postflow: warning: plugin {name!r} failed to load: {error} (uninstall "
                   f"it, or block it with {BLOCK_ENV}={name})", err=True)
    if broken:
        ctx.exit(1)


def describe_one_by_one() -> list[PluginRow]:
    """The plugins a workspace would load, each entry point loaded and checked on its own,
    so that one broken plugin is named and the others are still described.

    The same order and checks as :func:`postflow._plugins.make_plugin_manager`:
    installed entry points (minus those blocked by ``POSTFLOW_DISABLE_PLUGINS``), then
    the built-ins.
    """
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in blocked_names():
        pm.set_blocked(name)
    rows: list[PluginRow] = []
    for ep in importlib.metadata.entry_points(group=PROJECT):
        if pm.is_blocked(ep.name) or pm.has_plugin(ep.name):
            continue
        dist = getattr(ep, "dist", None)
        origin = f"{dist.name} {dist.version}" if dist is not None else "installed"
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
            pm.check_pending()
            _refuse_wrappers(pm, plugin)
        except Exception as exc:
            if pm.has_plugin(ep.name):
                pm.unregister(name=ep.name)
            rows.append((ep.name, origin, [], f"{type(exc).__name__}: {exc}"))
            continue
        rows.append((ep.name, origin, _hooks(pm, plugin), None))
    for module_name in BUILTIN_PLUGINS:
        if not pm.is_blocked(module_name):
            plugin = importlib.import_module(module_name)
            pm.register(plugin, name=module_name)
            rows.append((module_name, "built-in", _hooks(pm, plugin), None))
    return rows


def _hooks(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    return sorted(c.name for c in pm.get_hookcallers(plugin) or ())


def _refuse_wrappers(pm: pluggy.PluginManager, plugin: object) -> None:
    """What ``make_plugin_manager`` refuses besides unknown hooks."""
    for caller in pm.get_hookcallers(plugin) or ():
        if caller.name not in ("postflow_after_transition", "postflow_after_change"):
            continue
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin and (impl.hookwrapper or impl.wrapper):
                raise ValueError(f"{caller.name} cannot be a wrapper")


@cli.command()
@verbosity_options
@db_option
@workflow_option
def board(url: str, workflow_file: Path | None) -> None:
    """Show every post, grouped by state."""
    with open_workspace(url, workflow_file) as ws:
        click.echo(render_board(ws))


@cli.command()
@verbosity_options
@db_option
@workflow_option
@click.argument("post_id", type=int)
def history(url: str, workflow_file: Path | None, post_id: int) -> None:
    """Show a post's audit trail."""
    with open_workspace(url, workflow_file) as ws:
        click.echo(render_history(ws.history(post_id)))
