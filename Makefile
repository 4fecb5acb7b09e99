# pushdock: `make run` sets everything up and serves; `make test` sets up and runs the whole suite.
SHELL := /bin/bash
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup run test test-fast lint bench clean

setup:
	./scripts/setup.sh

run: setup
	$(VENV)/bin/pushdock serve

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q
	$(VENV)/bin/pytest -q --engine-restart  # alone: these tests restart the Docker engine

test-fast: setup
	$(VENV)/bin/pytest -q tests/unit

lint:
	$(VENV)/bin/ruff check .

bench: setup
	for b in bench/push_to_live.py bench/builds.py bench/zero_downtime.py bench/proxy.py bench/swarm.py bench/receive_memory.py; do \
	  [ ! -f $$b ] || $(VENV)/bin/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
