"""Memory of one real peer under a cycle-N workload, fed by two fake neighbours.

    python3 bench/peer_memory.py [--n 1000] [--python /usr/bin/python3] [--json]

Starts ``python -m peer`` as peer N/2 of a cycle-N (loopback, port 0), lets both fake
neighbours connect, then sends it every message it gets in a real cycle-N flood (1998 at
N = 1000, hop lists up to N-1 long), as fast as it reads them, and reads back what it
forwards (its own message and 998 forwards each way at N = 1000). Prints its anonymous and total RSS before the flood and the peak during it
(sampled every 50 ms from /proc), and checks the counts. A container run can only show
this peer's memory mixed with a thousand others'; this isolates the peer's own part.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from peer.wire import HEADER, encode_frame, encode_handshake, encode_payload  # noqa: E402


def memory_kib(pid: int) -> dict[str, int]:
    try:
        with open(f"/proc/{pid}/status") as f:
            return {line.split(":")[0]: int(line.split()[1]) for line in f if line.startswith(("RssAnon", "VmRSS"))}
    except OSError:
        return {}


def cycle_frames(n: int, me: int, sender: int) -> list[bytes]:
    """Every message ``me`` receives from ``sender`` in a cycle-n flood, shortest hop list first."""
    step = -1 if sender == (me - 1) % n else 1  # walking away from me, towards the authors
    frames = []
    for k in range(1, n):
        path = [(sender + step * i) % n for i in range(k)]  # sender, ..., author
        hops = path[::-1]
        frames.append(encode_frame(encode_payload(hops[0], hops)))
    return frames


async def read_all(reader: asyncio.StreamReader) -> int:
    count = 0
    try:
        while True:
            size = HEADER.unpack(await reader.readexactly(4))[0]
            await reader.readexactly(size)
            count += 1
    except (asyncio.IncompleteReadError, ConnectionError):
        return count


async def measure(n: int, python: str) -> dict:
    me, low, high = n // 2, n // 2 - 1, n // 2 + 1
    go = asyncio.Event()
    forwarded: dict[int, int] = {}

    async def high_neighbour(reader, writer):  # the peer dials it (the lower id dials)
        await reader.readexactly(4)
        await go.wait()
        reading = asyncio.create_task(read_all(reader))
        for frame in cycle_frames(n, me, high):
            writer.write(frame)
            await writer.drain()
        forwarded[high] = await reading

    server = await asyncio.start_server(high_neighbour, "127.0.0.1", 0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log_dir = Path(tempfile.mkdtemp(prefix="p2p-peer-mem-"))
    proc = subprocess.Popen(
        [python, "-m", "peer", "--id", str(me), "--n", str(n), "--listen", f"127.0.0.1:{port}",
         "--neighbour", f"{low}=127.0.0.1:1", "--neighbour", f"{high}=127.0.0.1:{server.sockets[0].getsockname()[1]}",
         "--log-dir", str(log_dir), "--expect", str(2 * (n - 1))],
        cwd=ROOT,
    )
    peak: dict[str, int] = {}

    async def sample():
        while proc.poll() is None:
            m = memory_kib(proc.pid)
            if m.get("RssAnon", 0) > peak.get("RssAnon", 0):
                peak.update(m)
            await asyncio.sleep(0.05)

    for _ in range(100):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            break
        except OSError:
            await asyncio.sleep(0.05)
    else:
        raise SystemExit("the peer never listened")
    writer.write(encode_handshake(low))
    await writer.drain()
    await asyncio.sleep(0.5)  # both links up, nothing sent yet
    before = memory_kib(proc.pid)
    sampling = asyncio.create_task(sample())
    t0 = time.monotonic()
    go.set()
    reading = asyncio.create_task(read_all(reader))
    for frame in cycle_frames(n, me, low):
        writer.write(frame)
        await writer.drain()
    forwarded[low] = await reading
    await sampling
    code = proc.wait()
    server.close()
    lines = len((log_dir / f"{me}.txt").read_bytes().splitlines())
    return {"n": n, "exit": code, "seconds": time.monotonic() - t0, "logged": lines, "forwarded": forwarded,
            "before_kib": before, "peak_kib": peak}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="cycle size (default 1000)")
    ap.add_argument("--python", default=sys.executable,
                    help="interpreter for the peer (the image's is Debian's /usr/bin/python3)")
    ap.add_argument("--json", action="store_true", help="also print the figures as one JSON line (last line)")
    args = ap.parse_args()
    r = asyncio.run(measure(args.n, args.python))
    expect = 2 * (args.n - 1)
    ok = r["exit"] == 0 and r["logged"] == expect and sum(r["forwarded"].values()) == expect
    mib = lambda kib: f"{kib / 1024:.1f} MiB"  # noqa: E731
    print(f"cycle-{args.n}, one peer: {r['logged']:,} deliveries logged, {sum(r['forwarded'].values()):,} forwarded, "
          f"exit {r['exit']}, {r['seconds']:.2f} s{'' if ok else '  (COUNTS WRONG)'}")
    print(f"  before the flood: anon {mib(r['before_kib']['RssAnon'])}, RSS {mib(r['before_kib']['VmRSS'])}")
    print(f"  peak during it:   anon {mib(r['peak_kib']['RssAnon'])}, RSS {mib(r['peak_kib']['VmRSS'])}")
    if args.json:
        print(json.dumps({**r, "exact": ok, "python": args.python}))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
