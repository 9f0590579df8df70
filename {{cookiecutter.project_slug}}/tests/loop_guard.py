"""The loop guard: does a route leave the event loop free while many requests hit it at once?

While CONCURRENCY requests run against a route, a probe asks GET /health/live every PROBE_INTERVAL
seconds from outside the server. /health/live does no I/O, so its latency is how long the event loop
took to get to it. A route that blocks the loop (time.sleep, psycopg2, requests or CPU work inside
`async def`) makes that latency jump to the length of the blocking call, and serialises the
requests, so CONCURRENCY waits of W seconds stop overlapping.

Routes and their inputs come from the running app's own OpenAPI schema (`examples` first, then
defaults and bounds), so a route added later is guarded without a new test.
"""

import asyncio
import time
from dataclasses import dataclass, field

import httpx

CONCURRENCY = 10
PROBE_INTERVAL = 0.05
# Wide margins on purpose: a free loop answers in milliseconds, a blocked one in about a second.
MAX_PROBE_LATENCY = 0.3
WAIT_PARAMETERS = {"seconds", "delay"}  # query parameters the guard reads as a wait, in seconds


@dataclass
class RouteCall:
    method: str
    path: str  # the template, e.g. /async/items/{item_id}
    url: str  # with path parameters filled in
    params: dict = field(default_factory=dict)
    body: dict | None = None

    @property
    def wait(self) -> float:
        return sum(float(self.params[name]) for name in WAIT_PARAMETERS & self.params.keys())

    def __str__(self) -> str:
        query = "&".join(f"{key}={value}" for key, value in self.params.items())
        return f"{self.method} {self.url}" + (f"?{query}" if query else "")


@dataclass
class GuardResult:
    call: RouteCall
    elapsed: float
    statuses: list[int]
    probe_latencies: list[float]

    @property
    def worst_probe_latency(self) -> float:
        return max(self.probe_latencies)

    def problems(self) -> list[str]:
        found = []
        if any(status >= 400 for status in self.statuses):
            found.append(f"answered {sorted(set(self.statuses))} to input its schema calls valid")
        if self.worst_probe_latency > MAX_PROBE_LATENCY:
            found.append(
                f"the event loop answered /health/live after {self.worst_probe_latency:.2f} s "
                f"(limit {MAX_PROBE_LATENCY} s): something blocks the loop"
            )
        serial_time = CONCURRENCY * self.call.wait
        if self.call.wait and self.elapsed > serial_time / 3:
            found.append(
                f"{CONCURRENCY} waits of {self.call.wait} s took {self.elapsed:.1f} s "
                f"(serial would be {serial_time:.1f} s): they did not overlap"
            )
        return found


def example_value(schema: dict, name: str):
    """A valid value from a parameter's JSON schema: its example, default, or a value within bounds."""
    if "examples" in schema:
        return schema["examples"][0]
    if "default" in schema:
        return schema["default"]
    if "anyOf" in schema:
        return example_value(next(s for s in schema["anyOf"] if s.get("type") != "null"), name)
    kind = schema.get("type")
    if kind in ("integer", "number"):
        return schema.get("minimum", schema.get("exclusiveMinimum", 0) + 1)
    if kind == "string":
        return "x" * max(1, schema.get("minLength", 1))
    if kind == "boolean":
        return True
    raise ValueError(f"no example for parameter {name!r} with schema {schema}")


def example_body(schema: dict, components: dict) -> dict:
    if "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    return {
        name: example_value(prop, name)
        for name, prop in schema.get("properties", {}).items()
        if name in schema.get("required", []) or "examples" in prop
    }


def route_calls(openapi: dict, exempt: dict[str, str]) -> list[RouteCall]:
    """One call per operation in the schema, except the exempt ones ("METHOD /path": reason)."""
    components = openapi.get("components", {}).get("schemas", {})
    calls = []
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            if f"{method.upper()} {path}" in exempt:
                continue
            url, params = path, {}
            for parameter in operation.get("parameters", []):
                value = example_value(parameter.get("schema", {}) | _examples(parameter), parameter["name"])
                if parameter["in"] == "path":
                    url = url.replace("{" + parameter["name"] + "}", str(value))
                elif parameter["in"] == "query":
                    params[parameter["name"]] = value
            body = None
            if "requestBody" in operation:
                content = operation["requestBody"]["content"]["application/json"]
                body = example_body(content["schema"], components)
            calls.append(RouteCall(method.upper(), path, url, params, body))
    return calls


def _examples(parameter: dict) -> dict:
    # FastAPI puts Query(examples=...) on the parameter's schema; OpenAPI also allows it beside it.
    if "example" in parameter:
        return {"examples": [parameter["example"]]}
    if "examples" in parameter and isinstance(parameter["examples"], dict):
        return {"examples": [next(iter(parameter["examples"].values()))["value"]]}
    return {}


async def _load_and_probe(base_url: str, call: RouteCall) -> GuardResult:
    latencies: list[float] = []
    done = asyncio.Event()
    limits = httpx.Limits(max_connections=CONCURRENCY + 1)

    async def probe(client: httpx.AsyncClient) -> None:
        while not done.is_set():
            started = time.perf_counter()
            await client.get("/health/live")
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(PROBE_INTERVAL)

    async def one_request(client: httpx.AsyncClient) -> int:
        response = await client.request(call.method, call.url, params=call.params, json=call.body)
        return response.status_code

    async with (
        httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits) as client,
        httpx.AsyncClient(base_url=base_url, timeout=120) as probe_client,
    ):
        await probe_client.get("/health/live")  # connect before the load starts
        probing = asyncio.create_task(probe(probe_client))
        started = time.perf_counter()
        statuses = await asyncio.gather(*(one_request(client) for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - started
        done.set()
        await probing
    return GuardResult(call, elapsed, list(statuses), latencies)


def guard(base_url: str, call: RouteCall) -> GuardResult:
    return asyncio.run(_load_and_probe(base_url, call))


def openapi_of(base_url: str) -> dict:
    return httpx.get(f"{base_url}/openapi.json", timeout=10).raise_for_status().json()
