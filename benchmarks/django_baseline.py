"""django-fsm + the Django ORM on SQLite doing postflow's lifecycle (a standalone script).

Run by :mod:`benchmarks.lifecycle_sqlite` with the python of the benchmark's own
virtual environment (Django and django-fsm are not postflow dependencies); prints
one JSON line with its timings. Standalone use::

    .bench-venv/bin/python benchmarks/django_baseline.py --posts 1000

The models mirror postflow's schema (same columns and indexes): ``Post`` with an
``FSMField`` and ``@transition`` methods ``submit``/``approve``/``schedule`` and
django-fsm's ``ConcurrentTransitionMixin`` (its compare-and-set on the state), plus
``PostChannel``, ``Revision`` and ``AuditEntry``. Per post: create (post, channel row,
revision, audit entry) and then each transition with ``save()`` and an audit entry,
each step in its own ``transaction.atomic()``: four committed transactions per post.
SQLite: WAL and ``synchronous=NORMAL`` through ``OPTIONS["init_command"]``,
``BEGIN IMMEDIATE`` through ``OPTIONS["transaction_mode"]`` (Django ≥ 5.1).
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
import uuid
import warnings
from datetime import timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

import django
from django.conf import settings

warnings.filterwarnings("ignore", message=".*django-fsm.*")


def configure(path: Path) -> None:
    settings.configure(
        DEBUG=False,
        USE_TZ=True,
        INSTALLED_APPS=[],
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        DATABASES={"default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(path),
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
                "transaction_mode": "IMMEDIATE",
            },
        }},
    )
    django.setup()


def build_models() -> dict[str, Any]:
    from django.db import models
    from django_fsm import ConcurrentTransitionMixin, FSMField, transition

    class Post(ConcurrentTransitionMixin, models.Model):  # type: ignore[misc]
        version = models.IntegerField(default=1)
        state = FSMField(default="draft")
        author = models.TextField()
        text = models.TextField()
        channels = models.JSONField(default=list)
        revision = models.IntegerField(default=1)
        created_at = models.DateTimeField()
        updated_at = models.DateTimeField()
        state_changed_at = models.DateTimeField()
        campaign = models.TextField(null=True)
        planned_for = models.DateField(null=True)
        scheduled_at = models.DateTimeField(null=True)
        scheduled_zone = models.TextField(null=True)
        approvals = models.JSONField(default=list)

        class Meta:
            app_label = "bench"
            indexes = [  # noqa: RUF012 - Django's idiom
                models.Index(fields=["state", "scheduled_at", "id"], name="posts_state_time"),
                models.Index(fields=["scheduled_at", "id"], name="posts_time"),
                models.Index(fields=["author", "id"], name="posts_author"),
                models.Index(fields=["campaign", "id"], name="posts_campaign"),
            ]

        @transition(field=state, source="draft", target="review")
        def submit(self) -> None:
            pass

        @transition(field=state, source="review", target="approved")
        def approve(self) -> None:
            pass

        @transition(field=state, source="approved", target="scheduled")
        def schedule(self) -> None:
            pass

    class PostChannel(models.Model):
        channel = models.TextField()
        post_id = models.IntegerField()

        class Meta:
            app_label = "bench"
            unique_together = (("channel", "post_id"),)

    class Revision(models.Model):
        post_id = models.IntegerField()
        number = models.IntegerField()
        text = models.TextField()
        channels = models.JSONField(default=list)
        campaign = models.TextField(null=True)
        author = models.TextField()
        created_at = models.DateTimeField()

        class Meta:
            app_label = "bench"
            unique_together = (("post_id", "number"),)

    class AuditEntry(models.Model):
        post_id = models.IntegerField(null=True)
        action = models.TextField()
        actor = models.TextField()
        at = models.DateTimeField()
        correlation_id = models.TextField()
        from_state = models.TextField(null=True)
        to_state = models.TextField(null=True)
        revision = models.IntegerField(null=True)
        comment = models.TextField(null=True)
        data = models.JSONField(null=True)

        class Meta:
            app_label = "bench"
            indexes = [models.Index(fields=["post_id", "id"], name="audit_post")]  # noqa: RUF012

    return {"Post": Post, "PostChannel": PostChannel, "Revision": Revision,
            "AuditEntry": AuditEntry}


def reset(models: dict[str, Any]) -> None:
    from django.db import connection

    with connection.schema_editor() as editor:
        existing = connection.introspection.table_names()
        for model in models.values():
            if model._meta.db_table in existing:
                editor.delete_model(model)
            editor.create_model(model)


def lifecycle(models: dict[str, Any], bodies: list[str]) -> None:
    from django.db import transaction
    from django.utils import timezone

    post_model, audit = models["Post"], models["AuditEntry"]
    channel_model, revision_model = models["PostChannel"], models["Revision"]
    at = timezone.now() + timedelta(days=30)
    for text in bodies:
        now = timezone.now()
        with transaction.atomic():
            post = post_model.objects.create(
                author="ana", text=text, channels=["acme-x"], created_at=now,
                updated_at=now, state_changed_at=now)
            channel_model.objects.create(channel="acme-x", post_id=post.id)
            revision_model.objects.create(post_id=post.id, number=1, text=text,
                                          channels=["acme-x"], author="ana", created_at=now)
            audit.objects.create(
                post_id=post.id, action="create", actor="ana", at=now,
                correlation_id=uuid.uuid4().hex, to_state="draft", revision=1,
                data={"text": text, "channels": ["acme-x"]})
        for trigger, actor in (("submit", "ana"), ("approve", "ben"), ("schedule", "cy")):
            now = timezone.now()
            with transaction.atomic():
                source = post.state
                getattr(post, trigger)()
                data = None
                if trigger == "approve":
                    post.approvals = [["ben", "review", 1, now.isoformat(), None]]
                    data = {"stage": "review"}
                elif trigger == "schedule":
                    post.scheduled_at, post.scheduled_zone = at, "UTC"
                    data = {"scheduled_at": at.isoformat(), "scheduled_zone": "UTC"}
                post.version += 1
                post.updated_at = post.state_changed_at = now
                post.save()
                audit.objects.create(
                    post_id=post.id, action=trigger, actor=actor, at=now,
                    correlation_id=uuid.uuid4().hex, from_state=source, to_state=post.state,
                    revision=1, data=data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--posts", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    folder = args.dir or Path(tempfile.mkdtemp(prefix="postflow-django-"))
    configure(folder / "django-fsm.db")
    models = build_models()
    bodies = [f"Post {i}: our spring launch is live, read the story and tell us what you "
              "think" for i in range(args.posts)]
    times = []
    for _ in range(args.repeat):
        reset(models)
        gc.collect()
        start = time.perf_counter()
        lifecycle(models, bodies)
        times.append(time.perf_counter() - start)
    assert models["Post"].objects.filter(state="scheduled").count() == args.posts
    assert models["AuditEntry"].objects.count() == 4 * args.posts

    from django.db import connection

    with connection.cursor() as cursor:
        journal = cursor.execute("PRAGMA journal_mode").fetchone()[0]
        sync = cursor.execute("PRAGMA synchronous").fetchone()[0]
    fsm_package = next(p for p in ("django-fsm", "django-fsm-2") if _installed(p))
    print(json.dumps({
        "us_per_post": min(times) / args.posts * 1e6,
        "runs_s": times,
        "django": django.get_version(),
        "fsm_package": fsm_package,
        "fsm": metadata.version(fsm_package),
        "note": f"journal_mode={journal}, synchronous={sync} (1 = NORMAL), best of "
                f"{args.repeat}, gc enabled, gc.collect() before each run",
    }))


def _installed(name: str) -> bool:
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True


if __name__ == "__main__":
    main()
