#!/usr/bin/env python3
"""A small stand-alone v1 peer for tests: another "implementation" (not our peer package).

Same CLI as the default adapter (``--id --listen --peer ID=HOST:PORT ... --logs DIR --idle S``),
writes only the original log format (``<id>.txt``, ``<id>.traffic.txt``) and exits by itself
after ``--idle`` seconds without a frame once it authored. The lower id of an edge dials
(retrying), like ours. ``--broken back``: also forwards every message back to its sender
(a protocol violation, for the grade's tests); ``--broken silent``: never sends anything;
``--lax``: logs and forwards frames it should refuse (two lax back-forwarders bounce frames forever).
"""

import argparse
import asyncio
import json
import os
import signal
import struct
import sys
import time

HEADER = struct.Struct(">I")


class Peer:
    def __init__(self, args):
        self.me, self.args = args.id, args
        self.nbrs = {}
        for item in args.peer:
            nb, _, addr = item.partition("=")
            host, _, port = addr.rpartition(":")
            self.nbrs[int(nb)] = (host, int(port))
        self.writers, self.traffic = {}, {nb: [0, 0] for nb in self.nbrs}
        self.pending = {nb: [] for nb in self.nbrs}  # frames for a link not up yet
        os.makedirs(args.logs, exist_ok=True)
        self.log = os.open(os.path.join(args.logs, f"{self.me}.txt"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.last = time.monotonic()
        self.authored = False

    def send(self, nb, payload):
        if self.args.broken == "silent":
            return
        w = self.writers.get(nb)
        if w is None:
            self.pending[nb].append(payload)
            return
        if w.is_closing():
            return
        w.write(HEADER.pack(len(payload)) + payload)
        self.traffic[nb][1] += 4 + len(payload)

    def up(self, nb, reader, writer):
        self.writers[nb] = writer
        for payload in self.pending.pop(nb, []):
            self.send(nb, payload)
        asyncio.get_running_loop().create_task(self.read(nb, reader))
        if len(self.writers) == len(self.nbrs) and not self.authored:
            self.authored = True
            payload = json.dumps({"id": self.me, "hops": [self.me]}, separators=(",", ":")).encode()
            for n in self.nbrs:
                self.send(n, payload)

    async def read(self, nb, reader):
        try:
            while True:
                size = HEADER.unpack(await reader.readexactly(4))[0]
                payload = await reader.readexactly(size)
                self.last = time.monotonic()
                self.traffic[nb][0] += 4 + size
                msg = json.loads(payload)
                bad = self.me in msg["hops"] or len(set(msg["hops"])) != len(msg["hops"]) or msg["hops"][-1] != nb
                if bad and not self.args.lax:
                    break  # a protocol error: drop this connection, keep the others
                os.write(self.log, payload + b"\n")
                hops = msg["hops"] + [self.me]
                fwd = json.dumps({"id": msg["id"], "hops": hops}, separators=(",", ":")).encode()
                for n in self.nbrs:
                    if n not in msg["hops"] or (self.args.broken == "back" and n == nb):
                        self.send(n, fwd)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        self.writers[nb].close()

    async def accept(self, reader, writer):
        nb = HEADER.unpack(await reader.readexactly(4))[0]
        self.up(nb, reader, writer)

    async def dial(self, nb):
        host, port = self.nbrs[nb]
        while True:
            try:
                reader, writer = await asyncio.open_connection(host, port)
                break
            except OSError:
                await asyncio.sleep(0.05)
        writer.write(HEADER.pack(self.me))
        self.up(nb, reader, writer)

    async def run(self):
        host, _, port = self.args.listen.rpartition(":")
        server = await asyncio.start_server(self.accept, host, int(port), reuse_address=True)
        for nb in self.nbrs:
            if nb > self.me:
                asyncio.get_running_loop().create_task(self.dial(nb))
        stop = asyncio.Event()  # SIGTERM: write the traffic file and exit, as at idle
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        while (not self.authored or time.monotonic() - self.last < self.args.idle) and not stop.is_set():
            await asyncio.sleep(0.05)
        for w in self.writers.values():
            try:
                await w.drain()
            except ConnectionError:
                pass
            w.close()
        server.close()
        with open(os.path.join(self.args.logs, f"{self.me}.traffic.txt"), "w") as f:
            for nb, (bin_, bout) in sorted(self.traffic.items()):
                if bin_ or bout:
                    f.write(f"{nb}; {bin_}; {bout}\n")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--id", type=int, required=True)
    p.add_argument("--listen", required=True)
    p.add_argument("--peer", action="append", default=[])
    p.add_argument("--logs", required=True)
    p.add_argument("--idle", type=float, default=2.0)
    p.add_argument("--link-deadline", type=float, default=60.0)
    p.add_argument("--broken", choices=["back", "silent"], default=None)
    p.add_argument("--lax", action="store_true", help="log and forward invalid frames instead of dropping the link")
    asyncio.run(Peer(p.parse_args()).run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
