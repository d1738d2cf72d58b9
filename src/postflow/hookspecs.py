"""The plugin contract: every hook postflow calls, with its docstring as the contract.

Implement hooks in a module or class, decorate them with :data:`postflow.hookimpl`, and
either pass the plugin to :func:`postflow.open` (``plugins=[...]``) or publish it under
the ``postflow`` entry-point group. Implementations may accept any subset of a hook's
arguments, by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click
    import icalendar

    from postflow.models import AuditEntry, Campaign, Channel, Member, Post
    from postflow.notifications.channels import NotificationChannel
    from postflow.publishing import Publisher
    from postflow.storage import SchemaManager, Storage
    from postflow.workspace import Workspace

__all__ = ["PROJECT", "hookimpl", "hookspec"]

PROJECT = "postflow"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec(firstresult=True)
def postflow_storage(url: str) -> Storage | None:
    """Open the storage backend for ``url``, or return ``None`` if the scheme is not yours.

    Called once by :func:`postflow.open`. The first non-``None`` result wins; the
    built-in ``memory://`` and ``sqlite:///`` backends are ``trylast`` so an installed
    plugin can take over their schemes. Raise :class:`~postflow.StorageError` when the
    URL is yours but the database cannot be used.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def postflow_schema(url: str) -> SchemaManager | None:
    """The :class:`~postflow.storage.SchemaManager` of the database at ``url`` (its
    schema version and migrations, for ``postflow db status|migrate``), or ``None`` if
    the scheme is not yours or its databases have no schema versions.

    It must not create, open as a workspace, or migrate anything until
    :meth:`~postflow.storage.SchemaManager.migrate` is called. The built-in
    ``sqlite:///`` backend implements it (``trylast``).

    .. versionadded:: 0.3
    """


@hookspec
def postflow_authorize(
    workspace: Workspace, member: Member, action: str, post: Post | None
) -> str | None:
    """Veto an action: return a reason to deny it, or ``None`` to have no objection.

    Called after the built-in role policy allowed ``action`` (a trigger name, ``edit``,
    ``create``, ``plan``, ``comment``, ``manage``, or the publishing actions ``pause``,
    ``resume`` and ``resolve``) for ``member``; ``post`` is ``None`` for ``create``,
    ``manage``, ``pause`` and ``resume``. Any reason from any plugin denies:
    :class:`~postflow.PermissionDenied` is raised with it. Also consulted by
    :meth:`Workspace.allowed`, so keep it fast and side-effect free.

    .. versionadded:: 0.1
    """


@hookspec
def postflow_before_transition(
    workspace: Workspace,
    post: Post,
    trigger: str,
    source: str,
    dest: str,
    actor: str,
    data: Mapping[str, Any],
) -> None:
    """Veto a transition by raising a :class:`~postflow.PostflowError`.

    Called after permissions and the workflow allowed ``trigger`` (a workflow trigger,
    ``edit`` or ``plan``) and before anything is written; ``post`` is the stored
    snapshot, ``dest`` the state it will end in (equal to ``source`` for a partial
    approval or an edit in draft), ``data`` the call's extra data. The error propagates
    to the caller unchanged and nothing is stored. May be called again for the same
    call when a concurrent write forces a retry.

    The publishing worker asks too, with ``trigger="publish"`` and ``actor`` the
    worker's id, after it claimed a due post and before it sends anything: a veto then
    fails the post (reason ``vetoed``, the message kept in the trail) and nothing is
    sent. The worker's outcomes (``publish``, ``fail``) record what already happened at
    a network and cannot be vetoed.

    .. versionadded:: 0.1
    """


@hookspec
def postflow_after_transition(
    workspace: Workspace,
    post: Post,
    previous: Post,
    trigger: str,
    actor: str,
    entries: Sequence[AuditEntry],
) -> None:
    """React to a committed transition (including ``edit`` and ``plan``).

    Called once for every transition of a post, by any caller (the publishing worker's
    ``publish`` and ``fail`` too), after the change and its audit ``entries`` are
    stored; ``post`` is the new snapshot, ``previous`` the one it replaced. The change
    cannot be undone here: exceptions are logged (logger ``postflow``) and do not reach
    the caller. The worker's ``claim``, ``release`` and ``retry_wait`` writes are not
    transitions: they reach :func:`postflow_after_change` only.

    .. versionadded:: 0.1
    """


@hookspec
def postflow_after_change(workspace: Workspace, entries: Sequence[AuditEntry]) -> None:
    """React to every committed change, of a post or not.

    Called once per call that changed anything (a trigger, ``edit``, ``plan``, a
    comment, the worker's claim, publish, fail, retry wait and release, a pause or a
    resume, a team, channel, campaign, feed, series or workflow change …), after its
    transaction committed, with the audit ``entries`` it wrote: all share one
    ``correlation_id``, oldest first. Never called for a call that was vetoed, refused
    or lost a compare-and-set. Exceptions are logged (logger ``postflow``) and do not
    reach the caller.

    An in-process hook is lost if the process dies between the commit and the call;
    consumers that must not miss a change read the audit trail through a durable cursor
    instead (:meth:`postflow.Workspace.changes`, see the architecture page).

    .. versionadded:: 0.3
    """


@hookspec
def postflow_calendar_event(
    workspace: Workspace, post: Post, channel: Channel, campaign: Campaign | None,
    event: icalendar.Event,
) -> None:
    """Add or change properties of the calendar event of ``post`` on ``channel``.

    ``campaign`` is the post's campaign, if it has one.

    Called for every event a calendar or feed renders, in place on ``event`` (an
    :class:`icalendar.Event`). The built-in implementation runs first and sets UID,
    times, SUMMARY, DESCRIPTION, STATUS, SEQUENCE, CATEGORIES, URL and ATTACH; later
    implementations see those and may change them (``event[name] = ...``, ``event.add``).
    The rendered bytes are cached per post version, channel version and campaign
    version, so the result must depend only on those arguments. An error propagates to
    the caller of the render.

    .. versionadded:: 0.2
    """


@hookspec
def postflow_register_publishers(register: Callable[[str, Publisher], None]) -> None:
    """Register publishers: ``register(name, publisher)`` for each network you serve.

    A channel is published by the publisher named by its ``publisher`` setting, or else
    by the one registered under its ``network``. ``publisher`` implements
    :class:`postflow.publishing.Publisher`: ``publish(item)`` receives an
    :class:`~postflow.publishing.Outgoing` (the post's text, media and links for that
    channel, and an idempotency key derived from post, channel and revision) and returns
    a :class:`~postflow.publishing.Published`, or raises
    :class:`~postflow.RetryableError`, :class:`~postflow.PermanentError` or
    :class:`~postflow.OutcomeUnknownError`. Any other exception is recorded as a
    retryable failure. Called once per workspace, when publishing first needs the
    publishers; a name registered twice is a :class:`~postflow.ConfigError`.

    .. versionadded:: 0.2
    """


@hookspec
def postflow_register_notification_channels(
    register: Callable[[str, NotificationChannel], None],
) -> None:
    """Register notification delivery channels: ``register(name, channel)`` for each.

    A channel has ``configure(settings)`` (its ``[channels.NAME]`` table of the
    notification configuration; raise :class:`~postflow.ConfigError` naming a bad key)
    and ``send(message)`` (raise :class:`~postflow.DeliveryError` when it did not go
    out). postflow registers ``email``, ``webhook``, ``inbox`` and ``null`` itself;
    :doc:`notifications` shows a channel of your own.

    .. versionadded:: 0.3
    """


@hookspec
def postflow_register_commands(cli: click.Group) -> None:
    """Add commands to the ``postflow`` command line with ``cli.command()``.

    Called once when the CLI starts, before arguments are parsed. Commands that need a
    workspace open it with ``postflow.open(url)`` from their own ``--db`` option.

    .. versionadded:: 0.1
    """
