"""Fixtures and markers of the end-to-end suite.

- `broker`: a fresh broker (E2E_BROKER=mosquitto|tern) per test, on a free
  127.0.0.1 port with its own data directory, killed with its process group at
  teardown; its log is attached to the report of a failed test.
- `version`: MQTT 3.1.1 and 5.0, for tests that hold in both.
- `mqtt`, `raw`, `cli_sub`: client factories whose clients are closed at
  teardown; `steady`: QoS 1 traffic that a test checks it did not disturb.
- `@pytest.mark.xfail_on(BROKER, reason=...)`: a known deviation of that broker;
  the test is a strict xfail there (it must fail with an AssertionError) and a
  normal test elsewhere.
- `@pytest.mark.time_limit(SECONDS)`: overrides the per-phase time limit
  (E2E_TIMEOUT, 30 s by default), enforced with SIGALRM.
- `@pytest.mark.sys_topics`: needs $SYS topics published every few seconds.
"""

from __future__ import annotations

import contextlib
import os
import signal

import pytest

from harness import raw as raw_mqtt
from harness.broker import Broker, broker_kind, missing_tools, mosquitto_binary, tern_binary
from harness.cli import Sub
from harness.clients import V5, V311, Client
from harness.traffic import SteadyTraffic

DEFAULT_TIME_LIMIT = float(os.environ.get("E2E_TIMEOUT", "30"))


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "xfail_on(broker, reason): known deviation of that broker (strict xfail there)")
    config.addinivalue_line("markers", "time_limit(seconds): time limit of each test phase")
    config.addinivalue_line(
        "markers", "sys_topics: needs $SYS topics published at most a few seconds apart")


def pytest_sessionstart(session):
    problems = missing_tools()
    if problems:
        pytest.exit("cannot run the end-to-end suite:\n  " + "\n  ".join(problems), returncode=4)


def pytest_report_header(config):
    kind = broker_kind()
    binary = mosquitto_binary() if kind == "mosquitto" else tern_binary()
    return f"broker under test: {kind} ({binary})"


def pytest_collection_modifyitems(config, items):
    kind = broker_kind()
    for item in items:
        for mark in item.iter_markers("xfail_on"):
            if kind in mark.args:
                item.add_marker(pytest.mark.xfail(
                    reason=f"{kind}: {mark.kwargs['reason']}", strict=True,
                    raises=AssertionError))


# -- time limits ----------------------------------------------------------

class TimeLimitExceeded(Exception):
    """A test phase ran past its limit (not an AssertionError, so it never
    counts as an expected failure)."""


@contextlib.contextmanager
def _time_limit(item, phase: str):
    mark = item.get_closest_marker("time_limit")
    seconds = mark.args[0] if mark else DEFAULT_TIME_LIMIT

    def expire(_signum, _frame):
        raise TimeLimitExceeded(f"{phase} of {item.nodeid} exceeded {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    with _time_limit(item, "setup"):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    with _time_limit(item, "call"):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item):
    with _time_limit(item, "teardown"):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    broker = item.funcargs.get("broker") if hasattr(item, "funcargs") else None
    if report.failed and isinstance(broker, Broker):
        report.sections.append((f"broker log ({broker.kind})", broker.log()))
    # Brokers a test started itself (with a config of its own) register here.
    for index, extra in enumerate(getattr(item, "extra_brokers", ())):
        if report.failed:
            report.sections.append((f"broker {index} log ({extra.kind})", extra.log()))


# -- fixtures -------------------------------------------------------------

@pytest.fixture
def broker(tmp_path):
    """The broker under test, running; stopped (SIGKILL to its process group)
    at teardown whatever happened."""
    instance = Broker(broker_kind(), tmp_path)
    try:
        instance.start_fresh()
        yield instance
    finally:
        instance.cleanup()


@pytest.fixture(params=[V311, V5], ids=["v311", "v5"])
def version(request):
    return request.param


@pytest.fixture
def mqtt(broker):
    """mqtt(client_id, version=5, connect=True, **Client options) -> Client."""
    created: list[Client] = []

    def make(client_id: str, version: int = V5, *, connect: bool = True, **options) -> Client:
        client = Client(broker, client_id, version, **options)
        created.append(client)
        if connect:
            client.connect()
        return client

    yield make
    for client in created:
        client.close()


@pytest.fixture
def raw(broker):
    """raw(version=4) -> a RawClient connected at TCP level only."""
    created: list[raw_mqtt.RawClient] = []

    def make(version: int = V311) -> raw_mqtt.RawClient:
        client = raw_mqtt.RawClient(broker.host, broker.port, version=version)
        created.append(client)
        return client

    yield make
    for client in created:
        client.close()


@pytest.fixture
def cli_sub(broker):
    """cli_sub(topics, **Sub options) -> a running mosquitto_sub, subscribed."""
    created: list[Sub] = []

    def make(topics: list[str], **options) -> Sub:
        sub = Sub(broker, topics, **options)
        created.append(sub)
        return sub.wait_subscribed()

    yield make
    for sub in created:
        sub.close()


@pytest.fixture
def steady(broker):
    """Steady QoS 1 traffic that the test must not disturb; call `.stop()`
    at the end of the test to check it."""
    traffic = SteadyTraffic(broker).start()
    yield traffic
    traffic.close()
