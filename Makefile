# The README's two commands: `make demo` and `make test`. Both create .venv and install first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo check test test-fast lab bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[app,notebooks,test]"
	touch $(STAMP)

install: $(STAMP)

# Main job: the app on the bundled offline encoder with a real sample clip preloaded.
demo: install
	$(PY) -m app

# The architecture and lint checks: the import-layer contracts (pyproject [tool.importlinter]), ruff, mypy.
check: install
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# The checks, then every test (slow, browser and notebook ones included; those needing absent system
# packages skip with a reason).
test: check
	$(PY) -m pytest

test-fast: check
	$(PY) -m pytest -m "not slow and not browser and not notebooks"

lab: install
	$(VENV)/bin/jupyter lab notebooks/

bench: install
	$(PY) benchmarks/encode.py

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
