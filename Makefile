# One task runner; CI runs `make test` (through .ci/run). See docs/development.md.
#   make demo PORT=8010                   the demo on another port (default 8000); needs no root
#   make test ARGS="-k scheduler"         pytest arguments for every run
#   make test VENVS=.venv DBS=sqlite      narrow the matrix (also STAGES=, JOBS=)

SHELL := /bin/bash
ARGS ?=
PORT ?= 8000

.PHONY: demo test bootstrap lint docs docs-serve clean bench chaos

demo:
	PORT=$(PORT) scripts/demo.sh

test:
	scripts/test.sh $(ARGS)

bootstrap:
	scripts/bootstrap.sh

bench: bootstrap
	.venv/bin/python benchmarks/bench.py $(ARGS)

chaos: bootstrap
	PYTHONPATH=.:testproject .venv/bin/python -m tests.chaos $(ARGS)

lint:
	STAGES=lint scripts/test.sh

# the documentation site (docs/, mkdocs.yml) into build/site, warnings as errors: what CI runs
docs:
	STAGES=docs VENVS=.venv scripts/test.sh

docs-serve: bootstrap
	.venv/bin/python -m mkdocs serve --dev-addr 127.0.0.1:8001

clean:
	rm -rf .venv .venv-dj52 .venv-demo build .pytest_cache .ruff_cache .mypy_cache .import_linter_cache .hypothesis *.egg-info
	rm -f testproject/db.sqlite3 testproject/db.sqlite3-* testproject/test.sqlite3 testproject/test.sqlite3-*
	find . -name __pycache__ -type d -not -path './.git/*' -prune -exec rm -rf {} +
