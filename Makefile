# Two commands for a newcomer: `make demo` and `make test`. Both run `setup` first.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.setup-stamp
PYTEST ?= $(PY) -m pytest

.PHONY: setup test test-unit demo bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh $(wildcard package.json)
	bash scripts/setup.sh
	touch $@

test: setup
	$(PYTEST) tests

test-unit: setup
	$(PYTEST) tests/unit

demo: setup
	bash examples/cleanroomhello-job/run.sh

bench: setup
	$(PY) -m bench

lint: setup
	$(VENV)/bin/ruff check sidecars tests bench

clean:
	rm -rf $(VENV) node_modules .pytest_cache
