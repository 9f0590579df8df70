"""`make dev`: the compose services natively, their output on this terminal, until Ctrl-C.

Uses the configured servers (PostgreSQL, and Redis with Celery) when they answer, else starts
embedded ones with their data in .local/ (tools/embedded.py, one line says so). Runs the compose
`provision` command (the database and its roles), then `migrate`, then starts the long-running
services (upstream, the Celery worker if there is one, api) with their compose argv.
API_PORT and UPSTREAM_PORT move the services off their compose ports. Ctrl-C, SIGTERM or SIGHUP
stops every process it started, embedded servers included.
"""

import os
import signal
import sys
import time

from {{ cookiecutter.project_slug }}.config import AdminSettings, load_settings

from tools.embedded import LocalServers
from tools.native import PROJECT_ROOT, Service, compose_port, compose_services, run_once

LOCAL_DATA = PROJECT_ROOT / ".local"  # the embedded servers' data, kept between runs (git-ignored)


def stop_on_signal(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM / SIGHUP: stop the services as Ctrl-C does


def prepare_database(servers: LocalServers, env: dict[str, str]) -> None:
    """The compose `provision` command: the database and its two roles, as the admin user."""
    try:
        print(run_once("provision", env).strip())
    except RuntimeError as error:
        advice = "start it, or fix .env"
        if servers.embedded("PostgreSQL"):
            made_with = "the embedded cluster keeps the admin user and password it was made with"
            advice = f"{made_with}: fix .env or remove {LOCAL_DATA / 'postgres'}"
        sys.exit(f"{str(error).strip()}\n{advice}")


def port_of(name: str) -> int:
    return int(os.environ.get(f"{name.upper()}_PORT") or compose_port(name))


def supervise(services: list[Service]) -> list[Service]:
    """Start them in order, report when the api is ready; return the ones that exited, once one has."""
    for service in services:
        service.start()
        print(f"started {service.name}: {' '.join(service.argv)}", flush=True)
    api = services[-1]
    api.wait_http("/health/ready", timeout=60)
    print(f"ready: {api.url}/docs   (Ctrl-C stops everything)", flush=True)
    while all(service.process.poll() is None for service in services):
        time.sleep(0.5)
    return [service for service in services if service.process.poll() is not None]


def run_stack(servers: LocalServers) -> None:
    """Database, migrations, then the long-running services until one exits or Ctrl-C."""
    os.environ.update(servers.env)  # this process and every service it starts: the chosen servers
    upstream_port = port_of("upstream")
    env = {"UPSTREAM_URL": f"http://127.0.0.1:{upstream_port}"} if os.environ.get("UPSTREAM_PORT") else {}
    # Plain text on a terminal; JSON, the default, is for log collectors.
    env["LOG_FORMAT"] = os.environ.get("LOG_FORMAT", "console")
    # One api worker unless asked: one process to read, and room in the budget for the tests.
    env["WEB_CONCURRENCY"] = os.environ.get("WEB_CONCURRENCY", "1")
    prepare_database(servers, env)
    run_once("migrate", env)
    ports = {"upstream": upstream_port, "api": port_of("api")}
    names = [name for name in ("upstream", "worker", "api") if name in compose_services()]
    services = [Service.from_compose(name, env, port=ports.get(name)) for name in names]
    try:
        exited = supervise(services)
    finally:
        for service in reversed(services):
            service.stop()
    # Last, below the others' shutdown lines; and not 0: a service that died is a failure.
    named = ", ".join(f"{service.name} (exit code {service.process.returncode})" for service in exited)
    sys.exit(f"make dev: {named} exited, so the others were stopped")


def main() -> None:
    signal.signal(signal.SIGTERM, stop_on_signal)
    signal.signal(signal.SIGHUP, stop_on_signal)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started in the background
    try:
        with LocalServers(load_settings(AdminSettings), LOCAL_DATA) as servers:
            run_stack(servers)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
