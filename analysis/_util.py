"""Small helpers shared by the analysis modules."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from generator.errors import P2PError


class AnalysisError(P2PError):
    """A run directory that cannot be analysed at all (reported as a clean message)."""


def atomic_write(path: Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same directory + ``os.replace``.

    A path that cannot be created or written is an AnalysisError naming it (one line, no traceback).
    """
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    try:
        if path.parent.exists() and not path.parent.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path.parent))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise AnalysisError(f"cannot create/write {path}: {e.strerror or e}") from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise AnalysisError(f"cannot create/write {path}: {e.strerror or e}") from e
        raise
    return path


def dump_json(obj: Any) -> str:
    """JSON with one line per record: nested dicts/lists past the second level stay inline."""
    return _dump(obj, 0) + "\n"


def _dump(obj: Any, depth: int) -> str:
    inline = depth >= 2 or not isinstance(obj, (dict, list)) or not obj
    if isinstance(obj, list) and all(not isinstance(x, (dict, list)) for x in obj):
        inline = True
    if inline:
        return json.dumps(obj, separators=(", ", ": "))
    pad = "  " * (depth + 1)
    if isinstance(obj, dict):
        items = [f"{pad}{json.dumps(str(k))}: {_dump(v, depth + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * depth + "}"
    items = [f"{pad}{_dump(v, depth + 1)}" for v in obj]
    return "[\n" + ",\n".join(items) + "\n" + "  " * depth + "]"


def fmt_int(x: int | None) -> str:
    return "-" if x is None else f"{x:,}"


def fmt_bytes(x: int | float | None) -> str:
    """Readable byte count: exact below 10 kB, else 3 significant digits in SI units."""
    if x is None:
        return "-"
    if x < 10_000:
        return f"{int(x):,} B"
    for unit, div in (("kB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12)):
        v = x / div
        if v < 1000 or unit == "TB":
            return f"{v:.3g} {unit}" if v < 100 else f"{v:.0f} {unit}"
    return f"{x} B"  # unreachable


def fmt_seconds(x: float | None) -> str:
    if x is None:
        return "-"
    if x < 1:
        return f"{x * 1000:.0f} ms"
    return f"{x:.2f} s"


def table(headers: list[str], rows: list[list[Any]], align: str | None = None) -> str:
    """Plain-text table; ``align`` is one char per column, 'l' or 'r' (default: r)."""
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or "r" * len(headers)
    out = []
    for k, r in enumerate(cells):
        parts = [c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(r, widths, align)]
        out.append("  ".join(parts).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths).rstrip())
    return "\n".join(out)


def step_text(applied: dict) -> str:
    """`` (down 2)`` for a flap's step in summary.json's ``faults_applied``, else ``""``."""
    return f" ({applied['phase']} {applied['cycle']})" if applied.get("phase") else ""
