# The two set-up commands of the README: `make demo` and `make test`.
# Both create .venv and install what they need (CPU PyTorch first, pinned).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_TIME ?= 3m

.PHONY: demo test install clean format docs docs-serve

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test,serve]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/lstmgen train python-docs --out runs/demo --max-time $(DEMO_TIME) --overwrite
	$(BIN)/lstmgen generate runs/demo --prime "The " --length 600 --temperature 0.8 --seed 1

# Style, architecture and the manual first (seconds), then the tests.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict
	$(BIN)/python -m pytest -n auto

# The manual (docs/, mkdocs.yml): built into site/, or served at http://127.0.0.1:8000.
# Not --quiet: with --quiet, mkdocs 1.6 hides the warnings that --strict should fail on.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) runs build src/*.egg-info
