"""Where the host's CPU goes during a run: CPU seconds per process name, per interval.

    python3 bench/cpu_by_process.py --out FILE [--interval 5] [--top 8]

Samples /proc/<pid>/stat (utime + stime) every interval and writes one JSON line per
interval: {"t": seconds since start, "cpu": {name: CPU seconds in the interval}}. A
process seen for the first time counts from its start, one that exited between two
samples is lost (short-lived `runc` calls mostly). Stop it with Ctrl-C or SIGTERM; it
then prints the totals by name. Reads only /proc; Linux only.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections import Counter

TICK = os.sysconf("SC_CLK_TCK")


def snapshot() -> dict[int, tuple[str, float]]:
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                raw = f.read().decode(errors="replace")
        except OSError:
            continue
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        out[int(pid)] = (name, (int(fields[11]) + int(fields[12])) / TICK)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="JSON lines, one per interval")
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--top", type=int, default=8, help="names in the printed totals")
    args = ap.parse_args(argv)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    totals: Counter[str] = Counter()
    t0 = time.monotonic()
    prev = snapshot()
    with open(args.out, "w") as out:
        try:
            while not stop:
                time.sleep(args.interval)
                cur = snapshot()
                delta: Counter[str] = Counter()
                for pid, (name, cpu) in cur.items():
                    before = prev.get(pid)
                    delta[name] += cpu - (before[1] if before and before[0] == name else 0.0)
                prev = cur
                totals.update(delta)
                out.write(json.dumps({"t": round(time.monotonic() - t0, 1),
                                      "cpu": {k: round(v, 2) for k, v in delta.most_common() if v > 0}}) + "\n")
                out.flush()
        except KeyboardInterrupt:
            pass
    for name, cpu in totals.most_common(args.top):
        print(f"{name:<20} {cpu:10.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
