"""record.json: what a run ran on, so that a run directory is a self-contained experiment record.

Written by every runner at the end of ``Runner.run`` (after clean-up, also after an
error): p2p's version, the source hash of the peer code (the definition of
docker/build-image.sh's SRC_HASH, so it can be matched against the image label
``p2p.src-hash``), the backend, and for the Docker backends the peer image id, the
engine's version and storage driver; and the host facts that change results: kernel
release, ARP neighbour limit, CPU count, Python version. Every probe only reads.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

RECORD = "record.json"
REPO_ROOT = Path(__file__).resolve().parents[1]
GC_THRESH3 = Path("/proc/sys/net/ipv4/neigh/default/gc_thresh3")
# Facts that, when they differ between two runs, can explain different numbers (`p2p rerun` warns).
COMPARED = ("p2p_version", "src_hash", "backend", "kernel", "docker_version", "storage_driver", "image_id", "python")


def src_hash(root: Path = REPO_ROOT) -> str | None:
    """docker/build-image.sh's SRC_HASH: sha256 of ``sha256sum``'s output over peer/**/*.py
    (byte order), docker/Dockerfile and .dockerignore (when present); None without the sources."""
    files = sorted((p.relative_to(root).as_posix() for p in (root / "peer").rglob("*.py")
                    if "__pycache__" not in p.parts), key=lambda s: s.encode())
    files.append("docker/Dockerfile")
    if (root / ".dockerignore").is_file():
        files.append(".dockerignore")
    lines = []
    for rel in files:
        try:
            digest = hashlib.sha256((root / rel).read_bytes()).hexdigest()
        except OSError:
            return None  # an installed copy without docker/: no hash to match an image against
        lines.append(f"{digest}  {rel}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def p2p_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("p2p-testbed")
    except PackageNotFoundError:
        return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def host_facts() -> dict[str, Any]:
    thresh = _read(GC_THRESH3)
    return {
        "kernel": platform.release(),
        "arp_gc_thresh3": int(thresh) if thresh and thresh.isdigit() else None,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }


def engine_facts(client, image: str | None) -> dict[str, Any]:
    """The Docker engine's version and storage driver, and the peer image's id (read-only calls)."""
    facts: dict[str, Any] = {"docker_version": None, "storage_driver": None, "image": image, "image_id": None,
                             "image_src_hash": None}
    try:
        facts["docker_version"] = client.version().get("Version")
        facts["storage_driver"] = client.info().get("Driver")
        if image:
            img = client.images.get(image)
            facts["image_id"] = img.id
            facts["image_src_hash"] = (img.labels or {}).get("p2p.src-hash")
    except Exception as e:  # noqa: BLE001 - a fact we could not read is recorded as unknown, never fails a run
        facts["engine_error"] = " ".join(str(e).split())[:200]
    return facts


def build_record(backend: str, client=None, image: str | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {"p2p_version": p2p_version(), "src_hash": src_hash(), "backend": backend}
    if client is not None:
        record.update(engine_facts(client, image))
    record.update(host_facts())
    return record


def write_record(run_dir: Path, backend: str, client=None, image: str | None = None) -> Path:
    path = Path(run_dir) / RECORD
    tmp = path.with_name(f".{RECORD}.tmp")
    tmp.write_text(json.dumps(build_record(backend, client, image), indent=1, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def load_record(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(run_dir) / RECORD).read_text())
    except (OSError, ValueError):
        return None


def record_differences(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> list[str]:
    """``kernel: 6.1.0 -> 6.8.0``, one per compared fact that differs (a missing record is one line)."""
    if a is None or b is None:
        return [f"{'original' if a is None else 'new'} run has no {RECORD}"]
    return [f"{k}: {a.get(k)} -> {b.get(k)}" for k in COMPARED
            if (k in a or k in b) and a.get(k) != b.get(k)]
