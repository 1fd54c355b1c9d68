# Quickstart: `make demo` runs the main job on embedded defaults, `make test` runs the test suite.
# Each creates .venv and installs the project the first time.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test typecheck install clean

# Where the task suites and released policies lived before they moved to envs/ and policies/
# (issue 19). A checkout updated past the move keeps these folders holding stale __pycache__
# only, and Python would import such a folder as an empty namespace package in place of the
# moved files: the bytecode and then the empty folders go (anything else there stays).
OLD_DATA_DIRS := metalearn/suites metalearn/policies/released

$(STAMP): pyproject.toml setup.py constraints.txt
	find $(OLD_DATA_DIRS) -name __pycache__ -type d -prune -exec rm -rf {} + 2>/dev/null || true
	find $(OLD_DATA_DIRS) -depth -type d -empty -delete 2>/dev/null || true
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
# baal (for tests/test_integrations_baal.py) declares a hard dependency on jupyter, which its heuristics,
# loop and datasets never import: install it without dependencies. What it imports at run
# time (structlog<23, torchmetrics; numpy, scipy, scikit-learn, torch, tqdm, matplotlib,
# Pillow) comes with the dev extra above.
	$(BIN)/python -m pip install --quiet -c constraints.txt --no-deps "baal==2.1.0"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/metalearn demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# mypy over the package, configured in pyproject.toml [tool.mypy].
typecheck: $(STAMP)
	$(BIN)/python -m mypy

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache
