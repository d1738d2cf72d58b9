"""postflow: the editorial workflow of a social-media team, as a library.

>>> import postflow
>>> ws = postflow.open("memory://")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from postflow._time import Clock, SystemClock
from postflow._version import DISTRIBUTION
from postflow._version import version as _installed_version
from postflow.audit import replay
from postflow.exceptions import (
    ConfigError,
    ConflictError,
    DeliveryError,
    InvalidTransition,
    MigrationRequired,
    NotFound,
    OutcomeUnknownError,
    PermanentError,
    PermissionDenied,
    PostflowError,
    Problem,
    PublishError,
    RetryableError,
    StorageError,
    ValidationFailed,
)
from postflow.hookspecs import hookimpl
from postflow.models import (
    Approval,
    AuditEntry,
    Cadence,
    Campaign,
    Channel,
    Delivery,
    Feed,
    Hold,
    Member,
    PlanningEntry,
    Post,
    Revision,
    Series,
    StageStatus,
)
from postflow.storage import PostQuery, Storage
from postflow.workflow import Stage, TransitionRule, Workflow
from postflow.workspace import ACTION_ROLES, Workspace, open

if TYPE_CHECKING:
    from postflow.approvals import PendingApproval

def __getattr__(name: str) -> Any:
    if name == "__version__":  # looked up on first use: reading metadata is slow
        return _installed_version()
    if name == "PendingApproval":  # its feature module loads when a workspace opens
        from postflow.approvals import PendingApproval

        return PendingApproval
    raise AttributeError(f"module 'postflow' has no attribute {name!r}")


__all__ = [
    "ACTION_ROLES",
    "DISTRIBUTION",
    "Approval",
    "AuditEntry",
    "Cadence",
    "Campaign",
    "Channel",
    "Clock",
    "ConfigError",
    "ConflictError",
    "Delivery",
    "DeliveryError",
    "Feed",
    "Hold",
    "InvalidTransition",
    "Member",
    "MigrationRequired",
    "NotFound",
    "OutcomeUnknownError",
    "PendingApproval",
    "PermanentError",
    "PermissionDenied",
    "PlanningEntry",
    "Post",
    "PostQuery",
    "PostflowError",
    "Problem",
    "PublishError",
    "RetryableError",
    "Revision",
    "Series",
    "Stage",
    "StageStatus",
    "Storage",
    "StorageError",
    "SystemClock",
    "TransitionRule",
    "ValidationFailed",
    "Workflow",
    "Workspace",
    "__version__",
    "hookimpl",
    "open",
    "replay",
]
