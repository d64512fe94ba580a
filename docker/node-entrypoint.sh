#!/bin/sh
# Entry point of the multi-host harness's node image (p2p-node): one Docker engine per node
# container, run by testbed/multihost.py (not privileged, see below). Its data root is a Docker volume
# (ext4 on the host), so the nested engine can use overlay2: overlayfs cannot stack on
# overlayfs/fuse-overlayfs, but an ext4 volume is a plain directory to it.
set -eu
# The node is not --privileged: this machine's engine lacks CAP_SYS_RESOURCE, and runc then
# refuses a privileged container ("unable to apply caps"). It runs with every other
# capability instead, so /proc/sys and the cgroup hierarchies come read-only. The nested
# engine creates cgroups for its containers and sets network sysctls (ip_forward, ...): make
# the cgroup hierarchies and /proc/sys/net writable. /proc/sys/net holds only the node's own
# network namespace's settings; the rest of /proc/sys (the host's kernel) stays read-only.
# (remount,bind: the read-only flag is the bind mount's own.)
for d in $(awk '$5 ~ "^/sys/fs/cgroup" {print $5}' /proc/self/mountinfo); do
    mount -o remount,bind,rw "$d" 2>/dev/null || true
done
mount --bind /proc/sys/net /proc/sys/net && mount -o remount,bind,rw /proc/sys/net
# The host reaches this engine through a socket on a bind-mounted host directory
# (P2P_NODE_SOCKET_DIR): no TCP port, nothing unauthenticated on any network.
set -- --host=unix:///var/run/docker.sock
if [ -n "${P2P_NODE_SOCKET_DIR:-}" ]; then
    set -- "$@" --host="unix://${P2P_NODE_SOCKET_DIR}/docker.sock"
fi
exec dockerd "$@" \
    --storage-driver="${P2P_NODE_STORAGE_DRIVER:-overlay2}" \
    --data-root=/var/lib/docker \
    --log-level=warn
