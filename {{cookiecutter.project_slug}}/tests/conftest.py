"""Real parts only: a database made for this run (dropped after), with Celery a Redis database of
its own, and the compose services started natively with their compose argv (tools/native.py) on
free ports.

The configured servers are used when they answer, embedded ones otherwise (tools/embedded.py, with
throwaway data in the session's temporary folder); pytest's header says which. The whole session,
and every process it starts, runs with the chosen servers in os.environ.
"""

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from {{ cookiecutter.project_slug }}.config import AdminSettings, Settings, load_settings

from .otlp_receiver import Receiver, traced_env
from .services import start_api{% if cookiecutter.use_celery == "yes" %}, start_worker{% endif %}
from tools.database import drop_database
from tools.embedded import Configured, LocalServers, choose
{%- if cookiecutter.use_celery == "yes" %}
from tools.embedded_redis import isolated_redis_env
{%- endif %}
from tools.native import Service, free_port, isolated_env, run_once

SERVER_CHOICES = pytest.StashKey[list[Configured]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[SERVER_CHOICES] = choose(load_settings())


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [choice.header() for choice in config.stash[SERVER_CHOICES]]


@contextmanager
def environment(overrides: dict[str, str]) -> Iterator[None]:
    """os.environ with `overrides`, as it was again on exit."""
    previous = {key: os.environ.get(key) for key in overrides}
    os.environ.update(overrides)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session", autouse=True)
def local_servers(request: pytest.FixtureRequest, log_dir: Path) -> Iterator[LocalServers]:
    """The servers pytest's header names, for every test and for every process a test starts.

    Embedded ones keep their data in a folder of their own, removed at the end: not under pytest's
    temporary root, which every new pytest run makes private again (as root, `nobody` runs the
    embedded PostgreSQL and must keep reaching its data)."""
    choices = request.config.stash[SERVER_CHOICES]
    with tempfile.TemporaryDirectory(prefix="test-servers-") as data_root:
        settings = load_settings(AdminSettings)
        servers = LocalServers(settings, Path(data_root), log_dir, choices=choices, durable=False)
        with servers, environment(servers.env):
            yield servers


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("service-logs")


@pytest.fixture(scope="session")
def upstream_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def service_env(local_servers: LocalServers, upstream_port: int) -> dict[str, str]:
    """Environment shared by every process of this run. One api worker: the tests count the threads
    and connections of one process (test_workers starts several)."""
    env = isolated_env("test", upstream_port)
{%- if cookiecutter.use_celery == "yes" %}
    # Redis database TEST_REDIS_DB (default 15), emptied before and after the run.
    env.update(isolated_redis_env(os.environ.get("TEST_REDIS_DB", "15")))
    env["JOB_VISIBILITY_TIMEOUT"] = os.environ.get("TEST_JOB_VISIBILITY_TIMEOUT", "8")
{%- endif %}
    env["WEB_CONCURRENCY"] = "1"
    return env


@pytest.fixture(scope="session")
def settings(service_env: dict[str, str]) -> Iterator[Settings]:
    with environment(service_env):
        yield load_settings()


@pytest.fixture(scope="session")
def admin_settings(service_env: dict[str, str]) -> Iterator[AdminSettings]:
    with environment(service_env):
        yield load_settings(AdminSettings)


@pytest.fixture(scope="session")
def database(
    settings: Settings, admin_settings: AdminSettings, service_env: dict[str, str]
) -> Iterator[Settings]:
    """A fresh database and roles of its own, made by the compose `provision` command and migrated by
    `migrate` (as the owner), both dropped at the end."""
    try:
        run_once("provision", service_env)
        run_once("migrate", service_env)
        yield settings
    finally:
        drop_database(admin_settings)
{%- if cookiecutter.use_celery == "yes" %}


@pytest.fixture(scope="session")
def redis_db(settings: Settings) -> Iterator[Settings]:
    import redis

    client = redis.Redis.from_url(settings.redis_url)
    client.flushdb()
    try:
        yield settings
    finally:
        client.flushdb()
        client.close()
{%- endif %}


@pytest.fixture(scope="session")
def upstream(service_env: dict[str, str], upstream_port: int, log_dir: Path) -> Iterator[Service]:
    log_path = log_dir / "upstream.log"
    service = Service.from_compose("upstream", service_env, port=upstream_port, log_path=log_path).start()
    try:
        service.wait_http("/health")
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def api(request, database, upstream, service_env, log_dir) -> Iterator[Service]:
    """The real app under uvicorn, started with the compose `api` command."""
{%- if cookiecutter.use_celery == "yes" %}
    request.getfixturevalue("redis_db")  # the jobs' Redis database, emptied before the api starts
{%- endif %}
    service = start_api(service_env, log_dir)
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def otlp_receiver() -> Iterator[Receiver]:
    """An OTLP/HTTP collector of the tests' own (tests/otlp_receiver.py), for the traced servers."""
    with Receiver() as receiver:
        yield receiver


@pytest.fixture(scope="session")
def traced_api(request, database, upstream, service_env, log_dir, otlp_receiver) -> Iterator[Service]:
    """The same command with OTEL_EXPORTER_OTLP_ENDPOINT set: tracing on, exporting to otlp_receiver."""
{%- if cookiecutter.use_celery == "yes" %}
    request.getfixturevalue("redis_db")
{%- endif %}
    service = start_api({**service_env, **traced_env(otlp_receiver.endpoint)}, log_dir, name="traced_api")
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def anti_api(database, upstream, service_env, log_dir) -> Iterator[Service]:
    """The same command serving antipatterns.app: the negative controls."""
    service = start_api(service_env, log_dir, name="anti_api", app="antipatterns.app:create_app")
    try:
        yield service
    finally:
        service.stop()
{%- if cookiecutter.use_celery == "yes" %}


@pytest.fixture(scope="session")
def worker(redis_db, service_env, log_dir) -> Iterator[Service]:
    """A real Celery worker process, started with the compose `worker` command."""
    service = start_worker(service_env, log_dir)
    try:
        yield service
    finally:
        service.stop()
{%- endif %}
