"""Celery jobs against real Redis and real `celery worker` processes (the compose `worker` argv, never
eager mode): submit and poll, unknown ids and bad input, a worker SIGKILLed mid-job, a job that kills
its worker every time, Redis going away and coming back, and how long results stay readable.

The failure tests run on a queue of their own (JOB_QUEUE), with workers they start and kill, so the
session `worker` cannot take their jobs.
"""

import json
import os
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
import redis

from .services import above_limit_detail, start_api, start_worker
from tools.embedded_redis import RedisServer
from tools.native import Service

STATES = {"queued", "started", "succeeded", "failed"}
PRIMES_BELOW = {10_000: 1229, 500_000: 41538}
RESULT_EXPIRES = 600  # the isolated stack's JOB_RESULT_EXPIRES, not the default


def submit(api: Service, n: int) -> tuple[str, str]:
    response = httpx.post(f"{api.url}/cpu/jobs", json={"n": n}, timeout=30)
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["state"] == "queued"
    assert response.headers["location"] == f"/cpu/jobs/{job['id']}"
    return job["id"], response.headers["location"]


def read(api: Service, location: str) -> dict:
    response = httpx.get(api.url + location, timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["state"] in STATES
    return response.json()


def wait_for(api: Service, location: str, states: set[str], timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while (job := read(api, location))["state"] not in states:
        assert time.monotonic() < deadline, f"job still {job['state']} after {timeout} s"
        time.sleep(0.05)
    return job


def test_job_round_trip(api, worker):
    job_id, location = submit(api, 10_000)
    job = wait_for(api, location, {"succeeded", "failed"})
    assert job == {
        "id": job_id,
        "state": "succeeded",
        "result": {"below": 10_000, "primes": 1229},
        "error": None,
        "trace_id": None,  # tracing off (test_tracing_jobs.py: on)
    }


def test_unknown_job_is_404_not_queued(api):
    # Celery reports any id it has never seen as PENDING; the API must not pass that on as "queued".
    response = httpx.get(f"{api.url}/cpu/jobs/{uuid.uuid4()}")
    assert response.status_code == 404, response.text
    assert httpx.get(f"{api.url}/cpu/jobs/not-a-uuid").status_code == 422


def test_job_above_job_max_n_is_422(api, settings):
    response = httpx.post(f"{api.url}/cpu/jobs", json={"n": settings.job_max_n + 1})
    assert response.status_code == 422, response.text
    # The same shape as any validation error: the bound is a setting, not in the schema.
    assert response.json()["detail"] == above_limit_detail(["body", "n"], settings.job_max_n)


@pytest.mark.parametrize(
    "body",
    [{"n": 1}, {"n": -3}, {"n": "many"}, {"n": 2.5}, {}, None],
    ids=["one", "negative", "text", "float", "missing", "no-body"],
)
def test_bad_job_input_is_422(api, body):
    response = httpx.post(f"{api.url}/cpu/jobs", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"]


@dataclass
class Stack:
    env: dict[str, str]
    api: Service
    redis: redis.Redis
    log_dir: Path

    def worker(self, name: str) -> Service:
        return start_worker(self.env, self.log_dir, name)

    def meta(self, job_id: str) -> dict | None:
        """Celery's own record of the job; STARTED records the pid of the process running it."""
        raw = self.redis.get(f"celery-task-meta-{job_id}")
        return json.loads(raw) if raw else None

    def deliveries(self, job_id: str) -> int:
        return int(self.redis.get(f"jobs:{job_id}:deliveries") or 0)

    def messages_for(self, job_id: str) -> list[bytes]:
        """Copies of the job still waiting in the queue or delivered but not acknowledged."""
        waiting = self.redis.lrange(self.env["JOB_QUEUE"], 0, -1) + self.redis.hvals("unacked")
        return [message for message in waiting if job_id.encode() in message]


@pytest.fixture(scope="module")
def isolated(redis_db, service_env, log_dir) -> Iterator[Stack]:
    """An api on a queue of its own, with a short result expiry; each test starts its own workers."""
    env = {
        **service_env,
        "JOB_QUEUE": f"test-jobs-{uuid.uuid4().hex[:8]}",
        "JOB_RESULT_EXPIRES": str(RESULT_EXPIRES),
    }
    api = start_api(env, log_dir, name="api_jobs")
    client = redis.Redis.from_url(env["REDIS_URL"])
    try:
        yield Stack(env, api, client, log_dir)
    finally:
        api.stop()
        client.close()


def test_job_survives_its_worker_being_sigkilled_mid_job(isolated):
    first = isolated.worker("worker_sigkilled")
    try:
        job_id, location = submit(isolated.api, 500_000)  # about a second of work
        wait_for(isolated.api, location, {"started"}, timeout=30)
    finally:
        first.kill()  # SIGKILL to the whole process group: the main process and its pool processes
    assert first.process.returncode == -signal.SIGKILL
    assert read(isolated.api, location)["state"] == "started", "the job finished before the kill"
    assert "succeeded in" not in first.output()

    # Nobody acknowledged it, so Redis hands it to the next worker once JOB_VISIBILITY_TIMEOUT has passed.
    second = isolated.worker("worker_after_sigkill")
    try:
        job = wait_for(isolated.api, location, {"succeeded", "failed"}, timeout=60)
    finally:
        second.stop()
    assert job["state"] == "succeeded", job
    assert job["result"] == {"below": 500_000, "primes": PRIMES_BELOW[500_000]}
    assert isolated.deliveries(job_id) == 2


def parent_of(pid: int) -> int | None:
    try:
        return psutil.Process(pid).ppid()
    except psutil.NoSuchProcess:
        return None


def test_job_that_kills_its_worker_every_time_fails_after_max_deliveries(isolated, settings):
    """A poison job: every run takes down the pool process running it (as a segfault or the OOM killer
    would). The worker puts it back each time; after JOB_MAX_DELIVERIES it must fail, not loop."""
    worker = isolated.worker("worker_poison")
    killed: list[int] = []
    try:
        job_id, location = submit(isolated.api, 5_000_000)  # long: every run is killed mid-way
        deadline = time.monotonic() + 60
        while (job := read(isolated.api, location))["state"] != "failed":
            assert time.monotonic() < deadline, f"still {job['state']} after killing {len(killed)} times"
            meta = isolated.meta(job_id)
            pid = meta["result"]["pid"] if meta and meta["status"] == "STARTED" else None
            # The poison is in the computation: kill only a delivery that is counted and allowed to run.
            this_delivery = len(killed) + 1
            if (
                pid is not None
                and pid not in killed
                and parent_of(pid) == worker.process.pid
                and isolated.deliveries(job_id) == this_delivery <= settings.job_max_deliveries
            ):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.02)
        assert worker.process.poll() is None, "the worker's main process died too"
        # Nothing is left to deliver again: the failure was acknowledged.
        deadline = time.monotonic() + 10
        while isolated.messages_for(job_id):
            assert time.monotonic() < deadline, "the failed job is still queued or unacknowledged"
            time.sleep(0.1)
    finally:
        worker.stop()
    assert len(killed) == settings.job_max_deliveries
    assert isolated.deliveries(job_id) == settings.job_max_deliveries + 1
    assert job["result"] is None
    assert job["error"] == (
        f"GaveUp: gave up after {settings.job_max_deliveries} deliveries that did not finish"
    )


def test_job_stays_readable_for_job_result_expires(isolated):
    worker = isolated.worker("worker_expiry")
    try:
        job_id, location = submit(isolated.api, 10_000)
        assert wait_for(isolated.api, location, {"succeeded", "failed"})["state"] == "succeeded"
    finally:
        worker.stop()
    # The marker (written by the api, renewed by the worker) and Celery's result (written by the
    # worker) both expire after JOB_RESULT_EXPIRES: checked on their TTLs rather than by waiting.
    for key in (f"jobs:{job_id}", f"celery-task-meta-{job_id}", f"jobs:{job_id}:deliveries"):
        ttl = isolated.redis.ttl(key)
        assert RESULT_EXPIRES - 60 < ttl <= RESULT_EXPIRES, f"{key} expires in {ttl} s"


@pytest.fixture
def private_redis(tmp_path, log_dir, local_servers) -> Iterator[RedisServer]:
    """A Redis of our own to stop and start again: the compose `redis` argv on a free port, run by
    the installed redis-server when the session uses the configured servers, by the embedded Valkey
    when it uses embedded ones (or no redis-server is installed)."""
    installed = None if local_servers.embedded("Redis") else shutil.which("redis-server")
    # With a password, as compose runs it: the api and the workers below must send it.
    url = "redis://:jobs-password@127.0.0.1/0"
    server = RedisServer(url, tmp_path, log_dir / "redis.log", executable=installed)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def timed(method: str, url: str, **kwargs) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = httpx.request(method, url, timeout=60, **kwargs)
    return response, time.monotonic() - started


def test_redis_down_is_a_quick_503_and_the_app_recovers_by_itself(private_redis, service_env, log_dir):
    env = {**service_env, "REDIS_URL": private_redis.url}
    api = start_api(env, log_dir, name="api_redis_down")
    try:
        before_id, before_location = submit(api, 10_000)
        private_redis.stop()

        posted, post_time = timed("POST", f"{api.url}/cpu/jobs", json={"n": 10_000})
        polled, poll_time = timed("GET", api.url + before_location)
        assert posted.status_code == 503 and posted.json() == {"detail": "job queue unavailable"}
        assert polled.status_code == 503 and polled.json() == {"detail": "job store unavailable"}
        assert post_time < 10, f"POST /cpu/jobs took {post_time:.1f} s with Redis down"
        assert poll_time < 10, f"GET /cpu/jobs/<id> took {poll_time:.1f} s with Redis down"
        ready = httpx.get(f"{api.url}/health/ready", timeout=30)
        assert ready.status_code == 503 and "redis" in ready.json()["failing"]

        # Same port, same data directory; the api is not restarted.
        private_redis.start()
        deadline = time.monotonic() + 30
        while (
            posted := httpx.post(f"{api.url}/cpu/jobs", json={"n": 500_000}, timeout=30)
        ).status_code != 202:
            assert posted.status_code == 503, posted.text
            assert time.monotonic() < deadline, "the api did not recover after Redis came back"
            time.sleep(0.2)
        after_location = posted.headers["location"]

        # The job accepted before the outage survived the restart (append-only file) and both run.
        worker = start_worker(env, log_dir, "worker_redis_down")
        try:
            before = wait_for(api, before_location, {"succeeded", "failed"})
            after = wait_for(api, after_location, {"succeeded", "failed"})
        finally:
            worker.stop()
    finally:
        api.stop()
    assert before == {
        "id": before_id,
        "state": "succeeded",
        "result": {"below": 10_000, "primes": 1229},
        "error": None,
        "trace_id": None,  # tracing off (test_tracing_jobs.py: on)
    }
    assert after["result"] == {"below": 500_000, "primes": PRIMES_BELOW[500_000]}
