"""A Celery job in the trace of the request that submitted it: the api sends the trace context in the
message, the real worker's span continues it, and the job's state names the trace. The api and the
worker of this module use a queue of their own, so no untraced worker of the session takes their jobs.
"""

import time
from collections.abc import Iterator

import httpx
import pytest

from .otlp_receiver import descends_from, new_trace, traced_env
from .services import start_api, start_worker
from tools.native import Service

QUEUE = {"JOB_QUEUE": "traced-jobs"}


@pytest.fixture(scope="module")
def traced_services(database, upstream, redis_db, service_env, log_dir, otlp_receiver) -> Iterator[Service]:
    env = {**service_env, **traced_env(otlp_receiver.endpoint), **QUEUE}
    worker = start_worker(env, log_dir, name="traced_worker")
    try:
        api = start_api(env, log_dir, name="traced_jobs_api")
        try:
            yield api
        finally:
            api.stop()
    finally:
        worker.stop()


def finished(api: Service, location: str) -> dict:
    deadline = time.monotonic() + 60
    while (job := httpx.get(api.url + location).json())["state"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    return job


def test_the_job_runs_in_the_requests_trace(traced_services, otlp_receiver):
    trace_id, headers = new_trace()
    response = httpx.post(f"{traced_services.url}/cpu/jobs", json={"n": 1000}, headers=headers)
    assert response.status_code == 202, response.text
    assert response.json()["trace_id"] == trace_id
    job = finished(traced_services, response.headers["Location"])
    assert job["state"] == "succeeded" and job["trace_id"] == trace_id

    def consumed() -> bool:
        # Both ends: the worker's span and the api's server span, each process exporting in its own batches.
        kinds = {(s.kind, s.name) for s in otlp_receiver.trace(trace_id)}
        return ("SERVER", "POST /cpu/jobs") in kinds and any(kind == "CONSUMER" for kind, _ in kinds)

    assert otlp_receiver.wait_for(consumed), otlp_receiver.trace(trace_id)
    spans = otlp_receiver.trace(trace_id)
    server = next(s for s in spans if s.kind == "SERVER" and s.name == "POST /cpu/jobs")
    producer = next(s for s in spans if s.kind == "PRODUCER")
    consumer = next(s for s in spans if s.kind == "CONSUMER")
    assert producer.name == "apply_async/count_primes" and descends_from(producer, server, spans)
    assert consumer.name == "run/count_primes" and consumer.parent_id == producer.span_id
    assert consumer.service == "{{ cookiecutter.project_slug }}-worker"


def test_an_untraced_job_names_no_trace(api, worker):
    """Negative control: the same job through the untraced api records no trace id."""
    _, headers = new_trace()
    response = httpx.post(f"{api.url}/cpu/jobs", json={"n": 1000}, headers=headers)
    assert response.status_code == 202, response.text
    assert response.json()["trace_id"] is None
    assert finished(api, response.headers["Location"])["trace_id"] is None
