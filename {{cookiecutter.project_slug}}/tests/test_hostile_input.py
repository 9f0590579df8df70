"""Hostile input against the real app: whatever a client sends, the answer is a 2xx or a 4xx in the
documented shape, never a 500; bodies are cut off while they are read; a 422 never repeats more than
a short prefix of the input. Each case runs on both router families."""

import contextlib
import socket
import threading
import time
import uuid
from functools import partial

import httpx
import pytest

from .loop_guard import MAX_PROBE_LATENCY
from .services import start_api
from .test_observability import eventually
from .test_request_ids import access_lines

FAMILIES = ["/async", "/sync"]
JSON = {"content-type": "application/json"}

# Bodies whose text PostgreSQL cannot store, or JSON cannot carry back: each must be a 422.
UNSTORABLE = {
    "nul-in-name": b'{"name": "a\\u0000b"}',
    "nul-in-description": b'{"name": "ok", "description": "\\u0000"}',
    "lone-surrogate": b'{"name": "a\\ud800b"}',
    "lone-low-surrogate": b'{"name": "\\udc00"}',
    "nan-name": b'{"name": NaN}',
    "infinite-name": b'{"name": -Infinity}',
}


def assert_validation_error(response: httpx.Response) -> list[dict]:
    """A 422 in FastAPI's documented shape: {"detail": [{"loc": [...], "msg": str, "type": str}, ...]}."""
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail, detail
    for error in detail:
        assert isinstance(error["loc"], list), error
        assert isinstance(error["msg"], str) and isinstance(error["type"], str), error
    return detail


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("body", UNSTORABLE.values(), ids=UNSTORABLE.keys())
def test_unstorable_text_is_a_422_before_the_database(api, family, body):
    response = httpx.post(f"{api.url}{family}/items", content=body, headers=JSON)
    assert_validation_error(response)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_body_python_cannot_parse_is_a_400(api, family):
    """An integer of 5000 digits is past Python's int-from-text limit: FastAPI answers 400."""
    response = httpx.post(
        f"{api.url}{family}/items", content=b'{"name": 1' + b"0" * 5000 + b"}", headers=JSON
    )
    assert response.status_code == 400, response.text
    assert response.json() == {"detail": "There was an error parsing the body"}


@pytest.mark.parametrize("family", FAMILIES)
def test_a_body_that_is_not_text_is_a_documented_400(api, family):
    """Found by the fuzzer (test_fuzz.py): FastAPI's 400 and 413 on a body were missing from the schema."""
    response = httpx.post(f"{api.url}{family}/items", content=b'{"name": "\x80"}', headers=JSON)
    assert response.status_code == 400, response.text
    documented = httpx.get(f"{api.url}/openapi.json").json()["paths"][f"{family}/items"]["post"]["responses"]
    assert {"400", "413"} <= set(documented)


@pytest.mark.parametrize("family", FAMILIES)
def test_storable_unicode_round_trips(api, family):
    """The control: text that is not plain ASCII but that PostgreSQL can store is accepted as it is."""
    name = "Zoë ✓ 𝄞 \u200b tab\tnewline\n"
    created = httpx.post(f"{api.url}{family}/items", json={"name": name, "description": "\u00a0"})
    assert created.status_code == 201, created.text
    assert created.json()["name"] == name


@pytest.mark.parametrize("family", FAMILIES)
def test_a_422_repeats_only_a_short_prefix_of_the_input(api, family):
    long_name = "x" * 500_000  # under MAX_BODY_BYTES, far over the 200 characters allowed
    response = httpx.post(f"{api.url}{family}/items", json={"name": long_name})
    (error,) = assert_validation_error(response)
    assert error["type"] == "string_too_long"
    assert len(response.content) < 1_000, f"the 422 is {len(response.content)} bytes"
    missing = httpx.post(f"{api.url}{family}/items", json={"other": "y" * 500_000})
    assert_validation_error(missing)
    assert len(missing.content) < 1_000, f"the 422 is {len(missing.content)} bytes"


def test_runtime_bounds_are_422s_in_the_validation_shape(api, settings):
    """CPU_MAX_N is a setting, not in the schema: refused in the same shape as a bound that is."""
    response = httpx.get(f"{api.url}/cpu/compute", params={"n": settings.cpu_max_n + 1})
    (error,) = assert_validation_error(response)
    assert error["loc"] == ["query", "n"] and error["type"] == "less_than_equal"
    assert error["ctx"] == {"le": settings.cpu_max_n}
    static = httpx.get(f"{api.url}/cpu/compute", params={"n": 1})
    assert assert_validation_error(static)[0]["loc"] == ["query", "n"]


def send_oversized(url: str, path: str, declared: int, chunked: bool) -> tuple[bytes, int]:
    """POST a body far larger than the limit over a raw socket, 64 KiB at a time, until the server
    answers; returns (status line, bytes sent). A server that reads the body whole answers only after
    all of it: this stops sending as soon as an answer arrives."""
    host, port = url.removeprefix("http://").split(":")
    framing = b"transfer-encoding: chunked" if chunked else b"content-length: %d" % declared
    head = b"POST %s HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\n%s\r\n\r\n"
    chunk = b"[" + b"1," * 32_767 + b"1"  # part of a valid JSON array, 64 KiB
    framed = b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk
    sent = 0
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(head % (path.encode(), host.encode(), framing))
        connection.setblocking(False)
        answer = b""
        while sent < declared and not answer:
            try:
                sent += connection.send(framed)
            except (BlockingIOError, ConnectionError):
                time.sleep(0.001)
            with contextlib.suppress(BlockingIOError):
                answer = connection.recv(4096)
        if not answer:
            connection.setblocking(True)
            answer = connection.recv(4096)
    return answer.split(b"\r\n", 1)[0], sent


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_oversized_body_is_a_413_before_it_is_read(api, settings, family, chunked):
    declared = 200 * 1024 * 1024
    status_line, sent = send_oversized(api.url, f"{family}/items", declared, chunked)
    assert b" 413 " in status_line, status_line
    # Socket buffers hold a few MiB at most: the server stopped reading long before the end.
    assert sent < declared / 4, f"sent {sent} bytes before the answer"


@pytest.mark.parametrize("family", FAMILIES)
def test_an_oversized_body_gets_one_refusal_shape_however_it_is_framed(api, family):
    """A Content-Length over the limit (refused before the body is read) and a chunked body that grows
    past it (refused while it is read) get the same 413: JSON {"detail": ...} as every other refusal,
    the client's own X-Request-ID once, and an access line with that status and id."""
    body = b"[" + b"1," * (1024 * 1024) + b"1]"  # 2 MiB, over the default 1 MiB
    framings = {"content-length": lambda: body, "chunked": lambda: iter([body[:65536], body[65536:]])}
    answers = {}
    for framing, content in framings.items():
        request_id = f"probe-{framing}-{uuid.uuid4().hex[:12]}"
        headers = {**JSON, "X-Request-ID": request_id}
        response = httpx.post(f"{api.url}{family}/items", content=content(), headers=headers)
        assert response.status_code == 413, (framing, response.text)
        assert response.headers["content-type"] == "application/json", (framing, response.text)
        assert response.headers.get_list("X-Request-ID") == [request_id], framing
        [line] = eventually(partial(access_lines, api, request_id))
        assert (line["path"], line["status"]) == (f"{family}/items", 413), framing
        answers[framing] = response.json()
    assert answers["content-length"] == answers["chunked"], answers
    assert list(answers["chunked"]) == ["detail"] and isinstance(answers["chunked"]["detail"], str)


def test_the_loop_answers_while_oversized_bodies_arrive(api):
    """Four clients send 200 MiB bodies back to back for two seconds while a probe asks /health/live."""
    latencies: list[float] = []
    statuses: list[bytes] = []
    deadline = time.monotonic() + 2

    def probe() -> None:
        with httpx.Client(base_url=api.url, timeout=30) as client:
            while time.monotonic() < deadline:
                started = time.monotonic()
                client.get("/health/live")
                latencies.append(time.monotonic() - started)
                time.sleep(0.02)

    def upload(family: str) -> None:
        while time.monotonic() < deadline:
            statuses.append(send_oversized(api.url, f"{family}/items", 200 * 1024 * 1024, chunked=True)[0])

    threads = [threading.Thread(target=probe)] + [
        threading.Thread(target=upload, args=(f,)) for f in FAMILIES * 2
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(statuses) >= 4 and all(b" 413 " in status for status in statuses), statuses
    assert len(latencies) >= 10, latencies
    assert max(latencies) < MAX_PROBE_LATENCY, f"the loop answered after {max(latencies):.2f} s"


@pytest.fixture(scope="module")
def api_with_a_larger_limit(database, upstream, service_env, log_dir):
    service = start_api({**service_env, "MAX_BODY_BYTES": str(8 * 1024 * 1024)}, log_dir, name="api_8mib")
    yield service
    service.stop()


@pytest.mark.parametrize("family", FAMILIES)
def test_the_limit_is_what_refuses_the_body(api, api_with_a_larger_limit, family):
    """Negative control: a 2 MiB body is a 413 at the default 1 MiB, and read (422: not an item)
    where MAX_BODY_BYTES is 8 MiB."""
    body = b"[" + b"1," * (1024 * 1024) + b"1]"
    assert httpx.post(f"{api.url}{family}/items", content=body, headers=JSON).status_code == 413
    larger = httpx.post(f"{api_with_a_larger_limit.url}{family}/items", content=body, headers=JSON)
    assert_validation_error(larger)
    assert len(larger.content) < 1_000
