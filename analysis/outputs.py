"""Every file an analysis writes into the run directory, written here and nowhere else
(but missing.jsonl, which analysis.missing streams while it compares, and report.html,
which run_analysis adds last because it embeds the others)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from analysis._util import atomic_write, dump_json
from analysis.model import Analysis
from analysis.text import format_stats


def write_outputs(analysis: Analysis, missing: dict[str, Any] | None, *, files: bool = True, plots: bool = False,
                  say: Callable[[str], Any] = lambda _m: None) -> list[Path]:
    """summary.json, stats.txt, missing.json (when given) and the world-view files
    (``files``); the pictures (``plots``). Returns the paths written."""
    run_dir = analysis.run_dir
    written: list[Path] = []
    if files:
        if missing is not None:
            written.append(atomic_write(run_dir / "missing.json", dump_json(missing)))
        written.append(atomic_write(run_dir / "summary.json", dump_json(analysis.summary)))
        written.append(atomic_write(run_dir / "stats.txt", format_stats(analysis)))
        from analysis.worldview import write_worldview

        written.extend(write_worldview(analysis))
    if plots:
        from analysis.plots import make_plots

        written.extend(make_plots(analysis, progress=say))
    return written
