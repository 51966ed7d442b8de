"""Shared fixtures: an owner, a teammate and an outsider; agents; running pipelines for real."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import get_hashers

from mcpgateway.inprocess import InProcessToolbox
from mcpgateway.models import ToolServer
from orchestrator.actions import do_add_member, do_create_pipeline, do_create_team, do_start_run
from orchestrator.execution import execute_run
from orchestrator.models import Agent, Pipeline, Run, Team

# Users' passwords hashed fast, here and (through the environment) in every server and worker
# the tests start (config/settings.py; PBKDF2 was a quarter of the suite's time). The settings
# have loaded by now (the imports above need the apps), so this process's are set directly.
os.environ["AGENTDECK_TEST_FAST_PASSWORDS"] = "1"
settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher",
                             "django.contrib.auth.hashers.PBKDF2PasswordHasher"]
get_hashers.cache_clear()


def _deleting_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
    """How a transactional test empties the tables after itself on PostgreSQL: a DELETE per
    table instead of Django's one TRUNCATE of all fifty, which makes new files for every table
    and index (0.26-0.31 s a test here, against 0.01-0.02 s for the DELETEs of a test's few
    rows). The tables are locked first, as TRUNCATE locks them, so a write still in flight from
    another connection (a server, a worker, the audit writer) commits before the DELETEs and is
    deleted with the rest. Every foreign key is DEFERRABLE (Django makes them so), so the
    order does not matter within the flush's transaction. Asked to restart the sequences,
    Django's TRUNCATE."""
    if reset_sequences or not tables:
        return _truncating_flush(self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade)
    names = [self.quote_name(table) for table in tables]
    return ["SET CONSTRAINTS ALL DEFERRED;", f"LOCK TABLE {', '.join(names)} IN ACCESS EXCLUSIVE MODE;",
            *(f"DELETE FROM {name};" for name in names)]


if settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
    from django.db.backends.postgresql.operations import DatabaseOperations as _PostgresOperations

    _truncating_flush = _PostgresOperations.sql_flush
    _PostgresOperations.sql_flush = _deleting_flush

# Test files that train or score with the MiniLM detector: on a fresh machine the first of them
# computes minutes of embeddings (then cached on disk), so under xdist they share one worker
# instead of two workers computing the same embeddings at once.
MINILM_FILES = ("tests/orchestrator/evals/test_detector_minilm.py", "tests/orchestrator/evals/test_detector_eval.py")
# Files that start sandbox containers: one worker runs them one after another, since the
# sandbox tests count the Docker engine's sandbox containers (another file's, started on the
# other worker meanwhile, made them fail).
DOCKER_FILES = ("tests/mcpgateway/sandbox/", "tests/mcpgateway/test_idempotency_sandbox.py",
                "tests/orchestrator/test_sandbox_pipeline.py", "tests/dashboard/test_home_templates.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests last: Playwright's sync API leaves an event loop in the main thread once
    the session's browser starts, and the other tests use async_to_sync there. On several
    processes, the MiniLM tests first, so the longest group starts at once rather than ending
    the run; on one, the order is the files' own."""
    parallel = config.pluginmanager.hasplugin("xdist") and bool(config.getoption("numprocesses", None))

    def rank(item: pytest.Item) -> int:
        path = str(item.fspath)
        return 2 if "tests/e2e/" in path else 0 if parallel and path.endswith(MINILM_FILES) else 1

    items.sort(key=rank)
    _unique_node_ids(items)
    for item in items:
        if item.get_closest_marker("no_database"):
            uses = _database_use(item)
            if uses:
                raise pytest.UsageError(f"{item.nodeid} is marked no_database (the PostgreSQL pass skips it) but "
                                        f"uses the database ({uses})")


def _unique_node_ids(items: list[pytest.Item]) -> None:
    """Give every item a node id of its own. Schemathesis (4.x, under pytest 9) gives each API
    operation's test the same node id (its name holds the operation: `test_…[GET /api/v1/runs]`,
    its node id does not), and xdist's file scheduling keys tests by node id: under
    `make test`'s two processes the 61 operations of tests/api/test_openapi_fuzz.py collapsed
    into one, and 60 of them never ran, silently. Any other duplicate stops the collection."""
    counts = Counter(item.nodeid for item in items)
    for item in items:
        if counts[item.nodeid] > 1:
            head, _, last = item.nodeid.rpartition("::")
            if item.name != last and head:
                _set_node_id(item, f"{head}::{item.name}")
    duplicates = [nodeid for nodeid, count in Counter(item.nodeid for item in items).items() if count > 1]
    if duplicates:
        raise pytest.UsageError(f"{len(duplicates)} node ids name more than one test (e.g. {duplicates[0]}): "
                                "under several processes only one of each would run")


def _set_node_id(item: pytest.Item, nodeid: str) -> None:
    """Pytest keeps a node's id as `Node._id` (a `NodeId`) from 9 on, as `Node._nodeid` before;
    `_unique_node_ids`' guard stops the collection should neither take."""
    if hasattr(item, "_id"):
        from _pytest.nodeid import NodeId

        item._id = NodeId.parse(nodeid)
    else:
        item._nodeid = nodeid


def _database_use(item: pytest.Item) -> str:
    """How `item` gets the database, if it does: a database fixture, `django_db`, or a Django
    test case class (`SimpleTestCase` allows no queries; its subclasses `TransactionTestCase`
    and `TestCase` do)."""
    wants = DATABASE_FIXTURES & set(getattr(item, "fixturenames", ()))
    if wants:
        return ", ".join(sorted(wants))
    if item.get_closest_marker("django_db"):
        return "django_db"
    cls = getattr(item, "cls", None)
    if cls is not None:
        from django.test import TransactionTestCase

        if issubclass(cls, TransactionTestCase):
            return f"{cls.__name__}, a Django TransactionTestCase"
    return ""


# What gives a test the database: a test marked `no_database` may use none of them.
DATABASE_FIXTURES = frozenset({"db", "transactional_db", "live_server", "django_db_serialized_rollback",
                               "django_db_reset_sequences"})


class _FileGroups:
    """`pytest -n N --dist loadfile` (`make test`): a whole file goes to one worker (its module
    fixtures, its Celery workers and its Redis database stay together), the MiniLM files go
    together to one, and so do the files that start sandbox containers (`DOCKER_FILES`). Files are handed out in the order above (`--no-loadscope-reorder`), so a
    worker that starts the browser tests runs nothing else after them.

    (xdist's own `--dist loadgroup` cannot do this under pytest 9.2: the group it appends to a
    test's node id no longer reaches the scheduler.)"""

    @staticmethod
    def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
        if config.getvalue("dist") != "loadfile":
            return None
        from xdist.scheduler import LoadScopeScheduling

        class FileScheduling(LoadScopeScheduling):
            def _split_scope(self, nodeid: str) -> str:
                path = nodeid.split("::", 1)[0]
                if path.endswith(MINILM_FILES):
                    return "minilm"
                return "docker" if any(path.startswith(p) or path.endswith(p) for p in DOCKER_FILES) else path

        return FileScheduling(config, log)


def pytest_configure(config: pytest.Config) -> None:
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_FileGroups(), "agentdeck-file-groups")


@pytest.fixture
def owner(db):
    return get_user_model().objects.create_user("owner", password="pw-owner-123")


@pytest.fixture
def teammate(db):
    return get_user_model().objects.create_user("teammate", password="pw-teammate-123")


@pytest.fixture
def outsider(db):
    return get_user_model().objects.create_user("outsider", password="pw-outsider-123")


@pytest.fixture
def team(owner, teammate) -> Team:
    team = do_create_team("Acme", owner)
    do_add_member(team, teammate, "viewer")
    return team


@pytest.fixture
def builtins_offered(db) -> None:
    """The built-in servers' catalogue templates (code, sandbox, office), offered as an operator
    or `make run`'s seed offers them: a team member's "create from template" or "install the
    injection suite" only uses what the catalogue offers."""
    from mcpgateway.actions.templates import do_save_template
    from orchestrator.evals.suite_files import office_template
    from orchestrator.pipeline_templates import builtin_template

    for spec in (builtin_template("code"), builtin_template("sandbox"), office_template()):
        do_save_template(spec, operator=True)


@pytest.fixture
def outbound_allows_loopback(settings) -> None:
    """Tests whose team-set URLs (webhooks, remote servers, base URLs) point at loopback fakes:
    the instance allows loopback for them, explicitly (the default refuses it)."""
    settings.AGENTDECK_OUTBOUND_ALLOW = ["127.0.0.0/8", "::1/128"]


def scripted(team: Team, name: str, *replies: dict[str, Any], rules: list | None = None, **fields: Any) -> Agent:
    """A scripted agent whose turns are `replies` (see orchestrator.providers.scripted)."""
    script: dict[str, Any] = {"replies": list(replies)}
    if rules:
        script["rules"] = rules
    return Agent.objects.create(team=team, name=name, provider="scripted", model="scripted-1",
                                options={"script": script}, **fields)


def pipeline(team: Team, spec: dict[str, Any], name: str = "p") -> Pipeline:
    return do_create_pipeline(team, name, spec)


def start(pipe: Pipeline, run_input: dict[str, Any] | None = None) -> Run:
    return do_start_run(pipe.latest_version(), run_input or {}, submit=False)


def execute(run: Run, toolbox: InProcessToolbox | None = None, listeners: list | None = None) -> Run:
    """Execute a run to its next stop in this thread, through the real store and door."""
    async_to_sync(execute_run)(run.pk, toolbox=toolbox or InProcessToolbox(), listeners=listeners)
    run.refresh_from_db()
    return run


def run_spec(team: Team, spec: dict[str, Any], run_input: dict[str, Any] | None = None,
             toolbox: InProcessToolbox | None = None) -> Run:
    return execute(start(pipeline(team, spec), run_input), toolbox)


def counting_toolbox(grants: dict[str, list[str]], calls: list[tuple[str, dict]]) -> InProcessToolbox:
    """A toolbox whose `t__echo` and `t__add` tools record every real invocation in `calls`."""
    box = InProcessToolbox(grants=grants)

    def echo(text: str) -> str:
        calls.append(("t__echo", {"text": text}))
        return f"echo: {text}"

    def add(a: int, b: int) -> dict:
        calls.append(("t__add", {"a": a, "b": b}))
        return {"sum": a + b}

    box.register("t__echo", echo, "Echo text back", {"type": "object", "properties": {"text": {"type": "string"}}})
    box.register("t__add", add, "Add two integers",
                 {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}})
    return box


@pytest.fixture(autouse=True, scope="session")
def _close_engine_connections(django_db_setup, django_db_blocker):
    """Engine commits run on writer threads, and the inline runner's loads on asgiref's
    thread, each with its own connection; close them before the test database is dropped."""
    yield
    import asyncio

    from asgiref.sync import sync_to_async
    from django.db import connections

    from config.db_writer import close_writer_connections

    close_writer_connections()
    asyncio.run(sync_to_async(connections.close_all, thread_sensitive=True)())
    connection = connections["default"]
    if connection.vendor == "postgresql":
        # Threads that ended without closing theirs (runner loops) still hold sessions.
        with django_db_blocker.unblock(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND pid <> pg_backend_pid()")


@pytest.fixture
def gateway_runtime(transactional_db):
    """The process's gateway runtime, stopped (every upstream closed) after the test."""
    from mcpgateway import catalogue
    from mcpgateway.background import submit
    from mcpgateway.runtime import get_runtime

    runtime = get_runtime()
    catalogue.invalidate()
    yield runtime
    submit(runtime.stop()).result(timeout=60)
    catalogue.invalidate()


def start_servers(runtime, *servers: ToolServer, timeout: float = 60) -> None:
    """Sync the runtime with the database and wait until each server's tools are discovered."""
    import time

    from mcpgateway import catalogue
    from mcpgateway.background import submit

    submit(runtime.sync()).result(timeout=timeout)
    deadline = time.monotonic() + timeout
    for server in servers:
        while not server.tools.exists():
            server.refresh_from_db()
            assert time.monotonic() < deadline, f"{server.name} discovered no tools: {server.health} {server.health_error}"
            time.sleep(0.05)
    catalogue.invalidate()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_env() -> dict[str, str]:
    """Environment that points another process at this test database."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("postgresql"):
        return {"DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"}
    return {"SQLITE_PATH": str(db["NAME"])}


@contextmanager
def serving(extra_env: dict[str, str] | None = None, startup_s: float = 30, server: str = "daphne") -> Iterator[str]:
    """The ASGI app under daphne (or uvicorn's CLI) in its own process, sharing the test database;
    yields its base URL. The server's output goes to `VAR_DIR/e2e-<server>-<port>.log`."""
    port = _free_port()
    env = {**os.environ, "WHITENOISE_USE_FINDERS": "true", **database_env(), **(extra_env or {})}
    log = open(Path(settings.VAR_DIR) / f"e2e-{server}-{port}.log", "w")
    argv = {"daphne": ["daphne", "-b", "127.0.0.1", "-p", str(port)],
            "uvicorn": ["uvicorn", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]}[server]
    proc = subprocess.Popen([str(Path(sys.executable).with_name(argv[0])), *argv[1:], "config.asgi:application"],
                            cwd=settings.BASE_DIR, env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_s
        while True:
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, f"{server} did not start"
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def live_app(transactional_db) -> Iterator[str]:
    """The app under daphne (see `serving`), for the browser tests and the real /mcp endpoint."""
    with serving() as base:
        yield base


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    """The Docker engine the sandbox tests use; fails (never skips) when absent."""
    import docker

    image = settings.SANDBOX["image"]
    try:
        client = docker.from_env(timeout=60)
        client.ping()
        client.images.get(image)
    except Exception as exc:
        pytest.fail(f"these tests need a Docker engine with the image {image} ({exc}); run `make sandbox-engine`")
    yield client
    client.close()



_LEFT_HELD: list[str] = []


@pytest.fixture(autouse=True)
def _pooled_connections_handed_back(request):
    """On PostgreSQL's pool: a test after which connections stay checked out by threads other
    than the main one is named at the end of the session. A pool slot lost for good starves
    every later test (each write waits `DB_POOL_TIMEOUT_S`, then fails), far from its cause."""
    yield
    from django.db import connection

    if connection.vendor != "postgresql" or connection.alias not in getattr(connection, "_connection_pools", {}):
        return
    pool = connection.pool
    for _ in range(20):  # a writer thread hands its connection back just after its write
        stats = pool.get_stats()
        others = stats.get("pool_size", 0) - stats.get("pool_available", 0) - (connection.connection is not None)
        if others <= 0:
            return
        time.sleep(0.05)
    _LEFT_HELD.append(f"{others} after {request.node.nodeid}")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _LEFT_HELD:
        terminalreporter.write_sep("-", "pooled connections still checked out after a test")
        for line in _LEFT_HELD:
            terminalreporter.write_line(line)
