# `make demo` and `make test` do their own set-up on a fresh machine: a .venv, the package, the extras.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip -q --disable-pip-version-check
PYTEST_ARGS ?=

.PHONY: demo test bench lint clean

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install --upgrade pip

# Stamps record which extras are installed, so a second `make` starts at once.
$(VENV)/.demo-deps: pyproject.toml | $(PY)
	$(PIP) install -e ".[progress,sklearn]"
	touch $@

# torch is optional: the comparison tests skip without it, so a failed install must not fail the build.
$(VENV)/.test-deps: pyproject.toml | $(PY)
	$(PIP) install -e ".[dev,plot,sklearn,cuda]"
	$(PIP) install "torch==2.13.0" || echo "torch not installed: the torch comparison tests will skip"
	touch $@

demo: $(VENV)/.demo-deps
	$(VENV)/bin/fastbp demo

test: $(VENV)/.test-deps
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.test-deps
	$(PY) -m pytest bench --benchmark-only
	$(PY) bench/peers.py

lint: $(VENV)/.test-deps
	$(VENV)/bin/ruff check fastbp tests bench examples
	$(VENV)/bin/ruff format --check fastbp tests bench examples

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks
	find . -name __pycache__ -prune -exec rm -rf {} +
