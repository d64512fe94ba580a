"""Host-side analysis of a run directory: counts, expected vs observed, world views,
plots and a self-contained report (docs/run-directory.md).

``run_analysis(run_dir)`` does everything; ``analysis.compare.compare(...)`` puts
several runs side by side.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from analysis._util import AnalysisError
from analysis.model import Analysis
from analysis.stats import analyse
from analysis.text import format_summary

__all__ = ["Analysis", "AnalysisError", "analyse", "format_summary", "run_analysis"]


def run_analysis(
    run_dir: Path,
    plots: bool = True,
    progress: Callable[[str], Any] | None = print,
    workers: int | None = None,
) -> Analysis:
    """Analyse ``run_dir`` and write every output: summary.json, stats.txt,
    worldview.json + GraphML, (with ``plots``) the PNG/HTML pictures, and report.html.

    Returns the ``Analysis`` (``.ok``, ``.summary``). ``progress`` receives one-line
    status messages (None: silent). Raises ``AnalysisError`` / ``generator.errors.P2PError``
    for a directory that cannot be analysed.
    """
    from analysis.report import write_report

    say = progress or (lambda _m: None)
    t0 = time.perf_counter()
    analysis = analyse(Path(run_dir), plots=plots, progress=say, workers=workers)
    analysis.files.append(write_report(analysis, [f for f in analysis.files if f.suffix in (".png", ".html")]))
    say(f"report: {analysis.run_dir / 'report.html'} ({time.perf_counter() - t0:.2f} s in all)")
    return analysis
