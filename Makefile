# Two commands do all the set-up: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORPUS ?= corpus

.PHONY: run test eval bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Re-install whenever pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(VENV)/.installed $@

run: $(VENV)/.installed
	$(BIN)/python -m bot console --corpus $(CORPUS)

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q
	$(BIN)/python -m bot eval --safety --quiet

eval: $(VENV)/.installed-dev
	$(BIN)/python -m bot eval
	$(BIN)/python -m bot eval --safety

bench: $(VENV)/.installed-dev
	$(BIN)/python -m bot bench

clean:
	rm -rf $(VENV) .pytest_cache
