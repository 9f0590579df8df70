"""Property-based fuzzing of a running API from its own OpenAPI schema (schemathesis on Hypothesis).

The rule it enforces, for every operation: whether the schema calls a request valid or invalid, the
answer is never a 5xx other than 503 (the documented "a dependency is down, retry"); every status it
gets is one the operation documents, with the documented content type and a body matching the
documented schema; and an invalid request is refused with a 4xx.
"""

from collections.abc import Callable

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

# 503 passes not_a_server_error; status_code_conformance still fails it where it is not documented.
CONFIG = schemathesis.Config.from_dict(
    {"checks": {"not_a_server_error": {"expected-statuses": ["2XX", "3XX", "4XX", "503"]}}}
)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


def fuzz(
    base_url: str, openapi: dict, max_examples: int, adjust: Callable[[Case], None] | None = None
) -> dict[str, set[str]]:
    """The failures found, as {"<operation>": {"<failure type>: <title>", ...}}; {} when none.

    Each operation gets up to `max_examples` valid and as many invalid requests, one at a time. A
    failing request is shrunk to a minimal one and printed with its failure, as a curl command.
    `adjust` may change each request before it is sent, keeping it exactly as valid or invalid.
    """
    schema = schemathesis.openapi.from_dict(openapi, config=CONFIG)
    failures: dict[str, set[str]] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in modes(operation):
            found = check(operation, mode, base_url, max_examples, adjust)
            if found:
                failures.setdefault(operation.label, set()).update(found)
    return failures


def modes(operation: APIOperation) -> list[GenerationMode]:
    """Invalid requests too, where there is input to make invalid (not for /health/live)."""
    takes_input = any(operation.iter_parameters()) or len(operation.body) > 0
    return list(GenerationMode) if takes_input else [GenerationMode.POSITIVE]


def check(
    operation: APIOperation,
    mode: GenerationMode,
    base_url: str,
    max_examples: int,
    adjust: Callable[[Case], None] | None,
) -> set[str]:
    """One operation, valid or invalid requests: the failures found, as "<failure type>: <title>"."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=max_examples,
        deadline=None,  # a request takes the server's time; the client timeout bounds it
        database=None,  # no failing examples replayed from earlier runs: every run starts afresh
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def request(case: Case) -> None:
        if adjust:
            adjust(case)
        case.call_and_validate(base_url=base_url, checks=CHECKS, timeout=30)

    found: list[BaseException] = []
    try:
        request()
    except* AssertionError as failed:  # schemathesis' Failure; any other error is a broken run: raised
        print(f"{operation.label}, {mode.value} requests:", *failed.exceptions, sep="\n")
        found = leaves(failed)
    return {f"{type(failure).__name__}: {failure.title}" for failure in found}


def leaves(group: BaseExceptionGroup) -> list[BaseException]:
    """The failures in a group of groups (Hypothesis groups distinct bugs, schemathesis distinct checks)."""
    found = []
    for exception in group.exceptions:
        found.extend(leaves(exception) if isinstance(exception, BaseExceptionGroup) else [exception])
    return found
