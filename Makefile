# Two commands do everything on a fresh machine: `make run` and `make test`.
# Both create .venv and install portbell into it (editable) when needed.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test bench mutation man clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "portbell needs Python 3.11 or newer; set PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/portbell $(ARGS)

test: $(STAMP)
	@bash tests/desktop/setup.sh $(PY)
	@bash tests/consumers/setup.sh $(PY)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) bench/run.py $(BENCH_ARGS)

# Mutation testing of the core (bench/mutate.py, about 7 minutes on 2 cores); not part of `make test`.
mutation: $(STAMP)
	$(PY) bench/mutate.py $(MUTATION_ARGS)

man: $(STAMP)
	$(PY) -m portbell.daemon.cli._manual docs/portbell.1

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
