"""``-v``/``-q`` for postflow commands: how much of the ``postflow`` logger is shown.

Put :func:`verbosity_options` under a command's ``@cli.command()`` (or
``@group.command()``): it adds ``-v/--verbose`` and ``-q/--quiet`` (each may be
repeated) and sets the level of the ``postflow`` logger before the command runs. The
command's signature does not change (the options are not passed to it).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

__all__ = ["LOGGER", "LOG_FORMAT", "apply_verbosity", "verbosity_options"]

LOGGER = "postflow"
"""The logger whose level ``-v``/``-q`` set (every postflow module logs below it)."""

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""The format of the stderr handler ``-v`` adds when the program configured none."""

F = TypeVar("F", bound=Callable[..., Any])
_META = "postflow.verbosity"


def apply_verbosity(verbose: int, quiet: int) -> int:
    """Set the ``postflow`` logger's level from the counts of ``-v`` and ``-q``.

    Each ``-v`` lowers the level one step from WARNING (``-v`` INFO, ``-vv`` DEBUG), each
    ``-q`` raises it (``-q`` ERROR, ``-qq`` CRITICAL). With ``-v`` and no logging
    configured, a stderr handler is added so the messages are seen. Returns the level.
    """
    level = min(max(logging.WARNING - 10 * (verbose - quiet), logging.DEBUG),
                logging.CRITICAL)
    logging.getLogger(LOGGER).setLevel(level)
    if level < logging.WARNING and not logging.getLogger().handlers:
        logging.basicConfig(stream=sys.stderr, format=LOG_FORMAT)
    return level


def _set_level(ctx: click.Context, param: click.Parameter, value: int) -> None:
    counts: dict[str, int] = ctx.meta.setdefault(_META, {})
    counts[param.name or ""] = value
    if len(counts) == 2 and any(counts.values()):  # both seen, one given: apply once
        apply_verbosity(counts.get("verbose", 0), counts.get("quiet", 0))


def verbosity_options(command: F) -> F:
    """Add ``-v/--verbose`` and ``-q/--quiet`` to a click command (see the module doc)."""
    command = click.option(
        "-q", "--quiet", count=True, expose_value=False, is_eager=True, callback=_set_level,
        help="Log less on stderr: -q errors only, -qq critical only.")(command)
    return click.option(
        "-v", "--verbose", count=True, expose_value=False, is_eager=True,
        callback=_set_level, help="Log more on stderr: -v info, -vv debug.")(command)
