#!/usr/bin/env bash
# Build the Rust peer image (default tag p2p-peer-rs:latest) without any registry:
# the binary is compiled on the host with cargo (static, glibc target) and copied
# into a FROM-scratch image by `docker build --network none`.
# Idempotent: skips the build when the image already carries the current source
# hash (label p2p.src-hash) unless --force is given.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: rust-peer/build-image.sh [--tag p2p-peer-rs:latest] [--force]

Build the Rust peer image from rust-peer/Dockerfile.

  --tag TAG   image tag to build (default p2p-peer-rs:latest)
  --force     rebuild even if the image is up to date
  -h, --help  show this help

Steps: cargo build --release --locked with -C target-feature=+crt-static for
x86_64-unknown-linux-gnu (a static binary: the image needs no libc), then
docker build --network none of a context holding only that binary. The image
carries the labels p2p.image=peer-rs and p2p.src-hash=<sha256 of the sources>.

Needs: cargo (https://rustup.rs; crates.io is not needed, the peer has no
dependencies), the docker CLI and a running daemon.

Exit codes: 0 ok / up to date, 1 failure, 2 missing prerequisite, 64 bad usage.
USAGE
}

TAG="p2p-peer-rs:latest"
FORCE=0
TARGET="x86_64-unknown-linux-gnu"

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
    printf 'build-image-rs: error: %s\n' "$*" >&2
    exit "$code"
}
say() { printf 'build-image-rs: %s\n' "$*"; }

CRATE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$CRATE_DIR"

command -v cargo >/dev/null 2>&1 \
    || die 2 "cargo is not installed (install Rust with https://rustup.rs, then rerun)"
command -v docker >/dev/null 2>&1 \
    || die 2 "the docker CLI is not installed (install Docker Engine: https://docs.docker.com/engine/install/)"
timeout 60 docker info >/dev/null 2>&1 \
    || die 2 "cannot talk to the Docker daemon (is it running, and may this user use it?)"
[[ "$(uname -m)" == x86_64 ]] \
    || die 2 "this script builds for $TARGET only; this machine is $(uname -m)"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }
image_label() {  # image_label IMAGE LABEL -> value or empty
    docker image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}

# --- source hash: sha256 over (path, sha256) of the sources, the lock file, the Dockerfile
src_hash() {
    {
        find src -type f -name '*.rs' -print0 | LC_ALL=C sort -z
        printf '%s\0' Cargo.toml Cargo.lock Dockerfile
    } | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
}
SRC_HASH="$(src_hash)"
[[ ${#SRC_HASH} -eq 64 ]] || die 1 "could not compute the source hash (sha256sum/find/xargs missing?)"

if [[ $FORCE -eq 0 ]] && image_exists "$TAG" && [[ "$(image_label "$TAG" p2p.src-hash)" == "$SRC_HASH" ]]; then
    say "$TAG is up to date"
    exit 0
fi

# --- the static binary (its own target dir: the dynamic host build stays in target/release)
say "cargo build (static, $TARGET)..."
t0=$SECONDS
build_log="$WORK/cargo.log"
if ! RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --offline \
        --target "$TARGET" >"$build_log" 2>&1; then
    cat "$build_log" >&2
    die 1 "cargo build failed (output above)"
fi
BIN="target/$TARGET/release/p2p-peer-rs"
[[ -x "$BIN" ]] || die 1 "cargo did not produce $BIN"
# A dynamic binary would start in scratch only to fail on a missing loader: refuse it here.
if LC_ALL=C readelf -l "$BIN" 2>/dev/null | grep -q 'INTERP'; then
    die 1 "$BIN is dynamically linked (has a program interpreter); the scratch image needs a static binary"
fi
say "built $BIN in $((SECONDS - t0)) s: $(stat -c %s "$BIN") bytes"

# --- the image
cp "$BIN" Dockerfile "$WORK/"
say "building $TAG (FROM scratch, src-hash ${SRC_HASH:0:12})..."
t0=$SECONDS
if ! docker build -q --network none --build-arg "SRC_HASH=$SRC_HASH" -t "$TAG" "$WORK" >"$WORK/build.log" 2>&1; then
    cat "$WORK/build.log" >&2
    die 1 "docker build of $TAG failed (output above)"
fi
if ! docker run --rm --network none --label p2p.run=build-image-rs "$TAG" --help >/dev/null 2>"$WORK/smoke.log"; then
    cat "$WORK/smoke.log" >&2
    die 1 "$TAG does not start (\`--help\` failed, output above)"
fi
id="$(docker image inspect --format '{{.Id}}' "$TAG")"
size="$(docker image inspect --format '{{.Size}}' "$TAG")"
say "built $TAG in $((SECONDS - t0)) s: id ${id#sha256:} size $size bytes"
