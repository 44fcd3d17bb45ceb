"""One transaction rule in every service (issue 19), checked on the source.

Routes (``api.py``) and the consumer (``servicekit._consumer``) own transactions; a use case never
commits, begins or rolls back: it works in the session its caller passes, as a keyword-only
``session``. A use case that committed would, reused from a consumer handler, commit the
consumer's transaction early: the inbox row and half an effect would persist, the rest roll back.

Use cases live in each service's ``service.py`` or ``service/`` package, and in the few modules
``MORE_USE_CASES`` names beside them. Transactions are owned only by the entry points
(``ENTRY_POINTS``: routes, the spec's app, worker and commands) and the runners ``RUNNERS``
names: background work that must commit between slow steps, whose module docstring says why.
"""

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("auth", "recipes", "media", "notifier", "backup")

#: Use-case modules outside ``service.py`` / ``service/``, relative to the service's package.
MORE_USE_CASES = {
    "auth": ("signin.py", "throttle.py"),
    "recipes": ("ratings.py",),
}
#: Modules that own transactions besides routes and ``main.py``, and why.
RUNNERS = {
    "auth": ("replay.py",),  # one transaction per batch of republished users
    "media": ("attempts.py",),  # an attempt stays counted after the handler's rollback
    "notifier": ("mail/dispatch.py",),  # commits its claim before SMTP, records after it
    "backup": ("exports.py",),  # an export's row commits after its file is in place
}
#: Where requests, commands and the worker's own loops start: they own their transactions, as
#: the consumer does for handlers (``servicekit.service``: a spec's app, worker and commands).
ENTRY_POINTS = frozenset({"api.py", "api", "main.py", "app.py", "worker.py", "commands.py"})
#: Methods that open, end or abort a transaction (SQLAlchemy's and psycopg's).
TRANSACTION_METHODS = frozenset({"commit", "begin", "begin_nested", "rollback", "transaction"})


def package(service: str) -> Path:
    return ROOT / "services" / service / "src" / service


def modules(service: str) -> Iterator[Path]:
    yield from sorted(package(service).rglob("*.py"))


def use_case_modules(service: str) -> list[Path]:
    root = package(service)
    found = [root / "service.py"] if (root / "service.py").exists() else []
    found += sorted((root / "service").rglob("*.py"))
    return found + [root / name for name in MORE_USE_CASES.get(service, ())]


def owns_transactions_by_place(service: str, path: Path) -> bool:
    relative = path.relative_to(package(service))
    return relative.parts[0] in ENTRY_POINTS or relative.as_posix() in RUNNERS.get(service, ())


def transaction_calls(path: Path) -> list[str]:
    """``line: receiver.method`` of every call that opens, ends or aborts a transaction."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in TRANSACTION_METHODS
        ):
            found.append(f"{node.lineno}: {ast.unparse(node.func)}")
    return found


def public_functions(tree: ast.Module) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    """Module-level functions and methods of module-level classes, without a leading ``_``."""
    for node in tree.body:
        members = node.body if isinstance(node, ast.ClassDef) else [node]
        if isinstance(node, ast.ClassDef) and node.name.startswith("_"):
            continue
        for member in members:
            if isinstance(member, ast.FunctionDef | ast.AsyncFunctionDef) and not (
                member.name.startswith("_")
            ):
                yield member


def positional_session(path: Path) -> list[str]:
    """``line: name`` of every public function that can take ``session`` by position."""
    tree = ast.parse(path.read_text(), str(path))
    return [
        f"{function.lineno}: {function.name}"
        for function in public_functions(tree)
        if "session" in [a.arg for a in function.args.posonlyargs + function.args.args]
    ]


ALL_USE_CASE_MODULES = [
    pytest.param(path, id=path.relative_to(ROOT / "services").as_posix())
    for service in SERVICES
    for path in use_case_modules(service)
]


@pytest.mark.parametrize("service", SERVICES)
def test_only_routes_commands_and_runners_own_transactions(service: str) -> None:
    owners = {
        path.relative_to(ROOT).as_posix(): calls
        for path in modules(service)
        if not owns_transactions_by_place(service, path) and (calls := transaction_calls(path))
    }
    assert owners == {}, "use cases never commit; a runner is listed in RUNNERS"


@pytest.mark.parametrize("path", ALL_USE_CASE_MODULES)
def test_use_cases_take_the_session_by_keyword(path: Path) -> None:
    assert positional_session(path) == [], "write `def f(*, session: AsyncSession, ...)`"


@pytest.mark.parametrize(
    ("service", "name"),
    [(service, name) for service, names in RUNNERS.items() for name in names],
)
def test_each_runner_says_why_it_owns_transactions(service: str, name: str) -> None:
    docstring = ast.get_docstring(ast.parse((package(service) / name).read_text())) or ""
    assert "transaction" in docstring, f"{service}/{name}: its docstring must say why"


def test_the_listed_modules_exist() -> None:
    listed = [
        package(service) / name
        for table in (MORE_USE_CASES, RUNNERS)
        for service, names in table.items()
        for name in names
    ]
    assert [path for path in listed if not path.exists()] == []
    assert all(use_case_modules(service) for service in SERVICES)
