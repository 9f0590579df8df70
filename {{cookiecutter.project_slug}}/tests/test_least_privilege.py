"""Least privilege on the suite's real database: the app role (the api's and the worker's) reads and
writes rows and nothing else; the owner role, migrate's, may change the schema. The owner running
the same statements is the negative control: a refusal below is the role's, not a broken statement.
{%- if cookiecutter.use_celery == "yes" %}
Redis refuses a client without the password; the jobs tests run the api and workers against such a
Redis (test_jobs.private_redis).
{%- endif %}
"""

from collections.abc import Iterator
from contextlib import closing

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import pytest
{%- if cookiecutter.use_celery == "yes" %}
import redis
{%- endif %}
from psycopg2 import sql

from {{ cookiecutter.project_slug }}.config import AdminSettings
from {{ cookiecutter.project_slug }}.operations.provision import admin_connection
{%- if cookiecutter.use_celery == "yes" %}

from tools.embedded_redis import RedisServer
{%- endif %}

SCHEMA_CHANGES = [
    "CREATE TABLE intruder (id integer)",
    "DROP TABLE items",
    "ALTER TABLE items ADD COLUMN intruder integer",
    "TRUNCATE items",
    "CREATE INDEX intruder ON items (name)",
]


def connect(settings: AdminSettings, user: str, password: str) -> psycopg2.extensions.connection:
    return psycopg2.connect(**settings.psycopg2_connect_args(user, password))


@pytest.fixture
def as_app(database, admin_settings: AdminSettings) -> Iterator[psycopg2.extensions.connection]:
    connection = connect(admin_settings, admin_settings.postgres_user, admin_settings.postgres_password)
    yield connection
    connection.close()


@pytest.fixture
def as_owner(database, admin_settings: AdminSettings) -> Iterator[psycopg2.extensions.connection]:
    owner = admin_settings.postgres_owner_user
    connection = connect(admin_settings, owner, admin_settings.postgres_owner_password)
    yield connection
    connection.rollback()  # whatever a test changed as the owner is undone
    connection.close()


def test_the_app_role_reads_and_writes_rows(as_app):
    with as_app.cursor() as cursor:
        cursor.execute("INSERT INTO items (name) VALUES ('privileges') RETURNING id")
        (item_id,) = cursor.fetchone()
        cursor.execute("UPDATE items SET description = 'checked' WHERE id = %s", (item_id,))
        cursor.execute("SELECT description FROM items WHERE id = %s", (item_id,))
        assert cursor.fetchone() == ("checked",)
        cursor.execute("DELETE FROM items WHERE id = %s", (item_id,))
        assert cursor.rowcount == 1
    as_app.rollback()


@pytest.mark.parametrize("statement", SCHEMA_CHANGES)
def test_the_app_role_cannot_change_the_schema(as_app, statement):
    with as_app.cursor() as cursor, pytest.raises(psycopg2.errors.InsufficientPrivilege):
        cursor.execute(statement)
    as_app.rollback()


@pytest.mark.parametrize("statement", SCHEMA_CHANGES)
def test_the_owner_can_change_the_schema(as_owner, statement):
    with as_owner.cursor() as cursor:
        cursor.execute(statement)  # rolled back by the fixture


def test_the_app_role_holds_no_power_beyond_its_rows(as_app):
    with as_app.cursor() as cursor:
        cursor.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolbypassrls"
            " FROM pg_roles WHERE rolname = current_user"
        )
        assert cursor.fetchone() == (False, False, False, False)
    as_app.rollback()


def test_migrate_ran_as_the_owner(as_owner, admin_settings: AdminSettings):
    with as_owner.cursor() as cursor:
        cursor.execute("SELECT tableowner FROM pg_tables WHERE tablename IN ('items', 'alembic_version')")
        owners = {owner for (owner,) in cursor.fetchall()}
    assert owners == {admin_settings.postgres_owner_user}


def test_no_other_role_may_connect(database, admin_settings: AdminSettings):
    """PUBLIC lost CONNECT: a fresh login role is turned away; granted CONNECT, the same role gets in."""
    stranger, password = f"{admin_settings.postgres_db}_stranger", "stranger-password"
    names = {"role": sql.Identifier(stranger), "database": sql.Identifier(admin_settings.postgres_db)}
    with closing(admin_connection(admin_settings)) as admin, admin.cursor() as cursor:
        cursor.execute(sql.SQL("CREATE ROLE {role} LOGIN PASSWORD %s").format(**names), (password,))
        try:
            with pytest.raises(psycopg2.OperationalError, match="permission denied"):
                connect(admin_settings, stranger, password).close()
            cursor.execute(sql.SQL("GRANT CONNECT ON DATABASE {database} TO {role}").format(**names))
            connect(admin_settings, stranger, password).close()
        finally:
            cursor.execute(sql.SQL("REVOKE ALL ON DATABASE {database} FROM {role}").format(**names))
            cursor.execute(sql.SQL("DROP ROLE {role}").format(**names))
{%- if cookiecutter.use_celery == "yes" %}


def test_redis_refuses_a_client_without_the_password(tmp_path, log_dir):
    """The compose `redis` argv with a password, on a free port: no password (or a wrong one) is
    refused; the URL's password is the control that gets in."""
    server = RedisServer("redis://:right-password@127.0.0.1/0", tmp_path, log_dir / "guarded-redis.log")
    server.start()
    try:
        for url in (
            f"redis://127.0.0.1:{server.port}/0",
            f"redis://:wrong-password@127.0.0.1:{server.port}/0",
        ):
            client = redis.Redis.from_url(url, socket_timeout=5)
            with pytest.raises(redis.AuthenticationError):
                client.ping()
            client.close()
        client = redis.Redis.from_url(server.url, socket_timeout=5)
        assert client.ping() is True
        client.close()
    finally:
        server.stop()
{%- endif %}
