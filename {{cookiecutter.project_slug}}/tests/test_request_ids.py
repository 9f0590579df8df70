"""Request ids on the real server: a client's safe X-Request-ID is kept, returned and in the
request's access line; anything else is replaced by a new id, and never reaches the logs. Each
unsafe id carries a unique marker, and the control is the same search finding a safe one. A bug's
500 carries the id too (tests/failing_app.py), and an answer never carries two.

Unsafe ids are sent over a raw socket: httpx, like any well-behaved client, refuses to send them.
"""

import json
import re
import socket
import uuid
from collections.abc import Iterator

import httpx
import pytest

from {{ cookiecutter.project_slug }}.observability.access import ACCESS_LOGGER

from .failing_app import BUG_PATH
from .services import start_api
from .test_observability import eventually, records
from tools.native import Service

NEW_ID = re.compile(r"[0-9a-f]{32}")
SAFE_IDS = {
    "probe": "probe-req-7731",
    "uuid": "0b6bf0b4-2a9e-4f5e-9c39-6f1f5c1a2d3e",
    "nginx-hex": "5f2d7a0c9b8e4d3f2a1b0c9d8e7f6a5b",
    "ulid": "01HZX3K7Q9V8W2N4M6P0R5T1YB",
    "prefixed": "gw-01HZX:42.retry_1",
    "longest": "a" * 128,
}
# Each holds {marker}: the marker is what must not appear in any log line.
UNSAFE_IDS = {
    "quote": b'evil-{marker}"}',
    "space": b"evil {marker}",
    "escape-sequence": b"\x1b[31mevil-{marker}",
    "tab": b"evil\t{marker}",
    "json-field": b'x","level":"critical","marker":"{marker}',
    "equals-semicolon": b"a=1;{marker}",
    "percent-encoded-newline": b"evil%0d%0a{marker}",
    "not-ascii": b"\xc3\xa9vil-{marker}",
    "too-long": b"{marker}" + b"a" * 128,
    "bare-carriage-return": b"evil\r{marker}",
}


def access_lines(api, request_id: str) -> list[dict]:
    return [r for r in records(api) if r["logger"] == ACCESS_LOGGER and r.get("request_id") == request_id]


def send_raw(api, request_id: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    """GET /health/live with these bytes as X-Request-ID: the status line and the answer's headers."""
    head = b"GET /health/live HTTP/1.1\r\nhost: test\r\nx-request-id: %s\r\nconnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as connection:
        connection.sendall(head % request_id)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    status_line, *header_lines = answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    headers = dict(line.lower().split(b": ", 1) for line in header_lines)
    return status_line, headers


@pytest.mark.parametrize("request_id", SAFE_IDS.values(), ids=SAFE_IDS.keys())
def test_a_safe_client_id_is_kept_returned_and_in_its_access_line(api, request_id):
    response = httpx.get(f"{api.url}/health/live", headers={"X-Request-ID": request_id})
    assert response.status_code == 200 and response.headers["X-Request-ID"] == request_id
    [line] = eventually(lambda: access_lines(api, request_id))
    assert (line["level"], line["route"], line["status"]) == ("info", "/health/live", 200)
    assert "request_id_refused" not in line


def test_a_missing_id_is_made_and_every_line_has_the_same_shape(api):
    made = httpx.get(f"{api.url}/health/live").headers["X-Request-ID"]
    assert NEW_ID.fullmatch(made)
    [line] = eventually(lambda: access_lines(api, made))
    # The access line is written without the logging machinery: it still has every record's fields.
    uvicorn_record = next(r for r in records(api) if r["logger"] == "uvicorn.error")
    common = {"event", "level", "logger", "timestamp"}
    assert common <= line.keys() and common <= uvicorn_record.keys()
    assert line["timestamp"].endswith("Z") and uvicorn_record["timestamp"].endswith("Z")


@pytest.mark.parametrize("template", UNSAFE_IDS.values(), ids=UNSAFE_IDS.keys())
def test_an_unsafe_client_id_is_replaced_and_never_logged(api, template):
    marker = uuid.uuid4().hex[:12]
    status_line, headers = send_raw(api, template.replace(b"{marker}", marker.encode()))
    if status_line.startswith(b"HTTP/1.1 400"):  # refused by the HTTP parser: the app never saw it
        assert b"x-request-id" not in headers
    else:
        assert status_line.startswith(b"HTTP/1.1 200"), status_line
        replaced = headers[b"x-request-id"].decode()
        assert NEW_ID.fullmatch(replaced) and marker not in replaced
        [line] = eventually(lambda: access_lines(api, replaced))
        assert line["request_id_refused"] is True
    assert marker not in api.output()


def test_the_log_search_finds_a_safe_id_sent_the_same_way(api):
    """The control of the test above: the same raw request and search, with a safe id."""
    marker = uuid.uuid4().hex[:12]
    status_line, headers = send_raw(api, f"probe-{marker}".encode())
    assert status_line.startswith(b"HTTP/1.1 200") and headers[b"x-request-id"] == f"probe-{marker}".encode()
    assert eventually(lambda: [marker] if marker in api.output() else [])


@pytest.fixture(scope="module")
def failing_api(database, upstream, service_env, log_dir) -> Iterator[Service]:
    service = start_api(service_env, log_dir, name="api_failing", app="tests.failing_app:create_app")
    try:
        yield service
    finally:
        service.stop()


def logged_bug(record: dict, request_id: str) -> bool:
    return record.get("request_id") == request_id and "a bug on purpose" in json.dumps(record)


def test_a_bugs_500_carries_the_id_its_traceback_is_logged_with(failing_api):
    request_id = f"probe-{uuid.uuid4().hex[:12]}"
    response = httpx.get(f"{failing_api.url}{BUG_PATH}", headers={"X-Request-ID": request_id})
    assert response.status_code == 500 and response.json() == {"detail": "internal server error"}
    assert response.headers.get_list("X-Request-ID") == [request_id]
    assert "a bug on purpose" not in response.text  # the traceback is the log's, never the client's
    [traceback] = eventually(lambda: [r for r in records(failing_api) if logged_bug(r, request_id)])
    assert traceback["level"] == "error"
    [line] = eventually(lambda: access_lines(failing_api, request_id))
    assert (line["route"], line["status"]) == (BUG_PATH, 500)


def test_an_answer_from_inside_the_middleware_carries_the_id_once(failing_api):
    """The control of the test above: the handlers and routes inside AccessMiddleware get the id from
    it, so a 404, a 422 and a 200 each carry exactly one, and a refused id is not echoed on the 500."""
    request_id = f"probe-{uuid.uuid4().hex[:12]}"
    for path, status in (("/no-such-path", 404), ("/async/items/not-a-number", 422), ("/health/live", 200)):
        response = httpx.get(f"{failing_api.url}{path}", headers={"X-Request-ID": request_id})
        assert response.status_code == status, path
        assert response.headers.get_list("X-Request-ID") == [request_id], path
    refused = httpx.get(f"{failing_api.url}{BUG_PATH}", headers={"X-Request-ID": "has space"})
    assert refused.status_code == 500 and NEW_ID.fullmatch(refused.headers["X-Request-ID"])
