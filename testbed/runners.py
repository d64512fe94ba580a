"""Choosing the backend a run goes to (``--backend`` of ``p2p run`` and ``p2p sweep``)."""

from __future__ import annotations

from testbed.base import Progress, Runner


def choose_runner(backend: str, progress: Progress) -> Runner:
    """``local``, ``compose`` or ``swarm``; ``auto``: compose when a Docker engine answers, else local."""
    from testbed.local import LocalRunner

    if backend == "local":
        return LocalRunner()
    if backend == "swarm":
        from testbed import swarm

        return swarm.SwarmRunner.connect()
    from testbed import compose

    if backend == "compose":
        return compose.ComposeRunner.connect()
    runner = compose.ComposeRunner.try_connect()
    if runner is None:
        progress.message("no Docker engine answers: using the local backend (processes on 127.0.0.1)")
        return LocalRunner()
    return runner
