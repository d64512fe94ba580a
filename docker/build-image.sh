#!/usr/bin/env bash
# Build the peer image (default tag p2p-peer:latest) from docker/Dockerfile.
#
# Works without a container registry: the base is python:3.12-slim when it is
# present locally or can be pulled, otherwise an offline Debian bookworm base
# (p2p-base:bookworm) bootstrapped once with mmdebstrap.
# Idempotent: skips the build when the image already carries the current source
# hash (label p2p.src-hash) unless --force is given.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: docker/build-image.sh [--tag p2p-peer:latest] [--force]

Build the peer image from docker/Dockerfile (build context: repo root, only peer/).

  --tag TAG   image tag to build (default p2p-peer:latest)
  --force     rebuild even if the image is up to date
  -h, --help  show this help

Base image: python:3.12-slim if present locally or pullable (20 s timeout),
otherwise the offline base p2p-base:bookworm, bootstrapped once with
  mmdebstrap --variant=minbase --include=python3 bookworm - | docker import ...
(needs the Debian package mmdebstrap; installed automatically when run as root).

Exit codes: 0 ok / up to date, 1 failure, 2 missing prerequisite, 64 bad usage.
EOF
}

TAG="p2p-peer:latest"
FORCE=0
SLIM_BASE="python:3.12-slim"
BOOT_BASE="p2p-base:bookworm"

while [[ $# -gt 0 ]]; do
    case "$1" in
        --tag)
            [[ $# -ge 2 && -n "$2" ]] || { echo "error: --tag needs a value" >&2; usage >&2; exit 64; }
            TAG="$2"; shift 2 ;;
        --tag=*) TAG="${1#--tag=}"; [[ -n "$TAG" ]] || { echo "error: --tag needs a value" >&2; exit 64; }; shift ;;
        --force) FORCE=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "error: unknown argument: $1" >&2; usage >&2; exit 64 ;;
    esac
done

die() {  # die CODE MESSAGE...
    local code="$1"; shift
    printf 'build-image: error: %s\n' "$*" >&2
    exit "$code"
}
say() { printf 'build-image: %s\n' "$*"; }

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
cd "$REPO_ROOT"

command -v docker >/dev/null 2>&1 \
    || die 2 "the docker CLI is not installed (install Docker Engine: https://docs.docker.com/engine/install/)"
timeout 60 docker info >/dev/null 2>&1 \
    || die 2 "cannot talk to the Docker daemon (is it running, and may this user use it? try: sudo systemctl start docker, or add yourself to the docker group)"
[[ -f docker/Dockerfile ]] || die 1 "docker/Dockerfile not found under $REPO_ROOT"
[[ -d peer ]] || die 1 "peer/ directory not found under $REPO_ROOT (nothing to put into the image)"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }
image_label() {  # image_label IMAGE LABEL -> value or empty
    docker image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}

# --- source hash: sha256 over (path, sha256) of peer/**/*.py, Dockerfile, .dockerignore
src_hash() {
    {
        find peer -type f -name '*.py' -not -path '*/__pycache__/*' -print0 | LC_ALL=C sort -z
        printf '%s\0' docker/Dockerfile
        if [[ -f .dockerignore ]]; then printf '%s\0' .dockerignore; fi
    } | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
}
SRC_HASH="$(src_hash)"
[[ ${#SRC_HASH} -eq 64 ]] || die 1 "could not compute the source hash (sha256sum/find/xargs missing?)"

if [[ $FORCE -eq 0 ]] && image_exists "$TAG" && [[ "$(image_label "$TAG" p2p.src-hash)" == "$SRC_HASH" ]]; then
    say "$TAG is up to date"
    exit 0
fi

# --- choose the base image
# shellcheck source=docker/debian-bootstrap.sh
source "$SCRIPT_DIR/debian-bootstrap.sh"
bootstrap_base() {
    debian_bootstrap "$BOOT_BASE" python3 'python3 -c "import asyncio"' 'LABEL p2p.image=base' 'ENV LANG=C.UTF-8'
}

if image_exists "$SLIM_BASE"; then
    BASE="$SLIM_BASE"
elif say "trying docker pull $SLIM_BASE (20 s timeout)..." \
        && timeout 20 docker pull -q "$SLIM_BASE" >/dev/null 2>&1; then
    BASE="$SLIM_BASE"
else
    BASE="$BOOT_BASE"
    if image_exists "$BOOT_BASE"; then
        say "no registry: using offline base $BOOT_BASE"
    else
        say "no registry: $SLIM_BASE cannot be pulled, falling back to the offline base $BOOT_BASE"
        bootstrap_base
    fi
fi

# --- build
say "building $TAG from $BASE (src-hash ${SRC_HASH:0:12})..."
t0=$SECONDS
build_log="$WORK/build.log"
# --network none: the build needs nothing from outside (the point of the offline base),
# and so does not depend on the engine's default bridge either.
if ! docker build -q --network none \
        --build-arg "BASE=$BASE" \
        --build-arg "SRC_HASH=$SRC_HASH" \
        -t "$TAG" -f docker/Dockerfile . >"$build_log" 2>&1; then
    cat "$build_log" >&2
    die 1 "docker build of $TAG failed (output above). Fix docker/Dockerfile or peer/ and rerun (--force rebuilds regardless of the source hash)."
fi
id="$(docker image inspect --format '{{.Id}}' "$TAG")"
size="$(docker image inspect --format '{{.Size}}' "$TAG")"
say "built $TAG in $((SECONDS - t0)) s: id ${id#sha256:} size $((size / 1000000)) MB (base $BASE)"
