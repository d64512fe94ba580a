"""The one prediction entry point for a run: what peers are told to expect (``--expect``).

``expect_for(spec, limit, force, say)`` returns the exact per-edge ``Prediction`` of a
run, or None when the run is allowed without one, and refuses runaway runs (predicted
above ``limit`` deliveries, unless ``force``) with a ``P2PError``. ``say`` is any
callable taking one line of text (``testbed.base.Progress.message`` is one); the
generator never imports the testbed.
"""

from __future__ import annotations

from collections.abc import Callable

import networkx as nx

from generator.errors import P2PError
from generator.predict import Prediction, PredictionTooLarge, predict, quick_deliveries
from generator.protocol_predict import predict_protocol
from generator.spec import RunSpec

DEFAULT_LIMIT = 2_000_000  # refuse runs predicted above this many deliveries (``--limit``)

Say = Callable[[str], None]


def expect_for(spec: RunSpec, limit: int, force: bool, say: Say) -> Prediction | None:
    """Exact prediction, or None when the run is allowed without one; refuses runaways.

    With faults the prediction is made on what survives the faults declared at start;
    later faults make it an upper bound that analysis compares against.
    """
    graph, family = spec.prediction_input()
    if spec.protocol != "v1":
        return expect_protocol_for(spec, graph, family, limit, force, say)
    try:
        total = quick_deliveries(graph, family, cap=limit)
    except PredictionTooLarge as e:
        if not force:
            raise P2PError(f"{spec.name}: {e}; refusing to run (use --force to run anyway, without a prediction)") from e
        say(f"{spec.name}: {e}; running without a prediction (--force)")
        return None
    if total > limit and not force:
        raise P2PError(
            f"{spec.name} would make {total:,} deliveries (limit {limit:,}); refusing to run. "
            "Use --force to run anyway, or pick a smaller size."
        )
    try:
        return predict(graph, family, cap=max(limit, total))
    except PredictionTooLarge as e:
        say(f"{spec.name}: {e}; running without a prediction")
        return None


def expect_protocol_for(spec: RunSpec, graph: nx.Graph, family: str | None, limit: int, force: bool,
                        say: Say) -> Prediction | None:
    """Non-v1 protocols: refuse runaways; return a per-edge ``Prediction`` only when it is exact
    (so peers get --expect), else None after saying what is predicted."""
    try:
        pp = predict_protocol(graph, spec, cap=limit, family=family, full_graph=spec.graph())
    except PredictionTooLarge as e:
        if not force:
            raise P2PError(f"{spec.name} ({spec.protocol}): {e}; refusing to run (use --force to run anyway, "
                           "without a prediction)") from e
        say(f"{spec.name} ({spec.protocol}): {e}; running without a prediction (--force)")
        return None
    if pp.upper_bound is not None and pp.upper_bound > limit and not force:
        raise P2PError(f"{spec.name} ({spec.protocol}) may make up to {pp.upper_bound:,} deliveries (limit "
                       f"{limit:,}); refusing to run. Use --force to run anyway, or pick a smaller size.")
    if pp.exact:
        return pp.detail
    say(f"{spec.name} predicted {pp.describe()}; peers exit on idle")
    return None
