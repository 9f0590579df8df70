"""Shutdown with every resource in use, the watchdog and the metrics sampler running: the resources
close in the reverse order the lifespan opened them, so nothing reads a closed one, and the log has no
record at WARNING or above and no traceback. The control, tests/shutdown_control_app.py, closes one
resource badly: the same check must find it."""

import json
import time

import httpx
{%- if cookiecutter.use_celery == "yes" %}
import pytest
{%- endif %}

from .services import start_api
from tools.native import Service
{%- if cookiecutter.use_celery == "yes" %}

pytestmark = pytest.mark.usefixtures("redis_db")  # the job submitted below lands in the test's Redis db
{%- endif %}

SAMPLER_ROUNDS = 2.5  # seconds: the sampler reads every resource (once a second) more than twice


def use_every_resource(service: Service) -> None:
    calls = ["/health/ready", "/async/upstream?delay=0", "/sync/upstream?delay=0", "/mixed/report?delay=0"]
    calls += ["/cpu/compute?n=1000", "/metrics"]
    for path in calls:
        httpx.get(f"{service.url}{path}", timeout=30).raise_for_status()
{%- if cookiecutter.use_celery == "yes" %}
    httpx.post(f"{service.url}/cpu/jobs", json={"n": 1000}, timeout=30).raise_for_status()
{%- endif %}
    time.sleep(SAMPLER_ROUNDS)


def shutdown_problems(log: str) -> list[str]:
    """Every record at WARNING or above, and every line of a traceback, in a JSON-lines log."""
    problems = []
    for line in log.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            if "Traceback" in line:
                problems.append(line)
            continue
        if record.get("level") in {"warning", "error", "critical"} or "exception" in record:
            problems.append(line)
    return problems


def stopped_log(env: dict[str, str], log_dir, name: str, app: str | None = None) -> str:
    service = start_api(env, log_dir, name=name, app=app)
    try:
        use_every_resource(service)
    finally:
        service.stop()
    return service.log_path.read_text()


def test_shutdown_with_every_resource_in_use_logs_no_error(database, upstream, service_env, log_dir):
    log = stopped_log(service_env, log_dir, "api_shutdown")
    assert "Application shutdown complete" in log, log[-2000:]
    assert shutdown_problems(log) == []


def test_the_check_sees_a_resource_that_closes_badly(database, upstream, service_env, log_dir):
    control = "tests.shutdown_control_app:create_app"
    log = stopped_log(service_env, log_dir, "api_shutdown_control", app=control)
    assert any("CloseFailed" in line for line in shutdown_problems(log)), log[-3000:]
