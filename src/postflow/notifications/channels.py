"""Notification delivery channels: the protocol and the built-ins.

STUB: helper H3 replaces this file (see /work/notify-spec.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

__all__ = ["NotificationChannel"]


class NotificationChannel(Protocol):
    """A way to deliver a rendered notification (email, webhook, Slack …)."""

    def configure(self, settings: Mapping[str, Any]) -> None:
        """Take the channel's ``[channels.NAME]`` settings; ConfigError on a bad key."""

    def send(self, message: Any) -> None:
        """Deliver ``message``; DeliveryError when it did not go out."""
