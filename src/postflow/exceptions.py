"""The errors postflow raises.

Every error is a :class:`PostflowError`; each also subclasses the builtin exception a
caller would reach for (``NotFound`` is a ``LookupError``, ``ValidationFailed`` a
``ValueError``), so generic handlers keep working.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

__all__ = [
    "ConfigError",
    "ConflictError",
    "InvalidTransition",
    "MigrationRequired",
    "NotFound",
    "OutcomeUnknownError",
    "PermanentError",
    "PermissionDenied",
    "PostflowError",
    "Problem",
    "PublishError",
    "RetryableError",
    "StorageError",
    "ValidationFailed",
]


class PostflowError(Exception):
    """Base class of every error postflow raises on purpose."""


@attrs.frozen
class Problem:
    """One reason a post or an input was refused.

    ``channel`` is the channel the problem concerns (``None`` when it concerns the post
    or the call as a whole), ``code`` a stable machine-readable slug, ``field`` the
    argument or attribute at fault where there is one.
    """

    code: str
    message: str
    channel: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = f"[{self.channel}] " if self.channel else ""
        return f"{where}{self.message} ({self.code})"


class ValidationFailed(PostflowError, ValueError):
    """Input was refused; :attr:`problems` lists every reason."""

    def __init__(self, subject: str, problems: Iterable[Problem]) -> None:
        self.subject = subject
        self.problems: tuple[Problem, ...] = tuple(problems)
        listed = "; ".join(str(p) for p in self.problems)
        super().__init__(f"{subject}: {listed}")

    @classmethod
    def single(
        cls,
        subject: str,
        code: str,
        message: str,
        *,
        field: str | None = None,
        channel: str | None = None,
    ) -> ValidationFailed:
        """Build the error for a single problem."""
        return cls(subject, [Problem(code, message, channel=channel, field=field)])


class InvalidTransition(PostflowError):
    """A trigger cannot be fired on a post in its current state."""

    def __init__(
        self,
        message: str,
        *,
        post_id: int | None = None,
        trigger: str | None = None,
        state: str | None = None,
        allowed: Sequence[str] = (),
    ) -> None:
        self.post_id = post_id
        self.trigger = trigger
        self.state = state
        self.allowed = tuple(allowed)
        super().__init__(message)


class PermissionDenied(PostflowError, PermissionError):
    """A member (or an unknown name) may not do what was asked."""

    def __init__(
        self,
        message: str,
        *,
        member: str | None = None,
        action: str | None = None,
        roles_needed: Iterable[str] = (),
    ) -> None:
        self.member = member
        self.action = action
        self.roles_needed = tuple(sorted(roles_needed))
        super().__init__(message)


class ConflictError(PostflowError):
    """A write was based on a version that is no longer the stored one."""

    def __init__(
        self, message: str, *, post_id: int | None = None, expected: int | None = None,
        actual: int | None = None,
    ) -> None:
        self.post_id = post_id
        self.expected = expected
        self.actual = actual
        super().__init__(message)


class NotFound(PostflowError, LookupError):
    """A post, member, channel or campaign does not exist."""


class ConfigError(PostflowError, ValueError):
    """A workflow definition, storage URL or setting is invalid."""


class StorageError(PostflowError):
    """The storage backend failed or holds data postflow cannot use."""


class MigrationRequired(StorageError):
    """The database's schema is older than this postflow's, and it was opened without
    migrating (``sqlite:///path?migrate=no``, as the command line does): run
    ``postflow db migrate``. :attr:`found` and :attr:`current` are the two versions."""

    def __init__(self, message: str, *, found: int, current: int) -> None:
        self.found = found
        self.current = current
        super().__init__(message)


class PublishError(PostflowError):
    """What a publisher raises when a post did not go out; one of the three below."""


class RetryableError(PublishError):
    """Nothing was published and trying again later is safe (a rate limit, the network
    down before anything was sent). ``retry_after`` is the delay the network asked for,
    in seconds, if it named one."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        try:  # a header's text, say: keep a usable number or nothing
            seconds = None if retry_after is None else float(retry_after)
        except (TypeError, ValueError):
            seconds = None
        self.retry_after = seconds if seconds is not None and seconds >= 0 else None
        super().__init__(message)


class PermanentError(PublishError):
    """The network refused the post for good (rejected content, a revoked token)."""


class DeliveryError(PostflowError):
    """What a notification channel raises when a message did not go out. ``retryable``:
    trying again later may succeed (a server down, a timeout, a 5xx answer)."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        self.retryable = retryable
        super().__init__(message)


class OutcomeUnknownError(PublishError):
    """The request may or may not have been published (a timeout after sending).

    postflow never resends such a delivery by itself: it is marked ``unconfirmed``
    until the publisher's status check or a person settles it.
    """
