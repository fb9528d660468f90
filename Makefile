# ats — two commands do everything on a fresh machine with Python 3.11+:
#   make run    install, initialise and start ats on embedded defaults
#   make test   install and run every test (pytest + the notebooks)
SHELL := /bin/bash
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install export clean-state help

help:
	@echo "make run    install and start ats (paper gateway, runner, dashboard) on embedded defaults"
	@echo "make test   install and run all tests"

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: Python 3.11 or newer is required (python3 --version)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -U pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# Browser tests drive Debian's Chromium; install it once if it is missing (needs root or sudo).
/usr/bin/chromium:
	@if command -v apt-get >/dev/null; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; \
	else echo "warning: no apt-get; install Chromium yourself for the browser tests"; fi

run: install
	$(BIN)/ats init
	$(BIN)/ats check
	$(BIN)/ats up

test: install /usr/bin/chromium
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=25 tests    # two workers: most tests wait on sockets and subprocesses; the slowest listed
	$(BIN)/nbdev-test --n-workers 2

export: install
	$(BIN)/nbdev-export && $(BIN)/nbdev-clean
