# Node image of the multi-host harness (testbed/multihost.py): Debian bookworm's own Docker
# engine (docker.io 20.10) in a privileged container, one per swarm node.
# Built by docker/build-node-image.sh from the offline base p2p-node-base:bookworm
# (mmdebstrap with docker.io and iptables: no registry needed) with --network none.
ARG BASE=p2p-node-base:bookworm
FROM ${BASE}
COPY docker/node-entrypoint.sh /usr/local/bin/p2p-node-entrypoint
VOLUME /var/lib/docker
ENTRYPOINT ["/usr/local/bin/p2p-node-entrypoint"]
ARG SRC_HASH=unknown
LABEL p2p.image=node \
      p2p.src-hash=${SRC_HASH}
