# Two commands for a newcomer: `make demo` and `make test`. Both run `setup` first.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.setup-stamp
PYTEST ?= $(PY) -m pytest

.PHONY: setup test test-unit demo demo-analytics bench lint clean arm arm-runnable

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

# Spark SQL over two parties' encrypted datasets, each query approved by the owners of its data (root).
demo-analytics: setup
	bash examples/analytics/run.sh $(if $(VARIANT),--variant $(VARIANT))

bench: setup
	$(PY) -m bench

# arm/: every example's ARM template, parameters and CCE policy, from the committed layer locks (arm/README.md).
arm: setup
	$(PY) -m sidecars.renderings.armdir

# Makes the committed files runnable here: builds the sidecar and app images, pins the examples' specs to
# the built digests, locks the images' layers and re-renders arm/ and docker-compose.yml.
EXAMPLES_WITH_SPEC := $(patsubst examples/%/spec.yaml,%,$(wildcard examples/*/spec.yaml))
# An example's app image is images/<example>/, except the analytics example's, the ccr-analytics app.
example_image = $(if $(filter analytics,$(1)),ccr-analytics,$(1))
arm-runnable: setup
	$(PY) -m sidecars images build --sidecars
	$(foreach example,$(EXAMPLES_WITH_SPEC),$(PY) -m sidecars images build $(call example_image,$(example)) \
	  --pin examples/$(example)/spec.yaml && ) true
	$(PY) -m sidecars.renderings.armdir --refresh-layers
	$(PY) -m sidecars spec render compose examples/cleanroomhello-job/spec.yaml -o docker-compose.yml

lint: setup
	$(VENV)/bin/ruff check sidecars tests bench

clean:
	rm -rf $(VENV) node_modules .pytest_cache
