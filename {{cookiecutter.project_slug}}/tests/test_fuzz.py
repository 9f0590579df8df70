"""The whole API fuzzed from its own OpenAPI schema, against the real app under uvicorn (tests/fuzz.py
says what fails). The negative control: an app with known bugs (tests/broken_app.py), served by the
same command, for which the same fuzz must report each bug."""

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from schemathesis import Case

from {{ cookiecutter.project_slug }}.config import AdminSettings
from {{ cookiecutter.project_slug }}.models import MAX_WAIT_SECONDS

from .fuzz import fuzz
from .otlp_receiver import Receiver, traced_env
from .services import start_api
from tools.database import drop_database
from tools.native import Service, database_env, run_once

MAX_EXAMPLES = 30  # per operation and mode: well under a minute for the whole API on 2 cores
FUZZ_MAX_WAIT = 0.05  # seconds: the most a fuzzed wait route sleeps (cap_waits)
FUZZ_MAX_N = 10_000  # CPU_MAX_N (and JOB_MAX_N) of the fuzzed app: any larger n is a quick 422


@pytest.fixture(scope="module", params=["untraced", "traced"])
def fuzzed_api(
    request: pytest.FixtureRequest,
    admin_settings: AdminSettings,
    upstream,
    service_env,
    log_dir: Path,
    otlp_receiver: Receiver,
{%- if cookiecutter.use_celery == "yes" %}
    redis_db,
{%- endif %}
) -> Iterator[Service]:
    """The app as `api` runs it, with a database and roles of its own (the fuzzer's rows would fill
    the pages other tests read) and small CPU bounds, so each n the fuzzer sends is either cheap or
    a 422. Once with tracing off, once on: the traced app must answer as documented too."""
    own_database = database_env("fuzz")
    env = {
        **service_env,
        **own_database,
        "CPU_MAX_N": str(FUZZ_MAX_N),
{%- if cookiecutter.use_celery == "yes" %}
        "JOB_MAX_N": str(FUZZ_MAX_N),
{%- endif %}
        **(traced_env(otlp_receiver.endpoint) if request.param == "traced" else {}),
    }
    own = admin_settings.model_copy(update={key.lower(): value for key, value in own_database.items()})
    try:
        run_once("provision", env)
        run_once("migrate", env)
        service = start_api(env, log_dir, name=f"fuzzed_api_{request.param}")
        try:
            yield service
        finally:
            service.stop()
    finally:
        drop_database(own)


@pytest.fixture(scope="module")
def broken_api(service_env, log_dir: Path) -> Iterator[Service]:
    service = start_api(service_env, log_dir, name="broken_api", app="tests.broken_app:create_app")
    try:
        yield service
    finally:
        service.stop()


def wait_parameters(openapi: dict) -> set[str]:
    """The query parameters bounded by MAX_WAIT_SECONDS: how long the route sleeps, as asked."""
    return {
        parameter["name"]
        for path in openapi["paths"].values()
        for operation in path.values()
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "query" and parameter["schema"].get("maximum") == MAX_WAIT_SECONDS
    }


def cap_waits(names: set[str]) -> Callable[[Case], None]:
    """A valid wait (0 to MAX_WAIT_SECONDS) is sent as at most FUZZ_MAX_WAIT: still valid, and the
    fuzzer does not spend its time asleep. Anything else (negative, too large, not a number) is sent
    as generated, so every wait route stays in, with every documented bound."""

    def capped(value: object) -> object:
        if isinstance(value, list):  # ?delay=1&delay=2: FastAPI reads one of them, so cap each
            return [capped(item) for item in value]
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return min(value, FUZZ_MAX_WAIT) if number and 0 <= value <= MAX_WAIT_SECONDS else value

    def cap(case: Case) -> None:
        for name in names & set(case.query or {}):
            case.query[name] = capped(case.query[name])

    return cap


def test_every_route_answers_as_documented(request, fuzzed_api):
{%- if cookiecutter.use_celery == "yes" %}
    request.getfixturevalue("worker")  # takes the fuzzer's jobs (n <= FUZZ_MAX_N) off the shared queue
{%- endif %}
    openapi = httpx.get(f"{fuzzed_api.url}/openapi.json").json()
    waits = wait_parameters(openapi)
    assert waits == {"seconds", "delay"}
    assert fuzz(fuzzed_api.url, openapi, MAX_EXAMPLES, adjust=cap_waits(waits)) == {}


def test_the_fuzz_reports_each_bug_of_a_broken_app(broken_api):
    openapi = httpx.get(f"{broken_api.url}/openapi.json").json()
    assert fuzz(broken_api.url, openapi, MAX_EXAMPLES) == {
        "GET /inverse": {"ServerError: Server error", "UndefinedStatusCode: Undocumented status code"},
        "GET /ratio": {"JsonSchemaError: Response violates schema"},
        "GET /queue-full": {"UndefinedStatusCode: Undocumented status code"},
    }
