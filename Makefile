# The project's commands. `make serve` and `make test` are the two a new user needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# COUNTER_PORT, the service's own setting, is honoured; PORT=... is the short form.
PORT ?= $(or $(COUNTER_PORT),8000)
# onnxruntime reports usage telemetry (a device id and a database under ~/.cache/Microsoft/)
# unless this is set: off for everything make starts, as in the image and the manifests.
export ORT_DISABLE_TELEMETRY := 1

.PHONY: serve test lint types check train explain bench peers peers-env clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Serving needs no torch: the core dependencies only.
$(VENV)/.serve: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# Tests need the train and dev extras; constraints.txt pins the CPU build of torch.
$(VENV)/.dev: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[train,dev]' -c constraints.txt
	touch $@ $(VENV)/.serve

serve: $(VENV)/.serve  ## install and serve the shipped model on http://127.0.0.1:$(PORT)
	COUNTER_PORT=$(PORT) $(BIN)/python -m app

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint  ## install everything the tests need, lint, type-check and run every test
	$(BIN)/python -m pytest

# The fast loop, in a virtualenv of its own that never has torch (the core dependencies and the
# dev extra): lint, types of every file that needs no torch (tests/torch_stack.py tells which),
# and, on every core with a coverage summary, every test that needs neither torch, a browser, a
# container engine, a Ray cluster nor a real server process (those wait on real deadlines and
# alone take minutes; CHECK_MARKS='not torch and not browser and not docker and not ray' adds
# them). `make test` runs all of it again, and the rest.
CHECK_VENV ?= .venv-check
CHECK_BIN := $(CHECK_VENV)/bin
CHECK_MARKS ?= not torch and not browser and not docker and not ray and not slow and not server

$(CHECK_BIN)/python:
	$(PYTHON) -m venv $(CHECK_VENV)
	$(CHECK_BIN)/python -m pip install --quiet --upgrade pip

$(CHECK_VENV)/.installed: pyproject.toml | $(CHECK_BIN)/python
	$(CHECK_BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# mypy --strict over every file that needs no torch (`make lint` checks all of them, with torch).
types: $(CHECK_VENV)/.installed  ## mypy --strict on the files that need no torch, in the check virtualenv
	$(CHECK_BIN)/mypy --cache-dir $(CHECK_VENV)/.mypy_cache $$($(CHECK_BIN)/python -m tests.torch_stack)

check: $(CHECK_VENV)/.installed  ## ruff, mypy and the tests that need no torch, browser, container or server, without torch
	@$(CHECK_BIN)/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is not None)" \
		|| { echo "$(CHECK_VENV) has torch, and make check must run without it: rm -rf $(CHECK_VENV)"; exit 1; }
	$(CHECK_BIN)/ruff check .
	$(CHECK_BIN)/ruff format --check .
	@$(MAKE) --no-print-directory types
	$(CHECK_BIN)/python -m pytest -n auto -m "$(CHECK_MARKS)" --durations=10 \
		--cov=app --cov=core --cov-report=term:skip-covered

# Retrains each shipped model from its card into $(TRAIN_OUT) and says, per model, "same bytes"
# or how it differs. models/ is overwritten only when asked: `make train SHIP=1`.
TRAIN_OUT ?= build/models
SHIPPED := counter counter-post
train: $(VENV)/.dev  ## retrain both shipped models into build/models/ and compare (SHIP=1 replaces models/)
	@status=0; for name in $(SHIPPED); do \
		$(BIN)/python -m training retrain models/$$name --out $(TRAIN_OUT)/$$name || status=1; \
	done; \
	if [ "$(SHIP)" = 1 ]; then \
		for name in $(SHIPPED); do cp $(TRAIN_OUT)/$$name.* models/; done; \
		echo "copied $(TRAIN_OUT)/ into models/ (SHIP=1)"; \
		$(BIN)/python -m training explain models/counter models/counter-post --write || status=1; \
	fi; exit $$status

# Why the carry lasts or fades (docs/why-the-carry-fails.md): the shipped models' figures and
# card `dynamics`, then the seed table in docs/reproduction.md (seeds trained into
# $(EXPLAIN_WORK) and reused; delete it to retrain them, e.g. after the optimizer changes).
EXPLAIN_WORK ?= /tmp/explain-seeds
explain: $(VENV)/.dev  ## regenerate every figure and table of docs/why-the-carry-fails.md
	$(BIN)/python -m training explain models/counter models/counter-post --write --doc docs/why-the-carry-fails.md
	$(BIN)/python -m training explain-seeds --work $(EXPLAIN_WORK) --seeds 10 --rows post-rnn robust-rnn post-gru:3 --out docs/reproduction.md

bench: $(VENV)/.dev  ## every benchmark docs/benchmarks.md quotes (about 25 minutes; a quiet machine)
	$(BIN)/python -m bench.training
	$(BIN)/python -m bench.engine
	$(BIN)/python -m bench.http
	$(BIN)/python -m bench.load
	$(BIN)/python -m bench.exhaustive
	$(BIN)/python -m bench.tanh_error
	$(BIN)/python -m bench.reproducibility --out docs/reproducibility.md

# bench/peers.py's peers, MLServer 1.7 and KServe 0.21, each in a virtualenv of its own under
# $(PEERS_VENVS) (never the project's), with the same onnxruntime and numpy as ours;
# constraints.txt holds any torch to the project's pin. Triton's perf_analyzer has one too.
PEERS_VENVS ?= .bench
PEERS_ARGS ?=

$(PEERS_VENVS)/%/.installed: bench/peers/%.txt constraints.txt | $(VENV)/.serve
	rm -rf $(PEERS_VENVS)/$*
	$(PYTHON) -m venv $(PEERS_VENVS)/$*
	$(PEERS_VENVS)/$*/bin/python -m pip install --quiet --upgrade pip
	$(PEERS_VENVS)/$*/bin/python -m pip install --quiet -r $< -c constraints.txt \
		"onnxruntime==$$($(BIN)/python -c 'import onnxruntime; print(onnxruntime.__version__)')" \
		"numpy==$$($(BIN)/python -c 'import numpy; print(numpy.__version__)')"
	touch $@

# Triton's perf_analyzer (bench/peers/perf_analyzer.txt says why this version and what it needs).
$(PEERS_VENVS)/perf_analyzer/.installed: bench/peers/perf_analyzer.txt
	dpkg -s libb64-0d >/dev/null 2>&1 || apt-get install -y libb64-0d
	rm -rf $(PEERS_VENVS)/perf_analyzer
	$(PYTHON) -m venv $(PEERS_VENVS)/perf_analyzer
	$(PEERS_VENVS)/perf_analyzer/bin/python -m pip install --quiet --upgrade pip
	$(PEERS_VENVS)/perf_analyzer/bin/python -m pip install --quiet -r $<
	touch $@

peers-env: $(PEERS_VENVS)/mlserver/.installed $(PEERS_VENVS)/kserve/.installed $(PEERS_VENVS)/perf_analyzer/.installed  ## build the peers' virtualenvs

peers: $(VENV)/.serve peers-env  ## ours against MLServer and KServe, V2 infer by wrk and perf_analyzer (PEERS_ARGS='--rounds 5 --duration 10')
	$(BIN)/python -m bench.peers $(PEERS_ARGS)

clean:
	rm -rf $(VENV) $(CHECK_VENV) $(PEERS_VENVS) .mypy_cache .ruff_cache .pytest_cache .hypothesis
