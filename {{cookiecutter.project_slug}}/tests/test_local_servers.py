"""tools/embedded.py: a configured server that answers is used, whatever it then says; one on this
machine that refuses the connection is replaced by an embedded one. Real sockets and a real embedded
PostgreSQL, started here with a password of its own."""

import socket
import tempfile
from pathlib import Path

import psycopg2
import pytest

from {{ cookiecutter.project_slug }}.config import AdminSettings
from {{ cookiecutter.project_slug }}.operations.provision import provision

from tools.embedded import EmbeddedPostgres, choose, on_this_machine
from tools.native import free_port


def settings_for(port: int, **changes: str) -> AdminSettings:
    """Settings with every server on `port` of 127.0.0.1, whatever .env and the environment say (a
    project without Celery ignores redis_url, as it ignores REDIS_URL)."""
    values = {"postgres_host": "127.0.0.1", "postgres_port": port, "redis_url": f"redis://127.0.0.1:{port}/0"}
    return AdminSettings(_env_file=None, **{**values, **changes})


def test_a_closed_port_on_this_machine_is_replaced():
    choices = choose(settings_for(free_port()))
    assert [choice.embed for choice in choices] == [True] * len(choices), choices


def test_anything_listening_is_used():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        choices = choose(settings_for(listener.getsockname()[1]))
    assert [choice.embed for choice in choices] == [False] * len(choices), choices


def test_only_servers_on_this_machine_are_replaced():
    assert all(map(on_this_machine, ["127.0.0.1", "127.0.0.53", "localhost", "::1", "/run/postgresql"]))
    assert not any(map(on_this_machine, ["db.internal", "10.0.0.5", "postgres"]))


@pytest.fixture(scope="module")
def guarded_postgres(log_dir: Path):
    """An embedded PostgreSQL whose superuser's only password is "right", outside pytest's temporary
    root."""
    with tempfile.TemporaryDirectory(prefix="guarded-postgres-") as root:
        settings = settings_for(free_port(), postgres_admin_password="right")
        server = EmbeddedPostgres(settings, Path(root) / "postgres", log_dir / "guarded-postgres.log", False)
        server.start()
        try:
            yield server
        finally:
            server.stop()


def test_a_wrong_password_is_reported_not_worked_around(guarded_postgres):
    wrong = settings_for(guarded_postgres.port, postgres_admin_password="wrong")
    assert not choose(wrong)[0].embed, "a server that answers was replaced"
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        provision(wrong)
    # Negative control: the right password gets in.
    right = settings_for(guarded_postgres.port, postgres_admin_password="right", postgres_db="guarded")
    assert provision(right) is True
