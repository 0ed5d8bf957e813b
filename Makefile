# The README's two commands: `make run` and `make test`. Both build .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# `make run PORT=9000` picks the listener's port. WEBHOOK_LISTEN, when set, is the listener's address
# as for any `run`; only a PORT given explicitly (command line or environment) replaces it.
PORT ?= 8085
LISTEN_FLAG := $(if $(and $(WEBHOOK_LISTEN),$(filter file,$(origin PORT))),,--listen 127.0.0.1:$(PORT))

.PHONY: run test lint typecheck unit clean crd bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/webhook-service run \
		--receivers examples/receivers \
		--state .webhook-state \
		$(LISTEN_FLAG) \
		--cattle-url sandbox \
		--sandbox-seed examples/sandbox-seed.yaml \
		--print-urls

# crds/receivers.yaml is generated from the drivers (tests/test_crd.py fails when it is stale).
crd: $(STAMP)
	$(BIN)/webhook-service crd > crds/receivers.yaml

lint: $(STAMP)
	$(BIN)/ruff check controller tests bench
	$(BIN)/ruff format --check controller tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest -q -p no:cacheprovider -n 2

# Run by hand, never by `make test` or .ci/run: minutes of load that wants the machine to itself.
# Needs wrk (`apt-get install wrk`). `make bench BENCH_FLAGS=--quick` for a smoke run.
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_FLAGS)

clean:
	rm -rf $(VENV) .webhook-state .mypy_cache .ruff_cache
