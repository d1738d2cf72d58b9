"""``postflow db init|status|migrate|rekey``: creating a database, its schema version and
migrations, and new idempotency keys for a copied database."""

from __future__ import annotations

from pathlib import Path

import click

from postflow._urls import redact_url
from postflow.cli._app import (
    DEFAULT_URL,
    URL_ENV,
    cli,
    emit_json,
    json_option,
    open_workspace,
    sqlite_path,
    without_migrating,
)
from postflow.exceptions import ConfigError, ConflictError, NotFound, StorageError
from postflow.storage import SchemaManager

db_url_option = click.option(
    "--db", "url", envvar=URL_ENV, default=DEFAULT_URL, show_default=True,
    help=f"Storage URL (or set {URL_ENV}).")


def _schema(url: str) -> SchemaManager:
    """The schema manager of the database at ``url``, from the backend's
    ``postflow_schema`` hook; a missing SQLite file is refused, not created."""
    from postflow._plugins import Hooks, make_plugin_manager

    path = sqlite_path(url)
    if path is not None and not Path(path).exists():
        raise NotFound(f"no database at {path} (pass --db sqlite:///path or set {URL_ENV})")
    manager = Hooks(make_plugin_manager()).schema(url)
    if manager is None:
        raise ConfigError(f"{url.split(':', 1)[0]}: databases have no schema migrations "
                          "here (sqlite:/// files and backends that implement the "
                          "postflow_schema hook, such as postgresql://, do)")
    return manager


@cli.group()
def db() -> None:
    """The database: creating it, its schema version and migrations, copying it."""


@db.command("status")
@db_url_option
@json_option
def db_status(url: str, as_json: bool) -> None:
    """Show the schema version and the migrations still to run."""
    schema = _schema(url)
    path, current = schema.where, schema.current
    found = schema.version()
    if found is None:
        raise StorageError(f"{path} is not a postflow database")
    pending = list(range(found + 1, current + 1))
    if as_json:
        emit_json({"path": path, "schema_version": found, "current": current,
                   "pending": [{"version": n, "adds": schema.notes.get(n, "")}
                               for n in pending],
                   "newer": found > current})
        return
    click.echo(f"{path}: schema version {found} (this postflow: {current})")
    if found > current:
        click.echo("Written by a newer postflow: upgrade postflow to use it.")
    elif pending:
        click.echo(f"Pending migrations ({len(pending)}):")
        for n in pending:
            click.echo(f"  {n}: {schema.notes.get(n, '')}")
        click.echo("Run 'postflow db migrate' (it keeps a backup copy first)." if schema.backs_up
                   else "Run 'postflow db migrate' (back the database up first).")
    else:
        click.echo("Up to date.")


@db.command("migrate")
@db_url_option
@click.option("--no-backup", is_flag=True, help="Do not copy the file first.")
def db_migrate(url: str, no_backup: bool) -> None:
    """Migrate the database to this postflow's schema, after a backup copy."""
    schema = _schema(url)
    path = schema.where
    found, now, backup = schema.migrate(backup=not no_backup)
    if found == now:
        click.echo(f"{path}: schema version {now}, up to date; nothing to do.")
        return
    if backup is not None:
        click.echo(f"Backup: {backup}")
    click.echo(f"{path}: migrated from schema version {found} to {now}.")


@db.command("copy")
@click.argument("source")
@click.argument("destination")
@json_option
def db_copy(source: str, destination: str, as_json: bool) -> None:
    """Copy a whole database from SOURCE to the empty DESTINATION (both URLs), with its
    history: ids, versions and the audit trail are kept.

    For moving a team from a SQLite file to PostgreSQL: postflow db copy
    sqlite:///team.db postgresql://app@db/postflow. Stop every process using SOURCE
    first. The destination keeps the source's idempotency keys (a move); run 'postflow
    db rekey' on it if both will keep publishing. Refused when DESTINATION holds
    anything.
    """
    from postflow._plugins import Hooks, make_plugin_manager

    hooks = Hooks(make_plugin_manager())
    if sqlite_path(source) is not None and not Path(str(sqlite_path(source))).exists():
        raise NotFound(f"no database at {sqlite_path(source)}")
    manager = hooks.schema(source)
    if manager is not None and manager.version() is None:  # never create an empty source
        raise NotFound(f"{manager.where} is not a postflow database")
    target = sqlite_path(destination)
    created = target is not None and not Path(target).exists()
    src = hooks.storage(without_migrating(source))
    if src is None:
        raise ConfigError(f"no storage backend for {redact_url(source)!r}")
    try:
        dst = hooks.storage(destination)
        if dst is None:
            raise ConfigError(f"no storage backend for {redact_url(destination)!r}")
        try:
            try:
                rows = src.export_rows()
                dst.import_rows(rows)
            except NotImplementedError as exc:
                raise ConfigError(f"cannot copy between these databases: {exc}") from exc
            except ConflictError as exc:
                raise ConfigError(str(exc)) from exc
            again = dst.export_rows()
        finally:
            dst.close()
    except BaseException:
        if created and target is not None:
            Path(target).unlink(missing_ok=True)
        raise
    finally:
        src.close()
    summary = {table: len(found) for table, found in sorted(rows.items()) if found}
    copied = {table: len(found) for table, found in sorted(again.items()) if found}
    missing = {t: (n, copied.get(t, 0)) for t, n in summary.items()
               if t != "postflow_meta" and copied.get(t, 0) != n}
    if missing:
        raise StorageError("the copy does not match the source: " + ", ".join(
            f"{t}: {n} rows, copied {m}" for t, (n, m) in missing.items()))
    if as_json:
        emit_json({"source": redact_url(source), "destination": redact_url(destination),
                   "rows": summary})
        return
    click.echo(f"Copied {redact_url(source)} to {redact_url(destination)}:")
    for table, n in summary.items():
        if table != "postflow_meta":
            click.echo(f"  {table}: {n}")
    click.echo("Counts checked. The copy keeps the source's idempotency keys: run "
               "'postflow db rekey' on it if the source keeps publishing too.")


@db.command("rekey")
@db_url_option
@click.option("--by", envvar="POSTFLOW_USER", required=True,
              help="The admin doing it (default: $POSTFLOW_USER).")
@click.option("--moved", is_flag=True,
              help="The file was moved, not copied: keep its keys, stop the warning.")
def db_rekey(url: str, by: str, moved: bool) -> None:
    """Give a copied database its own idempotency keys.

    A copy of a database (staging made from production) would otherwise send the same
    idempotency keys as the original for different posts, and a network would take the
    copy's posts for repeats. Run it on the copy, before its worker starts.
    """
    with open_workspace(url, None) as ws:
        ws.rekey(by=by, moved=moved)
    click.echo("Kept the keys; the database is recorded as moved here." if moved
               else "The database has new idempotency keys.")


@db.command("init")
@db_url_option
@click.option("--workflow", "workflow_file", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The workflow TOML file the database keeps (default: the built-in one).")
@click.option("--admin", default=None, metavar="NAME",
              help="Add this first admin too (there is no one yet who could add them).")
@click.option("--email", default=None, help="The first admin's e-mail address.")
def db_init(url: str, workflow_file: Path | None, admin: str | None,
            email: str | None) -> None:
    """Create a new database with its workflow (and its first admin).

    Refused when the database exists already: every other command opens existing
    databases only, so a mistyped --db never creates an empty one.
    """
    import postflow
    from postflow.workflow import Workflow

    path = sqlite_path(url)
    if path is not None and Path(path).exists():
        raise ConfigError(f"{path} exists already: 'postflow db init' only creates new "
                          "databases")
    workflow = Workflow.from_toml(workflow_file) if workflow_file else None
    with postflow.open(url, workflow=workflow) as ws:
        if admin is not None:
            ws.team.add(admin, roles={"admin"}, email=email)
        click.echo(f"Created {path or redact_url(url)} with workflow {ws.workflow.name!r}"
                   + (f" and admin {admin}." if admin else "."))
