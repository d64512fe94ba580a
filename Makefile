# p2p topology testbed. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
N ?= 5
BACKEND ?= auto
P2P := $(VENV)/bin/p2p
PY := $(VENV)/bin/python
# Set-up is skipped when nothing it depends on changed.
STAMP := $(VENV)/.installed
# Does a Docker engine answer? Bounded: a wedged daemon must not hang make.
ENGINE_ANSWERS := timeout 30 docker info >/dev/null 2>&1

.PHONY: help setup image compose-plugin run-cycle run-mesh run-starfish run_circle run_mesh run_starfish \
        compose-cycle compose-mesh compose-starfish analyse analyze test test-unit test-multihost lint bench clean \
        rust-peer rust-peer-image rust-peer-test

help:
	@echo "make run-mesh [N=5] [BACKEND=auto|local|compose]   set up, build the image, run, analyse"
	@echo "make run-cycle | run-starfish                       same for the other families"
	@echo "make compose-mesh [N=5] && docker compose up        render compose/mesh-N.yml, run it with plain Compose"
	@echo "make analyse                                        stats + plots for runs/latest"
	@echo "make test                                           all tests (containers too when Docker answers)"
	@echo "make test-unit                                      tests that need no Docker"
	@echo "make test-multihost                                 swarm across 3 docker-in-docker nodes (~18 min here)"
	@echo "make lint                                           ruff (also run by make test)"
	@echo "make bench [BENCH_ARGS='--compose-sizes 50,200']     benchmarks (prints figures; default sizes take ~45 min)"
	@echo "make rust-peer | rust-peer-image | rust-peer-test  the Rust peer: binary (cargo), image p2p-peer-rs:latest, cargo test"
	@echo "make clean                                          remove every container/network/volume labelled p2p.run"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

setup: $(STAMP) compose-plugin

# The Docker targets are no-ops (with a notice) on a machine without a Docker engine.
compose-plugin: $(STAMP)
	@if $(ENGINE_ANSWERS); then docker/ensure-compose.sh $(PY); \
	 else echo "no Docker engine answers: skipping the compose plugin"; fi

image: setup
	@if $(ENGINE_ANSWERS); then docker/build-image.sh; \
	 else echo "no Docker engine answers: skipping the peer image (runs use the local backend)"; fi

run-cycle run-mesh run-starfish: run-%: image
	$(P2P) run --backend $(BACKEND) --topology $* -n $(N)

# The original tool's spellings.
run_circle: run-cycle
run_mesh: run-mesh
run_starfish: run-starfish

compose-cycle compose-mesh compose-starfish: compose-%: image
	$(P2P) render --topology $* -n $(N)

analyse analyze: $(STAMP)
	$(P2P) analyse runs/latest

# pytest exits 5 when it collected no test: that must not pass as green.
test: setup lint
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	 if [ $$rc -eq 5 ]; then echo "make test: pytest ran no tests" >&2; exit 1; fi; exit $$rc

# ruff, configured in pyproject.toml (pyflakes, imports, bugbear, pyupgrade, complexity <= 15).
lint: $(STAMP)
	$(PY) -m ruff check .

test-unit: $(STAMP)
	@$(PY) -m pytest -m "not docker" $(PYTEST_ARGS); rc=$$?; \
	 if [ $$rc -eq 5 ]; then echo "make test-unit: pytest ran no tests" >&2; exit 1; fi; exit $$rc

# The whole multi-host suite (tests/testbed/test_multihost.py; make test runs only its small
# variant): a swarm of docker-in-docker nodes on this machine, docs/backends.md "Several hosts".
# -m docker overrides the default -m 'not multihost' of pyproject.toml.
test-multihost: image
	@$(PY) -m pytest tests/testbed/test_multihost.py -m docker $(PYTEST_ARGS); rc=$$?; \
	 if [ $$rc -eq 5 ]; then echo "make test-multihost: pytest ran no tests" >&2; exit 1; fi; exit $$rc

BENCH_ARGS ?=
bench: image
	$(PY) bench/run.py $(BENCH_ARGS)
	$(MAKE) test-multihost

clean: $(STAMP)
	$(P2P) clean

# The independent Rust peer (rust-peer/README.md). Needs cargo; no crates are fetched.
CARGO ?= cargo
rust-peer:
	cd rust-peer && $(CARGO) build --release --locked
	@echo "built rust-peer/target/release/p2p-peer-rs"

rust-peer-test:
	cd rust-peer && $(CARGO) test --locked

rust-peer-image:
	@if $(ENGINE_ANSWERS); then rust-peer/build-image.sh; \
	 else echo "no Docker engine answers: skipping the Rust peer image"; fi
