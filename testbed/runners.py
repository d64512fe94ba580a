"""The backends a run can go to (``--backend`` of ``p2p run`` and ``p2p sweep``), in one registry.

Each entry names the module and class of its runner, imported only when chosen (so
``--backend local`` never imports docker), and says in a line what it runs. Adding a
backend is a module with a ``Runner`` subclass and a line in ``BACKENDS``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from testbed.base import Progress, Runner


@dataclass(frozen=True)
class Backend:
    """A backend: its ``--backend`` name, where its runner lives, what it runs."""

    name: str
    runner: str  # "module:Class", a Runner subclass; its connect() makes a ready runner
    description: str

    def runner_class(self) -> type[Runner]:
        module, _, cls = self.runner.partition(":")
        return getattr(importlib.import_module(module), cls)

    def connect(self) -> Runner:
        """A ready runner, or ``RunnerError`` saying why not."""
        return self.runner_class().connect()


BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("local", "testbed.local:LocalRunner", "every peer is its own OS process on 127.0.0.1"),
    Backend("compose", "testbed.compose:ComposeRunner", "one Docker container per peer, via Docker Compose"),
    Backend("swarm", "testbed.swarm:SwarmRunner", "one Docker Swarm service per peer (needs an active swarm)"),
)}
AUTO = "auto"
AUTO_DESCRIPTION = "compose when a Docker engine answers, else local"


def backend_choices() -> tuple[str, ...]:
    """The ``--backend`` choices: ``auto`` and every registered backend."""
    return (AUTO, *BACKENDS)


def backend_help() -> str:
    """One line per choice, for ``--backend``'s help."""
    return "; ".join(f"{b.name}: {b.description}" for b in BACKENDS.values()) + f"; {AUTO}: {AUTO_DESCRIPTION}"


def choose_runner(backend: str, progress: Progress) -> Runner:
    """A registered backend's runner; ``auto``: compose when a Docker engine answers, else local."""
    if backend != AUTO:
        return BACKENDS[backend].connect()
    from testbed.compose import ComposeRunner

    runner = ComposeRunner.try_connect()
    if runner is None:
        progress.message("no Docker engine answers: using the local backend (processes on 127.0.0.1)")
        return BACKENDS["local"].connect()
    return runner
