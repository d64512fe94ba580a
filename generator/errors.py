"""Errors raised by the generator; all derive from the project-wide root."""

from __future__ import annotations


class P2PError(Exception):
    """Root of every error the ``p2p`` command reports as a clean message."""


class TopologyError(P2PError):
    """A topology name or size that cannot be built."""


class SpecError(P2PError):
    """A run spec that is malformed or inconsistent."""
