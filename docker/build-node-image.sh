#!/usr/bin/env bash
# Build the node image of the multi-host harness (default tag p2p-node:latest): Debian
# bookworm's Docker engine, for docker-in-docker swarm nodes (testbed/multihost.py).
#
# No registry needed: the base p2p-node-base:bookworm is bootstrapped once with mmdebstrap
# (docker/debian-bootstrap.sh, shared with the peer image's offline base), then
# docker/node.Dockerfile adds the entry point with --network none.
# Idempotent: skips the build when the image carries the current source hash (label p2p.src-hash).
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: docker/build-node-image.sh [--tag p2p-node:latest] [--force]

  --tag TAG   image tag to build (default p2p-node:latest)
  --force     rebuild even if the image is up to date (the base is kept)
  -h, --help  show this help

Exit codes: 0 ok / up to date, 1 failure, 2 missing prerequisite, 64 bad usage.
USAGE
}

TAG="p2p-node:latest"
FORCE=0
NODE_BASE="p2p-node-base:bookworm"
# docker.io pulls in containerd, runc, tini and iptables; the rest serves the entry point and debugging.
PACKAGES="docker.io,iptables,iproute2,procps,ca-certificates"

while [[ $# -gt 0 ]]; do
    case "$1" in
        --tag)
            [[ $# -ge 2 && -n "$2" ]] || { echo "error: --tag needs a value" >&2; usage >&2; exit 64; }
            TAG="$2"; shift 2 ;;
        --force) FORCE=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "error: unknown argument: $1" >&2; usage >&2; exit 64 ;;
    esac
done

die() { local code="$1"; shift; printf 'build-node-image: error: %s\n' "$*" >&2; exit "$code"; }
say() { printf 'build-node-image: %s\n' "$*"; }

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$SCRIPT_DIR/.."
command -v docker >/dev/null 2>&1 || die 2 "the docker CLI is not installed"
timeout 60 docker info >/dev/null 2>&1 || die 2 "cannot talk to the Docker daemon"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

SRC_HASH="$(printf '%s\n' "$PACKAGES" | cat - docker/node.Dockerfile docker/node-entrypoint.sh | sha256sum | cut -d' ' -f1)"
if [[ $FORCE -eq 0 ]] && image_exists "$TAG" \
        && [[ "$(docker image inspect --format '{{ index .Config.Labels "p2p.src-hash" }}' "$TAG")" == "$SRC_HASH" ]]; then
    say "$TAG is up to date"
    exit 0
fi

# shellcheck source=docker/debian-bootstrap.sh
source "$SCRIPT_DIR/debian-bootstrap.sh"
if ! image_exists "$NODE_BASE"; then
    debian_bootstrap "$NODE_BASE" "$PACKAGES" 'dockerd --version && iptables --version' \
        'LABEL p2p.image=node-base' 'ENV LANG=C.UTF-8'
fi

say "building $TAG from $NODE_BASE (src-hash ${SRC_HASH:0:12})..."
t0=$SECONDS
old="$(docker image inspect --format '{{.Id}}' "$TAG" 2>/dev/null || true)"
# A context of its own holding only the entry point: the repository stays out of the build.
mkdir -p "$WORK/ctx/docker"
cp docker/node-entrypoint.sh "$WORK/ctx/docker/"
if ! docker build -q --network none --build-arg "BASE=$NODE_BASE" --build-arg "SRC_HASH=$SRC_HASH" \
        -t "$TAG" -f docker/node.Dockerfile "$WORK/ctx" >"$WORK/build.log" 2>&1; then
    cat "$WORK/build.log" >&2
    die 1 "docker build of $TAG failed (output above)"
fi
size="$(docker image inspect --format '{{.Size}}' "$TAG")"
# The replaced image, untagged now, would only take disk space (kept if a container still uses it).
if [[ -n "$old" && "$old" != "$(docker image inspect --format '{{.Id}}' "$TAG")" ]]; then
    docker image rm "$old" >/dev/null 2>&1 || true
fi
say "built $TAG in $((SECONDS - t0)) s: size $((size / 1000000)) MB"
