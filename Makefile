# pushdock: `make run` sets everything up and serves; `make test` sets up and runs the whole suite;
# `make install` sets up and installs `pushdock serve` as a systemd service (docs/install.md).
SHELL := /bin/bash
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

UV := .uv/bin/uv
export UV_PYTHON_DOWNLOADS := never

.PHONY: setup run install uninstall test test-fast lint lock bench clean

setup:
	./scripts/setup.sh

run: setup
	$(VENV)/bin/pushdock serve

install: setup
	$(VENV)/bin/pushdock service:install

uninstall:
	$(VENV)/bin/pushdock service:uninstall

test: setup
	$(UV) lock --check --quiet  # fails when pyproject.toml and uv.lock disagree (refresh: make lock)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-logo  # the layers contract in pyproject.toml: plugins -> hooks -> pushdock, plugins independent
	$(VENV)/bin/mypy  # strict for every package (pyproject.toml)
	$(VENV)/bin/pytest -q -n 3 --dist loadscope -m "not zero_downtime and not multinode" --durations=15  # three workers, a module per worker
	$(VENV)/bin/pytest -q -m "zero_downtime and not multinode" --durations=10  # alone: these count failed requests under load
	$(VENV)/bin/pytest -q -m multinode --durations=10  # alone: a second engine joins the host's swarm (~2 min)
	$(VENV)/bin/pytest -q --engine-restart  # alone: these tests restart the Docker engine

test-fast: setup
	$(VENV)/bin/pytest -q tests/unit

# Re-resolve every Python dependency to its newest allowed version and rewrite uv.lock (then commit it).
lock: setup
	$(UV) lock --upgrade --python python3
	$(UV) sync --frozen --extra dev --python python3

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-logo
	$(VENV)/bin/mypy

bench: setup
	for b in bench/push_to_live.py bench/builds.py bench/zero_downtime.py bench/proxy_switch.py bench/proxy.py bench/stable_switch.py bench/swarm.py bench/receive_memory.py bench/services.py; do \
	  [ ! -f $$b ] || $(VENV)/bin/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .uv .pytest_cache
