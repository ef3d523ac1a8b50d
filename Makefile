# The two Quick-start commands: `make run` and `make test`. Both create .venv if missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LS_VENV ?= $(HOME)/.cache/florence-ui-ls-venv
HOST ?= 127.0.0.1
PORT ?= 7860
MODEL ?= base
ARGS ?=

.PHONY: run test test-dtypes lint audit venv deps browser labelstudio bench space clean

$(STAMP): pyproject.toml requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: on CPU-only machines a looser spec pulls GBs of CUDA wheels
	$(BIN)/python -m pip install -q torch==2.13.0 || $(BIN)/python -m pip install -q torch
	$(BIN)/python -m pip install -q -r requirements.txt -r requirements-dev.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

# Debian chromium for the browser tests (never `playwright install`).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium; }

# Label Studio lives in its own virtualenv: it pins packages that clash with ours.
labelstudio:
	@test -x $(LS_VENV)/bin/label-studio || { $(PY) -m venv $(LS_VENV) && $(LS_VENV)/bin/python -m pip install -q --upgrade pip && $(LS_VENV)/bin/python -m pip install -q 'label-studio>=1.20'; }

run: $(STAMP) labelstudio
	FLORENCE_UI_LS_VENV=$(LS_VENV) $(BIN)/python app.py --model $(MODEL) --host $(HOST) --port $(PORT) $(ARGS)

test: $(STAMP) browser labelstudio
	FLORENCE_UI_LS_VENV=$(LS_VENV) $(BIN)/python -m pytest $(ARGS)

# The whole suite with dtype auto resolving both ways, whatever this CPU is (what CI runs).
test-dtypes: $(STAMP) browser labelstudio
	FLORENCE_UI_CPU_BF16=1 $(MAKE) test
	FLORENCE_UI_CPU_BF16=0 $(MAKE) test

# ruff (style, and SLF001: no reaching into another module's private names) and import-linter (the layer
# contracts in pyproject.toml: nothing imports upward, core stays pure, no cycles). CI runs it.
lint: $(STAMP)
	$(BIN)/ruff check florence_ui tests app.py benchmarks spaces tools
	$(BIN)/ruff format --check florence_ui tests app.py benchmarks spaces tools
	$(BIN)/lint-imports

# Known advisories vs installed versions and requirement minimums, plus pip-audit (security/ holds the policy).
audit: $(STAMP)
	$(BIN)/python tools/audit_deps.py

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py --quick --json bench.json --markdown bench.md --plot bench.png $(ARGS)

space: $(STAMP)
	$(BIN)/python spaces/build_space.py

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts spaces/build
