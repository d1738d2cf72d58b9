"""Building a workspace's plugin manager, and the typed facade over its hooks."""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import pluggy

from postflow import hookspecs
from postflow.exceptions import ConfigError
from postflow.hookspecs import PROJECT

if TYPE_CHECKING:
    import click
    import icalendar

    from postflow.models import AuditEntry, Campaign, Channel, Member, Post
    from postflow.notifications.channels import NotificationChannel
    from postflow.publishing import Publisher
    from postflow.storage import SchemaManager, Storage

__all__ = [
    "BLOCK_ENV",
    "BUILTIN_PLUGINS",
    "Hooks",
    "PluginInfo",
    "describe_plugins",
    "make_plugin_manager",
]

log = logging.getLogger("postflow")

BUILTIN_PLUGINS: tuple[str, ...] = (
    "postflow.storage.memory",
    "postflow.storage.sqlite",
    "postflow.calendar",
    "postflow.publishers",
    "postflow.notifications.channels",
)
"""Modules registered as plugins in every workspace, after external plugins."""

BLOCK_ENV = "POSTFLOW_DISABLE_PLUGINS"
"""Comma-separated plugin names (entry-point names or built-in module paths) to skip."""


def blocked_names() -> list[str]:
    """The plugin names listed in :data:`BLOCK_ENV`."""
    return [n.strip() for n in os.environ.get(BLOCK_ENV, "").split(",") if n.strip()]


def make_plugin_manager(
    plugins: Iterable[object] = (), *, entry_points: bool = True
) -> pluggy.PluginManager:
    """A fresh plugin manager: entry-point plugins, then ``plugins``, then built-ins.

    There is no global manager; every workspace and every CLI run builds its own.
    """
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in blocked_names():
        pm.set_blocked(name)
    if entry_points:
        try:
            pm.load_setuptools_entrypoints(PROJECT)
        except Exception as exc:
            raise ConfigError(_load_failure(pm, exc)) from exc
    try:
        for plugin in plugins:
            pm.register(plugin)
        for module_name in BUILTIN_PLUGINS:
            if not pm.is_blocked(module_name):
                pm.register(importlib.import_module(module_name), name=module_name)
        pm.check_pending()
    except (ValueError, pluggy.PluginValidationError) as exc:
        raise ConfigError(f"plugin problem: {exc}") from exc
    for impl in [*pm.hook.postflow_after_transition.get_hookimpls(),
                 *pm.hook.postflow_after_change.get_hookimpls()]:
        if impl.hookwrapper or impl.wrapper:
            raise ConfigError(
                f"plugin {impl.plugin_name}: {impl.function.__name__} cannot be a wrapper "
                "(each implementation is called on its own so one failure cannot hide "
                "another)"
            )
    return pm


def installed_entry_points() -> list[tuple[Any, Any]]:
    """``(distribution, entry point)`` for every entry point in the ``postflow`` group.

    In the order pluggy's ``load_setuptools_entrypoints`` visits them, and read through
    ``importlib.metadata.distributions`` as it does (tests replace that function).
    """
    return [(dist, ep) for dist in list(importlib.metadata.distributions())
            for ep in dist.entry_points if ep.group == PROJECT]


def distribution_label(dist: Any) -> str:
    """``"name version"`` of an installed distribution."""
    try:
        name = dist.metadata["name"]
    except Exception:  # pragma: no cover - metadata without a name
        name = None
    return f"{name or '?'} {getattr(dist, 'version', None) or '?'}"


def _load_failure(pm: pluggy.PluginManager, exc: BaseException) -> str:
    """The message for ``load_setuptools_entrypoints`` failing with ``exc``.

    pluggy stops at the first entry point that fails to load or register; it is the
    first one it would visit that is neither blocked nor fully loaded (pluggy records
    a plugin's distribution only once its registration succeeded).
    """
    loaded = {pm.get_name(plugin) for plugin, _ in pm.list_plugin_distinfo()}
    for dist, ep in installed_entry_points():
        if pm.is_blocked(ep.name) or ep.name in loaded:
            continue
        return (f"installed postflow plugin {ep.name!r} (entry point {ep.value!r} of "
                f"distribution {distribution_label(dist)}) failed to load: {exc!r}; "
                f"uninstall it, or block it with {BLOCK_ENV}={ep.name}")
    return (f"an installed postflow plugin failed to load: {exc!r} (block it with "
            f"{BLOCK_ENV}=<name>)")


@attrs.frozen
class PluginInfo:
    """One row of :func:`describe_plugins`."""

    name: str
    """The entry-point name, built-in module path, or in-process plugin name."""
    origin: str
    """``"<distribution> <version>"``, ``"built-in"`` or ``"in-process"``."""
    hooks: tuple[str, ...]
    """The hooks it implements (empty unless it loaded)."""
    status: str
    """``"ok"``, ``"blocked"`` (by :data:`BLOCK_ENV`), ``"broken: <error>"``, or
    ``"ignored: <reason>"`` (a second entry point with a name already taken)."""


def _plugin_problem(pm: pluggy.PluginManager, plugin: object) -> str | None:
    """What ``make_plugin_manager`` would refuse in one registered plugin, or ``None``."""
    for caller in pm.get_hookcallers(plugin) or ():
        for impl in caller.get_hookimpls():
            if impl.plugin is not plugin:
                continue
            if not caller.has_spec() and not impl.optionalhook:
                return f"unknown hook {caller.name!r}"
            if caller.name == "postflow_after_transition" and (impl.hookwrapper
                                                               or impl.wrapper):
                return "postflow_after_transition cannot be a wrapper"
    return None


def _itself(plugin: object) -> object:
    return plugin


def describe_plugins(
    plugins: Iterable[object] = (), *, entry_points: bool = True
) -> list[PluginInfo]:
    """Every plugin a workspace would load, each with its status; never raises for one.

    Unlike :func:`make_plugin_manager`, a plugin that fails to import, to register or
    to validate is listed as ``"broken: <error>"`` and the others are still described,
    so ``postflow plugins`` can show what is wrong. Order: entry points, ``plugins``,
    built-ins, as they are registered.
    """
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in blocked_names():
        pm.set_blocked(name)
    rows: list[PluginInfo] = []

    def add(name: str, origin: str, load: Callable[..., object], *args: object) -> None:
        if pm.is_blocked(name):
            rows.append(PluginInfo(name, origin, (), "blocked"))
            return
        if pm.has_plugin(name):
            rows.append(PluginInfo(name, origin, (),
                                   f"ignored: a plugin called {name!r} is already loaded"))
            return
        try:
            plugin = load(*args)
            pm.register(plugin, name=name)
        except Exception as exc:
            if pm.has_plugin(name):  # registered, then refused by validation
                pm.unregister(name=name)
            rows.append(PluginInfo(name, origin, (), f"broken: {type(exc).__name__}: {exc}"))
            return
        problem = _plugin_problem(pm, plugin)
        if problem is not None:
            pm.unregister(name=name)
            rows.append(PluginInfo(name, origin, (), f"broken: {problem}"))
            return
        hooks = tuple(sorted(c.name for c in pm.get_hookcallers(plugin) or ()))
        rows.append(PluginInfo(name, origin, hooks, "ok"))

    if entry_points:
        try:
            found = installed_entry_points()
        except Exception as exc:  # pragma: no cover - unreadable installed metadata
            rows.append(PluginInfo(PROJECT, "entry points", (),
                                   f"broken: {type(exc).__name__}: {exc}"))
            found = []
        for dist, ep in found:
            add(ep.name, distribution_label(dist), ep.load)
    for plugin in plugins:
        add(pm.get_canonical_name(plugin), "in-process", _itself, plugin)
    for module_name in BUILTIN_PLUGINS:
        add(module_name, "built-in", importlib.import_module, module_name)
    return rows


class Hooks:
    """The only caller of ``pm.hook``: one typed method per hook.

    Plugins are fixed when the workspace opens, so hooks nobody implements are skipped
    without entering pluggy.
    """

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self.authorizes = bool(pm.hook.postflow_authorize.get_hookimpls())
        """Whether any plugin implements ``postflow_authorize``."""
        self.vetoes = bool(pm.hook.postflow_before_transition.get_hookimpls())
        """Whether any plugin implements ``postflow_before_transition``."""
        self.follows = bool(pm.hook.postflow_after_transition.get_hookimpls())
        """Whether any plugin implements ``postflow_after_transition``."""
        self.watches = bool(pm.hook.postflow_after_change.get_hookimpls())
        """Whether any plugin implements ``postflow_after_change``."""
        builders = pm.hook.postflow_calendar_event.get_hookimpls()
        # one implementation (normally the built-in): call it without pluggy's dispatch,
        # which costs a few percent of a cold calendar render
        self._only_builder = builders[0] if len(builders) == 1 else None

    def storage(self, url: str) -> Storage | None:
        """The backend that claims ``url``."""
        result: Storage | None = self.pm.hook.postflow_storage(url=url)
        return result

    def schema(self, url: str) -> SchemaManager | None:
        """The schema manager of the database at ``url``, if its backend has one."""
        result: SchemaManager | None = self.pm.hook.postflow_schema(url=url)
        return result

    def authorize(
        self, workspace: object, member: Member, action: str, post: Post | None
    ) -> list[str]:
        """The reasons plugins give to deny ``action`` (empty: no objection)."""
        if not self.authorizes:
            return []
        reasons: list[str | None] = self.pm.hook.postflow_authorize(
            workspace=workspace, member=member, action=action, post=post
        )
        return [r for r in reasons if r]

    def before_transition(
        self, workspace: object, post: Post, trigger: str, source: str, dest: str,
        actor: str, data: Mapping[str, Any],
    ) -> None:
        """Let plugins veto a transition (they raise)."""
        if self.vetoes:
            self.pm.hook.postflow_before_transition(
                workspace=workspace, post=post, trigger=trigger, source=source, dest=dest,
                actor=actor, data=data,
            )

    def after_transition(
        self, workspace: object, post: Post, previous: Post, trigger: str, actor: str,
        entries: Sequence[AuditEntry],
    ) -> None:
        """Tell plugins about a committed transition; their errors are logged."""
        if not self.follows:
            return
        for impl in reversed(self.pm.hook.postflow_after_transition.get_hookimpls()):
            kwargs = {"workspace": workspace, "post": post, "previous": previous,
                      "trigger": trigger, "actor": actor, "entries": entries}
            try:
                impl.function(**{name: kwargs[name] for name in impl.argnames})
            except Exception:
                log.exception(
                    "plugin %s failed in postflow_after_transition for post %s (%s)",
                    impl.plugin_name, post.id, trigger,
                )

    def after_change(self, workspace: object, entries: Sequence[AuditEntry]) -> None:
        """Hand the committed entries of one call to plugins; their errors are logged."""
        if not self.watches:
            return
        for impl in reversed(self.pm.hook.postflow_after_change.get_hookimpls()):
            kwargs = {"workspace": workspace, "entries": entries}
            try:
                impl.function(**{name: kwargs[name] for name in impl.argnames})
            except Exception:
                log.exception("plugin %s failed in postflow_after_change for %s",
                              impl.plugin_name, entries[0].correlation_id if entries else "")

    def calendar_event(
        self, workspace: object, post: Post, channel: Channel, campaign: Campaign | None,
        event: icalendar.Event,
    ) -> None:
        """Let the built-in builder and plugins fill the event of ``post`` on ``channel``."""
        only = self._only_builder
        if only is not None:
            kwargs = {"workspace": workspace, "post": post, "channel": channel,
                      "campaign": campaign, "event": event}
            only.function(**{name: kwargs[name] for name in only.argnames})
            return
        self.pm.hook.postflow_calendar_event(
            workspace=workspace, post=post, channel=channel, campaign=campaign, event=event)

    def register_publishers(self) -> dict[str, Publisher]:
        """Every registered publisher by name; a name registered twice is refused."""
        found: dict[str, Publisher] = {}

        def register(name: str, publisher: Publisher) -> None:
            if not isinstance(name, str) or not name:
                raise ConfigError(f"a publisher needs a name, got {name!r}")
            if name in found:
                raise ConfigError(f"two plugins register a publisher called {name!r}")
            if not callable(getattr(publisher, "publish", None)):
                raise ConfigError(f"publisher {name!r} has no publish() method")
            found[name] = publisher

        self.pm.hook.postflow_register_publishers(register=register)
        return found

    def register_notification_channels(self) -> dict[str, NotificationChannel]:
        """Every registered notification channel by name; a name registered twice is
        refused."""
        found: dict[str, NotificationChannel] = {}

        def register(name: str, channel: NotificationChannel) -> None:
            if not isinstance(name, str) or not name:
                raise ConfigError(f"a notification channel needs a name, got {name!r}")
            if name in found:
                raise ConfigError(f"two plugins register a notification channel called "
                                  f"{name!r}")
            if not callable(getattr(channel, "send", None)):
                raise ConfigError(f"notification channel {name!r} has no send() method")
            found[name] = channel

        self.pm.hook.postflow_register_notification_channels(register=register)
        return found

    def register_commands(self, cli: click.Group) -> None:
        """Let plugins add CLI commands."""
        self.pm.hook.postflow_register_commands(cli=cli)

    def describe(self) -> list[tuple[str, str, list[str]]]:
        """``(name, distribution, hooks)`` for every registered plugin."""
        dists = {id(p): f"{d.project_name} {d.version}" for p, d in
                 self.pm.list_plugin_distinfo()}
        rows = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:
                continue
            hooks = sorted(c.name for c in self.pm.get_hookcallers(plugin) or ())
            rows.append((name, dists.get(id(plugin), "built-in" if name in BUILTIN_PLUGINS
                                         else "in-process"), hooks))
        return rows
