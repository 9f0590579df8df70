"""Least privilege: the database and its two roles, made by a superuser before anything else runs
(the compose `provision` service; `make dev` runs the same argv).

Rule: idempotent, every run creates what is missing and sets the passwords again. POSTGRES_OWNER_USER
owns the schema (migrate); POSTGRES_USER may only read and write rows; nobody else may connect.
"""

import sys
from contextlib import closing

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from ..config import AdminSettings, load_settings

# A new role gets them with CREATE, an existing one again with ALTER (a password changed in .env).
ROLE_OPTIONS = "{role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT PASSWORD {password}"
DATABASE_GRANTS = [
    "ALTER DATABASE {database} OWNER TO {owner}",
    "REVOKE ALL ON DATABASE {database} FROM PUBLIC",
    "GRANT CONNECT ON DATABASE {database} TO {app}",
]
SCHEMA_GRANTS = [
    # Before PostgreSQL 15 every role could create objects in `public`.
    "ALTER SCHEMA public OWNER TO {owner}",
    "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
    "GRANT USAGE ON SCHEMA public TO {app}",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {app}",
    "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {app}",
    "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public"
    " GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {app}",
    "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {app}",
]


def admin_connection(settings: AdminSettings, database: str = "postgres") -> psycopg2.extensions.connection:
    """An autocommit superuser connection (CREATE DATABASE refuses to run in a transaction). The
    default `postgres` database always exists, unlike POSTGRES_DB, which this may be about to create."""
    admin = settings.postgres_admin_user, settings.postgres_admin_password
    connection = psycopg2.connect(**settings.psycopg2_connect_args(*admin, database=database))
    connection.autocommit = True
    return connection


def names(settings: AdminSettings) -> dict[str, sql.Composable]:
    return {
        "database": sql.Identifier(settings.postgres_db),
        "owner": sql.Identifier(settings.postgres_owner_user),
        "app": sql.Identifier(settings.postgres_user),
    }


def ensure_role(cursor: psycopg2.extensions.cursor, role: str, password: str) -> None:
    cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
    statement = ("ALTER ROLE " if cursor.fetchone() else "CREATE ROLE ") + ROLE_OPTIONS
    # A role without a password can still log in where the server trusts local connections.
    secret = sql.Literal(password) if password else sql.NULL
    cursor.execute(sql.SQL(statement).format(role=sql.Identifier(role), password=secret))


def provision(settings: AdminSettings) -> bool:
    """Create what is missing and grant exactly the privileges above; True if the database was new."""
    with closing(admin_connection(settings)) as connection, connection.cursor() as cursor:
        ensure_role(cursor, settings.postgres_owner_user, settings.postgres_owner_password)
        ensure_role(cursor, settings.postgres_user, settings.postgres_password)
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (settings.postgres_db,))
        created = cursor.fetchone() is None
        if created:
            cursor.execute(sql.SQL("CREATE DATABASE {database}").format(**names(settings)))
        for statement in DATABASE_GRANTS:
            cursor.execute(sql.SQL(statement).format(**names(settings)))
    with (
        closing(admin_connection(settings, settings.postgres_db)) as connection,
        connection.cursor() as cursor,
    ):
        for statement in SCHEMA_GRANTS:
            cursor.execute(sql.SQL(statement).format(**names(settings)))
    return created


def main() -> int:
    settings = load_settings(AdminSettings)
    try:
        created = provision(settings)
    except psycopg2.Error as error:
        where = f"{settings.postgres_host}:{settings.postgres_port}"
        first_line = str(error).strip().splitlines()[0]
        print(
            f"provision: PostgreSQL at {where} as {settings.postgres_admin_user}: {first_line}",
            file=sys.stderr,
        )
        return 1
    state = "created" if created else "up to date"
    print(
        f"provision: database {settings.postgres_db} {state}; roles {settings.postgres_owner_user} (owner), "
        f"{settings.postgres_user} (app)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
