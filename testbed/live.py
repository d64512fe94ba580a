"""The live page of a run (``p2p run --live``, ``p2p watch``): HTTP on 127.0.0.1 only.

A thread of the runner process (``p2p run``) or of ``p2p watch`` serves:

- ``/``            one self-contained page (inline JS, CSS and SVG: works offline) that polls
                   ``/state.json`` once a second;
- ``/setup.json``  the graph, its layout (computed here with networkx) and the prediction;
- ``/state.json``  :meth:`analysis.live.LiveState.snapshot`;
- ``/metrics``     Prometheus / OpenMetrics text from a collector that reads the same state.

Everything is read from the run's files on request (at most every 0.25 s), so a run that
nobody watches pays nothing, and a watched one only the reading of its event logs (the
message logs are read once, at the end; docs/live.md).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector, CollectorRegistry

from analysis.live import STATES, LiveSetup, LiveState
from generator.errors import P2PError

DEFAULT_PORT = 8765
HOST = "127.0.0.1"  # never another interface: the page shows the run to whoever can connect
PAGE = Path(__file__).with_name("live_page.html")


class RunCollector(Collector):
    """The run's counts as metric families, read from a :class:`LiveState` at each scrape."""

    def __init__(self, state: LiveState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        snap, setup = self.state.snapshot(), self.state.setup
        info = InfoMetricFamily("p2p_run", "the run being shown")
        info.add_metric([], {"run": setup.run_dir.name, "name": setup.name, "n": str(setup.n),
                             "prediction": "exact" if setup.exact else ("upper_bound" if snap["expected"] is not None
                                                                       else "none")})
        yield info
        delivered = CounterMetricFamily("p2p_deliveries", "messages received (lines of logs/<id>.txt)", labels=["peer"])
        predicted = GaugeMetricFamily("p2p_deliveries_predicted", "predicted deliveries per peer", labels=["peer"])
        for row in snap["peers"]:
            delivered.add_metric([str(row["id"])], row["delivered"])
            if row["expected"] is not None:
                predicted.add_metric([str(row["id"])], row["expected"])
        yield delivered
        yield predicted
        frames = CounterMetricFamily("p2p_link_frames", "frames per directed link (received)", labels=["src", "dst"])
        nbytes = CounterMetricFamily("p2p_link_bytes", "bytes per directed link (4 + payload)", labels=["src", "dst"])
        for link in snap["links"]:
            frames.add_metric([str(link["src"]), str(link["dst"])], link["frames"])
            nbytes.add_metric([str(link["src"]), str(link["dst"])], link["bytes"])
        yield frames
        yield nbytes
        errors = CounterMetricFamily("p2p_errors", "protocol errors by reason (occurrences)", labels=["reason"])
        for reason, count in snap["errors"].items():
            errors.add_metric([reason], count)
        yield errors
        faults = CounterMetricFamily("p2p_faults_fired", "faults applied so far, by action", labels=["action"])
        for action in sorted({f.get("action", "?") for f in snap["faults"]}):
            faults.add_metric([action], sum(f.get("action", "?") == action for f in snap["faults"]))
        yield faults
        yield from self._totals(snap)

    def _totals(self, snap: dict) -> Iterator[Metric]:
        setup = self.state.setup
        if snap["expected"] is not None:
            yield GaugeMetricFamily("p2p_predicted_deliveries", "predicted deliveries, all peers", value=snap["expected"])
            yield GaugeMetricFamily("p2p_predicted_bytes", "predicted bytes, all links",
                                    value=sum(b for _, b in setup.expect_edge.values()))
        peers = GaugeMetricFamily("p2p_peers", "peers by state", labels=["state"])
        for state in STATES:
            peers.add_metric([state], snap["states"].get(state, 0))
        yield peers
        if snap["elapsed"] is not None:
            yield GaugeMetricFamily("p2p_elapsed_seconds", "seconds since the first peer started", value=snap["elapsed"])


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    live: LiveState | None
    registry: CollectorRegistry


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # the name http.server calls
        path = self.path.split("?", 1)[0]
        live = self.server.live
        if live is None and path != "/":
            self._send(503, "text/plain", b"the run is not set up yet\n")
        elif path == "/":
            self._send(200, "text/html; charset=utf-8", PAGE.read_bytes())
        elif path == "/state.json":
            self._send(200, "application/json", json.dumps(live.snapshot()).encode())
        elif path == "/setup.json":
            self._send(200, "application/json", json.dumps(setup_json(live.setup)).encode())
        elif path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._send(200, content_type, encoder(self.server.registry))
        else:
            self._send(404, "text/plain", b"not found\n")

    def _send(self, code: int, content_type: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # http.server's signature
        pass  # a request line per poll would bury the run's own output


def setup_json(setup: LiveSetup) -> dict:
    """What the page draws once: peers with positions, undirected edges, the run's name."""
    return {"name": setup.name, "n": setup.n, "swarm": setup.swarm, "exact": setup.exact,
            "expected": setup.expect_total, "edges": setup.edges,
            "layout": {str(p): xy for p, xy in setup.layout.items()}}


class LiveServer:
    """The live page of one run, served from a daemon thread until :meth:`stop`."""

    def __init__(self, state: LiveState | None, port: int = DEFAULT_PORT) -> None:
        """Bind now (a taken port is a ``P2PError`` before anything else starts); ``state``
        may come later, through :meth:`show` (until then the page's requests get 503)."""
        try:
            self._server = _Server((HOST, port), _Handler)
        except OSError as e:
            raise P2PError(f"cannot serve the live page on {HOST}:{port}: {e.strerror or e} "
                           "(choose another port; 0 = any free one)") from e
        self._server.live = None
        if state is not None:
            self.show(state)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="p2p-live", daemon=True)

    def show(self, state: LiveState) -> None:
        """Serve this run's state from now on."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(RunCollector(state))
        self._server.registry, self._server.live = registry, state

    @property
    def state(self) -> LiveState | None:
        return self._server.live

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the server listens on."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}/"

    def start(self) -> LiveServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_run(run_dir: Path, port: int = DEFAULT_PORT) -> LiveServer:
    """A started server for any run directory (running, finished, or started by ``docker compose up``)."""
    return LiveServer(LiveState(LiveSetup.load(run_dir)), port).start()
