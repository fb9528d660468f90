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

# pytest on two workers (most tests wait on sockets and subprocesses; the slowest are listed) while the notebooks'
# own tests run beside it on one more; both must pass, and the notebooks' output is shown after pytest's.
test: install /usr/bin/chromium
	@$(BIN)/nbdev-test --n-workers 1 > .nbdev-test.log 2>&1 & nb=$$!; \
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=25 tests; py=$$?; \
	wait $$nb; nbrc=$$?; echo "nbdev-test (the notebooks' tests):"; tail -n 20 .nbdev-test.log; \
	test $$py -eq 0 -a $$nbrc -eq 0

export: install
	$(BIN)/nbdev-export && $(BIN)/nbdev-clean
