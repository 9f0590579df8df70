"""The database a run needs, made and dropped through PostgreSQL's `postgres` maintenance database."""

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from {{ cookiecutter.project_slug }}.config import Settings


@contextmanager
def admin_connection(settings: Settings) -> Iterator[psycopg2.extensions.connection]:
    """An autocommit connection to the server in `settings`, closed on exit. It opens the `postgres`
    database, which always exists, rather than POSTGRES_DB, which this may be about to create."""
    connection = psycopg2.connect(
        host=settings.postgres_host,
        port=settings.postgres_port,
        user=settings.postgres_user,
        password=settings.postgres_password or None,
        dbname="postgres",
        connect_timeout=5,
    )
    try:
        connection.autocommit = True  # CREATE / DROP DATABASE refuse to run in a transaction
        yield connection
    finally:
        connection.close()


def ensure_database(settings: Settings) -> bool:
    """Create POSTGRES_DB if it is missing; True when it was created."""
    with admin_connection(settings) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (settings.postgres_db,))
        if cursor.fetchone():
            return False
        cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(settings.postgres_db)))
        return True


def drop_database(settings: Settings) -> None:
    with admin_connection(settings) as connection, connection.cursor() as cursor:
        statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        cursor.execute(statement.format(sql.Identifier(settings.postgres_db)))
