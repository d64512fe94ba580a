# shellcheck shell=bash
# Sourced by docker/build-image.sh (the peer's offline base) and docker/build-node-image.sh
# (the multi-host harness's node image): bootstrap a Debian bookworm image without any
# container registry, as `mmdebstrap --variant=minbase --include=PACKAGES bookworm - | docker import`.
#
# The caller defines say() and die() and a scratch directory $WORK; then:
#   debian_bootstrap TAG PACKAGES CHECK_CMD [docker import -c CHANGE]...
# PACKAGES is a comma-separated --include list; CHECK_CMD is run (with sh -c, --network none)
# in the new image before it is tagged TAG: a base that cannot run it is never kept.

debian_bootstrap() {
    local tag="$1" packages="$2" check="$3"; shift 3
    local changes=() c
    for c in "$@"; do changes+=(-c "$c"); done
    if ! command -v mmdebstrap >/dev/null 2>&1; then
        if [[ $EUID -eq 0 ]]; then
            say "installing mmdebstrap (apt-get, once)..."
            if ! { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q mmdebstrap; } >"$WORK/apt.log" 2>&1; then
                tail -n 20 "$WORK/apt.log" >&2
                die 2 "could not install mmdebstrap with apt-get (log above); install it by hand: apt-get update && apt-get install -y mmdebstrap"
            fi
        else
            die 2 "no registry is reachable, so the offline image $tag must be bootstrapped, which needs mmdebstrap. Install it with:
    sudo apt-get update && sudo apt-get install -y mmdebstrap
then run this script again (or run it with sudo)."
        fi
    fi
    local tmp_tag="${tag%%:*}:bootstrap-$$"
    say "bootstrapping $tag with mmdebstrap (--include=$packages; once)..."
    local t0=$SECONDS log="$WORK/mmdebstrap.log"
    if ! mmdebstrap --quiet --variant=minbase --include="$packages" bookworm - 2>"$log" \
            | docker import "${changes[@]}" - "$tmp_tag" >/dev/null; then
        tail -n 20 "$log" >&2 || true
        docker image rm "$tmp_tag" >/dev/null 2>&1 || true
        local hint=""
        [[ $EUID -eq 0 ]] || hint=$'\n  (as non-root, mmdebstrap needs unprivileged user namespaces; if they are off, run once with sudo)'
        die 1 "bootstrapping $tag failed (mmdebstrap | docker import, log above). Check that the Debian mirror (deb.debian.org) is reachable and that the Docker daemon has disk space, then rerun.$hint"
    fi
    if ! docker run --rm --network none --entrypoint sh "$tmp_tag" -c "$check" >/dev/null 2>&1; then
        docker image rm "$tmp_tag" >/dev/null 2>&1 || true
        die 1 "the bootstrapped $tag fails its check ($check); rerun with a reachable Debian mirror"
    fi
    docker tag "$tmp_tag" "$tag"
    docker image rm "$tmp_tag" >/dev/null
    say "bootstrapped $tag in $((SECONDS - t0)) s"
}
