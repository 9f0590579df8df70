"""A run's database and roles, removed when the run ends; provision.py makes them."""

from contextlib import closing

from psycopg2 import sql

from {{ cookiecutter.project_slug }}.config import AdminSettings
from {{ cookiecutter.project_slug }}.operations.provision import admin_connection, names


def drop_database(settings: AdminSettings) -> None:
    """POSTGRES_DB, then its two roles (their grants went with the database)."""
    with closing(admin_connection(settings)) as connection, connection.cursor() as cursor:
        cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {database} WITH (FORCE)").format(**names(settings)))
        cursor.execute(sql.SQL("DROP ROLE IF EXISTS {app}, {owner}").format(**names(settings)))
