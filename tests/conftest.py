"""Suite-wide guard: the tests must leave no Docker object labelled ``p2p.run`` behind."""

from __future__ import annotations

import pytest


def _labelled_objects() -> set[str] | None:
    import docker.errors

    from testbed.base import RunnerError
    from testbed.engine import docker_client

    try:
        client = docker_client()  # a short ping: a wedged engine must not hang the suite
    except RunnerError:  # no engine: nothing can leak
        return None
    found: set[str] = set()
    flt = {"label": "p2p.run"}
    # sparse listings: a container removed between listing and inspecting is no error.
    found |= {f"container {c.id[:12]}" for c in client.containers.list(all=True, filters=flt, sparse=True)}
    found |= {f"network {n.name}" for n in client.networks.list(filters=flt)}
    found |= {f"volume {v.name}" for v in client.volumes.list(filters=flt)}
    try:
        found |= {f"service {s.name}" for s in client.services.list(filters=flt)}
    except docker.errors.APIError:
        pass  # not a swarm manager: no services
    client.close()
    return found


@pytest.fixture(scope="session", autouse=True)
def no_labelled_leftovers():
    # Objects that were there before the session (a benchmark, a user's run) are not ours.
    before = _labelled_objects()
    yield
    if before is None:
        return
    after = _labelled_objects() or set()
    leaked = sorted(after - before)
    if leaked:
        pytest.fail(f"the test suite left {len(leaked)} object(s) labelled p2p.run: {', '.join(leaked[:10])}")


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium (tests/browser.py) for the session; tests using it are marked ``browser``.
    Skipped without chromium/chromedriver, but under CI=true that is a failure: .ci/run installs them."""
    from tests.browser import Browser, in_ci, missing_programs, start_driver

    missing = missing_programs()
    if missing:
        why = f"{' and '.join(missing)} missing (apt-get install chromium chromium-driver)"
        if in_ci():
            pytest.fail(f"browser tests under CI=true: {why}", pytrace=False)
        pytest.skip(why)
    driver = start_driver()
    try:
        yield Browser(driver)
    finally:
        driver.quit()
