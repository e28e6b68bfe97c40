# Two commands for everything: `make pipeline` and `make test`. Both create .venv when missing,
# with the exact versions pinned in requirements.lock, and rebuild it when the interpreter or the
# lock changes. Choose the interpreter with PYTHON=, e.g. `make pipeline PYTHON=python3.12`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# which interpreter builds the venv: version and real path ("" if PYTHON does not run)
PY_ID  := $(shell $(PYTHON) -c 'import os, sys; print("%d.%d.%d" % sys.version_info[:3], os.path.realpath(sys.executable))' 2>/dev/null)
PY_VERSION := $(word 1,$(PY_ID))

.PHONY: pipeline test reproduce-check venv clean-venv lock check-python FORCE
MODE ?= auto

venv: $(STAMP)

# Refuse an interpreter older than 3.11 at once, before any download (pandas 3 and the pinned
# numpy need 3.11; an older pip fails only after minutes, with a resolver message about pandas).
check-python:
	@if [ -z "$(PY_ID)" ]; then \
	  echo "error: '$(PYTHON)' does not run. Install Python 3.11 to 3.13 and choose it: make $(MAKECMDGOALS) PYTHON=python3.12" >&2; exit 1; fi
	@$(PYTHON) -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))' || { \
	  echo "error: '$(PYTHON)' is Python $(PY_VERSION); birdplane needs Python 3.11 to 3.13. Choose another: make $(or $(MAKECMDGOALS),venv) PYTHON=python3.12" >&2; exit 1; }

# The interpreter the venv was built with; a different one (another PYTHON=, an upgraded Python)
# starts the venv afresh, so .venv never mixes two interpreters.
$(VENV)/.interpreter: check-python FORCE
	@if [ "$$(cat $@ 2>/dev/null)" != "$(PY_ID)" ]; then \
	  if [ -e $(VENV) ]; then echo "$(VENV) was built with another interpreter ($$(cat $@ 2>/dev/null || echo unknown)): rebuilding it with $(PY_ID)"; fi; \
	  rm -rf $(VENV); mkdir -p $(VENV); echo "$(PY_ID)" > $@; fi

# A changed lock (or pyproject.toml) rebuilds the venv from scratch too: pip would leave packages
# that the new lock no longer lists.
$(STAMP): $(VENV)/.interpreter pyproject.toml requirements.lock
	@if [ -e $(BIN)/python ] && [ -e $@ ]; then echo "requirements.lock or pyproject.toml changed: rebuilding $(VENV)"; \
	  id="$$(cat $(VENV)/.interpreter)"; rm -rf $(VENV); mkdir -p $(VENV); echo "$$id" > $(VENV)/.interpreter; fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==26.3"
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

# params.yaml is checked first: DVC reads it with a YAML parser of its own, without our limits;
# the README's results block is rendered last, from the metrics the run made
pipeline: $(STAMP)
	@$(BIN)/python -m birdplane.config params.yaml
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro
	@$(BIN)/python -m birdplane.report.readme   # the README's results, from the metrics just made

test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest $(PYTEST_ARGS)

# re-run the pipeline and compare with the committed results: exact where pinned numerics allow it,
# else statistical (MODE=exact or MODE=statistical to choose; docs/reproducing.md)
reproduce-check: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m birdplane.reproduce --rerun --mode $(MODE)

# regenerate requirements.lock from pyproject.toml (universal: every platform and Python it supports)
lock: $(STAMP)
	$(BIN)/python tools/lock.py

clean-venv:
	rm -rf $(VENV)

FORCE:
