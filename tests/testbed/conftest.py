"""Fixtures for the tests that start containers: a ready ComposeRunner and run ids
whose labelled objects are removed afterwards, pass or fail."""

from __future__ import annotations

import io
import os
import secrets

import pytest

from testbed.base import Progress, RunnerError
from testbed.compose import ComposeRunner
from testbed.engine import check_compose, clean_by_label, docker_client, list_labelled


def usable_docker_client(compose: bool = False):
    """The engine's client (and a working `docker compose` when ``compose``); without them the
    test is skipped, or fails under CI=true (.ci/run promises an engine)."""
    try:
        client = docker_client()
        if compose:
            check_compose()
    except RunnerError as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but Docker is not usable: {e}")
        pytest.skip(f"Docker not usable: {e}")
    return client


@pytest.fixture(scope="module")
def runner() -> ComposeRunner:
    r = ComposeRunner(usable_docker_client(compose=True), poll=0.1)
    r.ensure_image(Progress(stream=io.StringIO()))
    return r


@pytest.fixture
def run_ids(runner):
    """Fresh random run ids; everything labelled with them is removed afterwards, pass or fail."""
    ids: list[str] = []

    def new(prefix: str) -> str:
        ids.append(f"t-{prefix}-{secrets.token_hex(4)}")
        return ids[-1]

    yield new
    leftovers = {}
    for run_id in ids:
        try:
            clean_by_label(runner.client, run_id)
        finally:
            left = list_labelled(runner.client, run_id)
            if left:
                leftovers[run_id] = left
    assert not leftovers, f"labelled objects left behind: {leftovers}"
