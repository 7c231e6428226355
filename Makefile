# The two set-up commands of the README: `make demo` and `make test`.
# Both create .venv and install what they need (CPU PyTorch first, pinned).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_TIME ?= 3m

.PHONY: demo test install clean format

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test,serve]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/lstmgen train python-docs --out runs/demo --max-time $(DEMO_TIME) --overwrite
	$(BIN)/lstmgen generate runs/demo --prime "The " --length 600 --temperature 0.8 --seed 1

# Style and architecture first (seconds), then the tests.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) runs build src/*.egg-info
