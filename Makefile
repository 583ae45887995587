# Two commands set up a fresh machine:
#   make run   - the app + its workers on the embedded default (SQLite, filesystem broker), demo data and logins
#   make test  - installs what the tests need and runs the whole suite
#                (PostgreSQL + Redis when DATABASE_URL and CELERY_BROKER_URL are set)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install run test test-fast browser-deps lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: where the CPU wheel is on disk this avoids gigabytes of CUDA packages.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	rm -f $(VENV)/.installed-*; touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput -v 0
	$(PY) manage.py load_demo
	$(PY) manage.py runapp

# Chromium and CJK fonts for the browser tests, from Debian's packages, only when missing.
browser-deps:
	@if ! command -v chromium >/dev/null 2>&1 || ! fc-list 2>/dev/null | grep -qi "Noto Sans CJK"; then \
		echo "installing chromium and fonts-noto-cjk"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium fonts-noto-cjk >/dev/null; \
	fi

test: install browser-deps
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -m "not browser and not worker" $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .

# The CPU benchmarks, one after another (PostgreSQL and Redis on localhost; see docs/benchmarks.md).
# On a GPU machine: python bench/bench_gpu_batching.py (torch + transformers only).
bench: install
	$(PY) bench/bench_import.py --postgres
	$(PY) bench/bench_runs.py
	$(PY) bench/bench_scoring.py
	$(PY) bench/bench_analysis.py

clean:
	rm -rf var/broker var/test
