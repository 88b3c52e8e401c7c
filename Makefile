# Every target creates .venv on first use and installs what it needs, idempotently, from
# package registries only (PyPI). Nothing is downloaded from a model or dataset hub.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml scripts/setup.sh constraints.txt | cksum | cut -d' ' -f1)

.PHONY: setup demo test test-all bench clean

$(STAMP): pyproject.toml scripts/setup.sh constraints.txt
	PY=$(PY) bash scripts/setup.sh $(VENV)
	@rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP)

# Main job: meta-train the bundled quickstart config, evaluate before/after, export.
demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/quickstart.py

# Two pytest workers (pytest-xdist), each test file on one worker so module fixtures run
# once: the suite is mostly XLA compiles, which use one core each.
TEST_WORKERS ?= 2
test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -m "not slow" -q -n $(TEST_WORKERS) --dist loadfile --durations=25

test-all: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) runs .pytest_cache
