"""schemathesis against every service's OpenAPI schema, through the gateway of a running platform.

Each service is fuzzed as an anonymous client, as a seller and as a customer (tokens from real
sign-ins), with valid (positive) and invalid (negative) data and a bounded number of examples per
operation. Checks: no 5xx, every status answered is documented by the operation, and the content
type and the body of every response conform to the schema.

The bug it found (reliability.known_bugs, fixed since) is kept below as a regression test.
"""

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from reliability import known_bugs
from reliability.probes import Account, Platform, register
from reliability.report import Report

pytestmark = pytest.mark.integration

Operation = schemathesis.APIOperation[Any, Any, Any, Any]
AnyCase = schemathesis.Case[Operation]

SCHEMAS = {
    "auth": "/api/auth/openapi.json",
    "recipes": "/api/recipes/openapi.json",
    "notifier": "/api/notifications/openapi.json",
}
IDENTITIES = ("anonymous", "seller", "customer")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = {GenerationMode.POSITIVE: 40, GenerationMode.NEGATIVE: 25}
#: Fewer examples where each one costs a lot (Argon2) or counts against the sign-in throttle
#: of this client address (50 failures per 5 minutes would lock every later test out).
EXAMPLES_PER_OPERATION = {"POST /api/auth/token/": 4, "POST /api/auth/register/": 12}
ONLY_ANONYMOUS = {"POST /api/auth/token/", "POST /api/auth/register/"}


@dataclass
class FuzzResult:
    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    undocumented: Counter[str] = field(default_factory=Counter)


@dataclass
class FuzzTotals:
    results: dict[str, FuzzResult] = field(default_factory=dict)
    seconds: float = 0.0


@pytest.fixture(scope="module")
def totals(reliability_report: Report) -> Any:
    found = FuzzTotals()
    yield found
    cases = sum(r.cases for r in found.results.values())
    failures = sum(len(r.failures) for r in found.results.values())
    server_errors = sum(
        count for r in found.results.values() for s, count in r.statuses.items() if s >= 500
    )
    row = reliability_report.row("fuzz")
    row.load = str(cases)
    row.faults = "generated inputs (positive and negative)"
    row.accepted = str(
        sum(c for r in found.results.values() for s, c in r.statuses.items() if s < 300)
    )
    row.verified = f"{cases - failures} conforming"
    row.lost = "0"
    row.duplicated = "0"
    row.outcome = "pass" if failures == 0 else f"FAIL ({failures} failures)"
    row.notes.append(
        f"{len(found.results)} runs (service x identity), {server_errors} answers 5xx, "
        f"{failures} failures (5xx or schema violations)"
    )
    undocumented = Counter[str]()
    for result in found.results.values():
        undocumented.update(result.undocumented)
    if undocumented:
        listed = ", ".join(f"{k} ({v})" for k, v in sorted(undocumented.items()))
        row.notes.append(f"statuses answered but not documented in the schemas: {listed}")


@pytest.fixture(scope="module")
def fuzz_accounts(platform: Platform) -> dict[str, Account]:
    """Accounts of their own: fuzzing DELETE /api/auth/me/ may delete them."""
    with httpx.Client(base_url=platform.gateway_url, timeout=30) as client:
        return {
            role: register(client, role, prefix=f"fuzz_{role}") for role in ("seller", "customer")
        }


def documented_statuses(case: AnyCase) -> set[str]:
    raw = case.operation.definition.raw
    responses = raw.get("responses", {}) if isinstance(raw, dict) else {}
    return {str(code) for code in responses}


@dataclass(frozen=True)
class Target:
    service: str
    base_url: str
    headers: dict[str, str]


def fuzz_operation(target: Target, operation: Operation, result: FuzzResult) -> None:
    for mode, examples in EXAMPLES.items():
        try:
            fuzz(target, operation, mode, examples, result)
        except Unsatisfiable:
            # Nothing to negate (an operation without parameters or body): positive only.
            assert mode is GenerationMode.NEGATIVE, operation.label


def fuzz(
    target: Target,
    operation: Operation,
    mode: GenerationMode,
    examples: int,
    result: FuzzResult,
) -> None:
    label = operation.label

    @settings(
        max_examples=EXAMPLES_PER_OPERATION.get(label, examples),
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: AnyCase) -> None:
        response = case.call(base_url=target.base_url, headers=target.headers, timeout=30)
        result.cases += 1
        result.statuses[response.status_code] += 1
        if str(response.status_code) not in documented_statuses(case):
            result.undocumented[str(response.status_code)] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except (AssertionError, BaseExceptionGroup) as exc:
            first = str(exc).strip().splitlines()[:12]
            result.failures.append(f"{label} [{mode.value}]: " + " | ".join(first))

    run()


def operations(schema: Any) -> list[Operation]:
    """Every operation, the ones that delete last (they may remove the identity used)."""
    found = [result.ok() for result in schema.get_all_operations()]
    return sorted(found, key=lambda op: op.method.upper() == "DELETE")


@pytest.mark.parametrize("identity", IDENTITIES)
@pytest.mark.parametrize("service", list(SCHEMAS))
def test_no_server_error_and_every_response_conforms(
    service: str,
    identity: str,
    platform: Platform,
    fuzz_accounts: dict[str, Account],
    totals: FuzzTotals,
) -> None:
    started = time.monotonic()
    schema = schemathesis.openapi.from_url(platform.gateway_url + SCHEMAS[service], timeout=30)
    headers = {} if identity == "anonymous" else fuzz_accounts[identity].headers
    result = totals.results.setdefault(f"{service}/{identity}", FuzzResult())
    for operation in operations(schema):
        if identity != "anonymous" and operation.label in ONLY_ANONYMOUS:
            continue
        fuzz_operation(Target(service, platform.gateway_url, headers), operation, result)
    totals.seconds += time.monotonic() - started
    assert result.cases > 0
    assert not result.failures, "\n".join(result.failures)


# --- the bug fuzzing found (fixed since), kept as a regression test -----------------------------

BEYOND_INT4 = known_bugs.INT4_MAX + 1


@pytest.mark.parametrize(
    ("method", "path", "role"),
    [
        ("GET", "/api/recipes/{id}/", None),
        ("GET", "/api/recipes/{id}/ratings/", None),
        ("PATCH", "/api/recipes/{id}/", "seller"),
        ("DELETE", "/api/recipes/{id}/", "seller"),
        ("POST", "/api/recipes/{id}/rate/", "customer"),
    ],
)
def test_a_recipe_id_beyond_int4_is_not_found(
    method: str,
    path: str,
    role: str | None,
    gateway: httpx.Client,
    accounts: dict[str, Account],
) -> None:
    headers = accounts[role].headers if role else {}
    body = (
        {"score": 3} if path.endswith("rate/") else ({"title": "x"} if method == "PATCH" else None)
    )
    response = gateway.request(method, path.format(id=BEYOND_INT4), headers=headers, json=body)
    assert response.status_code == 404, response.text
