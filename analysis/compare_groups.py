"""``p2p compare`` of repeated groups: intervals side by side and whether they differ significantly.

A *group directory* is one with ``repeats.json`` (``p2p run --repeat K``, ``p2p rerun
--repeat K``) or a repeated sweep (``sweep.json`` with ``cells``, ``p2p sweep --repeat K``).
What is compared:

- two or more repeat directories: each against the first;
- two or more sweeps: each cell of the first against the cell of the same family, n and
  protocol in each other sweep;
- one sweep: within each (family, n), each protocol against the first protocol.

Per quantity: exact values by equality, the others by Welch's t-test (scipy) at alpha 0.05,
p-value shown (analysis/repeats.py). Writes compare.txt and compare.json.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis._util import AnalysisError, atomic_write, dump_json, table
from analysis.repeats import ALPHA, BY_KEY, QuantityStats, column_keys, differences, stats_from_dict


@dataclass(frozen=True)
class Group:
    name: str  # "#1 cycle-5 v1" etc.
    source: str  # the directory it came from
    key: tuple[Any, ...]  # (family label, n, protocol): what sweeps are matched by
    k: int
    stats: dict[str, QuantityStats]
    failures: tuple[str, ...] = ()


def is_group_dir(path: Path) -> bool:
    """A directory of repeated runs (repeats.json, or sweep.json with per-cell statistics)."""
    if (path / "repeats.json").is_file():
        return True
    sweep = path / "sweep.json"
    if not sweep.is_file():
        return False
    try:
        return "cells" in json.loads(sweep.read_text())
    except (OSError, ValueError):
        return False


def load_groups(path: Path, tag: str) -> list[Group]:
    """The groups of one directory, named ``<tag> <label> <protocol>``."""
    if (path / "repeats.json").is_file():
        data = json.loads((path / "repeats.json").read_text())
        spec = data.get("spec") or {}
        key = (spec.get("topology"), spec.get("n"), spec.get("protocol"))
        label = data.get("label") or f"{spec.get('topology')}-{spec.get('n')}"
        return [Group(f"{tag} {label} {spec.get('protocol')}", str(path), key,
                      data.get("k", 0), stats_from_dict(data.get("stats") or {}), tuple(data.get("failures") or ()))]
    data = json.loads((path / "sweep.json").read_text())
    out = []
    for c in data.get("cells") or []:
        if "stats" not in c:
            continue  # skipped cell
        key = (c["label"].split(" ", 1)[0].rsplit("-", 1)[0], c["n"], c["protocol"])
        out.append(Group(f"{tag} {c['label']} {c['protocol']}", str(path), key, c["k"], stats_from_dict(c["stats"]),
                         tuple(c.get("failures") or ())))
    return out


def pairs_of(sets: list[list[Group]]) -> list[tuple[Group, Group]]:
    """Which groups are compared (module doc)."""
    if len(sets) == 1:  # one sweep: protocols within each (family, n)
        by_cell: dict[tuple[Any, Any], list[Group]] = {}
        for g in sets[0]:
            by_cell.setdefault(g.key[:2], []).append(g)
        return [(gs[0], g) for gs in by_cell.values() for g in gs[1:]]
    first, rest = sets[0], sets[1:]
    if all(len(s) == 1 for s in sets):  # repeat directories (or one-cell sweeps): each against the first
        return [(first[0], s[0]) for s in rest]
    return [(a, b) for a in first for other in rest for b in other if b.key == a.key]


@dataclass(frozen=True)
class GroupComparison:
    text: str
    data: dict[str, Any]
    files: list[Path]
    differ: bool  # some quantity differs significantly (or exactly)


def compare_groups(dirs: list[Path], out_dir: Path, progress: Callable[[str], Any] | None = None) -> GroupComparison:
    say = progress or (lambda _m: None)
    sets = []
    for i, d in enumerate(dirs, 1):
        groups = load_groups(Path(d), f"#{i}")
        if not groups:
            raise AnalysisError(f"compare: {d}: no repeated group with statistics in it")
        sets.append(groups)
    if len(sets) == 1 and len(sets[0]) < 2:
        raise AnalysisError("compare: one group alone: give a second directory to compare it with")
    pairs = pairs_of(sets)
    groups = [g for s in sets for g in s]
    diffs = [(a, b, differences(a.stats, b.stats)) for a, b in pairs]
    text = format_groups(groups, diffs, [str(d) for d in dirs])
    data = {
        "alpha": ALPHA,
        "groups": [{"name": g.name, "source": g.source, "k": g.k, "failures": list(g.failures),
                    "stats": {k: qs.to_dict() for k, qs in g.stats.items()}} for g in groups],
        "comparisons": [{"a": a.name, "b": b.name, "quantities": {k: d.to_dict() for k, d in ds.items()}}
                        for a, b, ds in diffs],
    }
    out_dir = Path(out_dir)
    files = [atomic_write(out_dir / "compare.txt", text + "\n"), atomic_write(out_dir / "compare.json", dump_json(data))]
    say(f"compared {len(groups)} groups ({len(pairs)} pairs) into {out_dir}")
    differ = any(d.differ for _, _, ds in diffs for d in ds.values())
    return GroupComparison(text, data, files, differ)


def format_groups(groups: list[Group], diffs, sources: list[str]) -> str:
    keys = column_keys(g.stats for g in groups)
    body = [[g.name, str(g.k), *(g.stats[k].text() if k in g.stats else "-" for k in keys)] for g in groups]
    out = [table(["group", "K", *(BY_KEY[k].label for k in keys)], body, "lr" + "r" * len(keys)),
           "('X exact': every run equals the exact prediction X; 'm ± h': mean ± half-width of the 95% t interval)",
           ""]
    rows = []
    for a, b, ds in diffs:
        for k, d in ds.items():
            rows.append([a.name, b.name, BY_KEY[k].label, a.stats[k].text(), b.stats[k].text(),
                         "-" if d.p is None else f"{d.p:.3g}", d.text()])
    if rows:
        out.append(table(["A", "B", "quantity", "A", "B", "p", "result"], rows, "lllrrrl"))
        out.append(f"(exact quantities compared exactly; the others by Welch's t-test, alpha {ALPHA}: "
                   "DIFFER when p < alpha)")
    else:
        out.append("no pairs to compare (no cell of the same family, n and protocol in both)")
    out.append("")
    out += [f"#{i}  {s}" for i, s in enumerate(sources, 1)]
    failed = [f"FAILED {g.name}: {f}" for g in groups for f in g.failures]
    return "\n".join(out + failed)
