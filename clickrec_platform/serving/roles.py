"""The read-only role that SQL consumers and the API log in as.

It may read every table and view of the gold schema (now and later: default privileges) and nothing
else; its sessions are read-only by default too, and a transaction it leaves idle for 5 minutes is
ended (an open transaction on a published view would hold back the next publish). Its password comes from the settings
(``CLICKREC_READER_PASSWORD``) or is generated once into the state dir, like the owner's.
"""

from __future__ import annotations

import psycopg
from psycopg import sql
from pydantic import SecretStr

from clickrec_platform.settings import Settings, generate_secret


def reader_password(settings: Settings, *, create: bool = True) -> str:
    """The reader's password: from the settings, else the state dir's ``reader.password`` (written
    with mode 600 when missing and ``create`` is true)."""
    if settings.reader_password is not None:
        return settings.reader_password.get_secret_value()
    path = settings.state_dir / "reader.password"
    if not path.is_file():
        if not create:
            raise RuntimeError(f"No password for the read-only role {settings.reader_role!r}: set "
                               f"CLICKREC_READER_PASSWORD, or run `clickrec serve` once to generate {path}.")
        return generate_secret(path).get_secret_value()
    return path.read_text().strip()


def reader_dsn(settings: Settings) -> str:
    """A libpq URL for the gold database as the read-only role."""
    reader = settings.model_copy(update={"postgres_user": settings.reader_role,
                                         "postgres_password": SecretStr(reader_password(settings, create=False))})
    return reader.postgres_dsn()


def ensure_reader_role(conn: psycopg.Connection, settings: Settings) -> None:
    """Create the role (LOGIN, read-only sessions) if missing and set its password (idempotent).

    Needs a connection whose role may create roles (the local cluster's owner may)."""
    role = sql.Identifier(settings.reader_role)
    password = sql.Literal(reader_password(settings))  # utility statements take no bind parameters
    with conn.transaction(), conn.cursor() as cur:
        # Roles are cluster-wide: serialise concurrent creators (tests, serve, publish).
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('clickrec.reader_role'))")
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (settings.reader_role,))
        verb = "ALTER" if cur.fetchone() else "CREATE"
        cur.execute(sql.SQL(verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}").format(
            role, password))
        cur.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(role))
        # A transaction left open (a forgotten BEGIN in psql) would hold back publishing: end it.
        cur.execute(sql.SQL("ALTER ROLE {} SET idle_in_transaction_session_timeout = '5min'").format(role))
        cur.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
            sql.Identifier(conn.info.dbname), role))


def grant_schema_to_reader(conn: psycopg.Connection, schema: str, role: str) -> None:
    """USAGE on ``schema`` and SELECT on all its tables and views, present and future (tables the
    connected role creates later: default privileges)."""
    schema_id, role_id = sql.Identifier(schema), sql.Identifier(role)
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema_id, role_id))
        cur.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(schema_id, role_id))
        cur.execute(sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT ON TABLES TO {}").format(
            schema_id, role_id))
