# Two commands do all the set-up: `make run` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
HASH := $(shell sha1sum pyproject.toml | cut -c1-12)
RUN_STAMP := $(VENV)/.run-$(HASH)
DEV_STAMP := $(VENV)/.dev-$(HASH)

.PHONY: run test lint bench install install-dev test-services train clean

$(VENV)/bin/python:
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(RUN_STAMP): pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q -e .
	touch $@

$(DEV_STAMP): pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q -e ".[dev]"
	touch $@ $(RUN_STAMP)

install: $(RUN_STAMP)
install-dev: $(DEV_STAMP)

## make run: install, migrate, import the example customers, serve on config.yaml
run: $(RUN_STAMP)
	$(VENV)/bin/intake db upgrade
	$(VENV)/bin/intake customers import examples/customers.yaml
	exec $(VENV)/bin/intake serve

## make test: install what the tests need (venv, Debian packages, services) and run them
test: $(DEV_STAMP) test-services
	$(PY) -m pytest -q -p no:cacheprovider

test-services:
	bash scripts/test-services.sh

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy intake classifier

bench: $(DEV_STAMP) test-services
	$(PY) -m bench.classifier
	$(PY) -m bench.run
	$(PY) -m bench.queue
	$(PY) -m bench.search
	$(PY) -m bench.znuny

## make train: retrain the shipped model from classifier/data/corpus
train: $(DEV_STAMP)
	$(PY) -m classifier.train

clean:
	rm -rf var build *.egg-info
