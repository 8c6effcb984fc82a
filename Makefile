# avaforge — every entry point a user or CI needs. `make install` is implied by the others.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export YOLO_OFFLINE := 1

.PHONY: install test lint format relock clean

install:  ## create .venv with everything pinned (apt ffmpeg, torch, mm stack, pipeline packages)
	@bash scripts/install.sh

test: install  ## lint + the whole test suite (what .ci/run calls)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

relock:  ## re-resolve requirements/{base,nodeps}.txt and rewrite requirements/lock.txt
	@bash scripts/install.sh --relock

clean:
	rm -rf .pytest_cache .ruff_cache build *.egg-info
