"""postflow: the editorial workflow of a social-media team, as a library.

>>> import postflow
>>> ws = postflow.open("memory://")
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from postflow._time import Clock, SystemClock
from postflow.approvals import PendingApproval
from postflow.audit import replay
from postflow.exceptions import (
    ConfigError,
    ConflictError,
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

try:
    __version__ = version("postflow")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "ACTION_ROLES",
    "Approval",
    "AuditEntry",
    "Cadence",
    "Campaign",
    "Channel",
    "Clock",
    "ConfigError",
    "ConflictError",
    "Delivery",
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
