# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# KServe's client lives in a virtualenv of its own (constraints-kserve.txt says why).
KSERVE_STAMP := $(VENV)/kserve/.installed

CHROMIUM ?= /usr/bin/chromium
KUBECTL ?= /usr/bin/kubectl

.PHONY: install browser kubectl run test lint bench bench-speed bench-gpu bench-scale clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

$(KSERVE_STAMP): constraints-kserve.txt $(STAMP)
	test -x $(VENV)/kserve/bin/python || $(PYTHON) -m venv $(VENV)/kserve
	$(VENV)/kserve/bin/python -m pip install --quiet --disable-pip-version-check -c constraints-kserve.txt kserve
	touch $(KSERVE_STAMP)

install: $(STAMP) $(KSERVE_STAMP)

## Debian's headless Chromium, which the dashboard's browser test drives. Installed with
## apt-get when missing and we are root; otherwise a clear error (the test never skips).
browser:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium for the dashboard test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "make: $(CHROMIUM) is missing; the dashboard test needs it:" \
	      "run 'apt-get install chromium' as root (or set CHROMIUM=/path/to/chromium)" >&2; \
	    exit 1; \
	  fi; }
	@test -x $(CHROMIUM) || { echo "make: $(CHROMIUM) is still missing after apt-get" >&2; exit 1; }

## kubectl, whose built-in kustomize (v5) renders deploy/k8s in the tests. It is part of
## this machine image (Google Cloud CLI's kubectl package, /usr/bin/kubectl), which CI
## shares; no registry reachable here has a recent one (Debian's kubernetes-client is
## 1.20, whose kustomize v2 cannot read the overlays). Elsewhere: install kubectl >= 1.27
## from the Kubernetes project and pass KUBECTL=/path/to/kubectl. A missing one fails
## the test; it never skips.
kubectl:
	@test -x $(KUBECTL) || { \
	  echo "make: $(KUBECTL) is missing; the Kubernetes manifests test renders deploy/k8s" \
	    "with it: install kubectl >= 1.27 (it carries kustomize v5) and pass" \
	    "KUBECTL=/path/to/kubectl" >&2; exit 1; }
	@$(KUBECTL) kustomize --help >/dev/null 2>&1 || { \
	  echo "make: $(KUBECTL) has no kustomize; kubectl >= 1.27 is needed" >&2; exit 1; }

## Start the all-in-one service (API + worker + upkeep) on 127.0.0.1:8000. It needs the
## service's own virtualenv only: KServe's client is for the tests.
run: $(STAMP)
	$(BIN)/trainserve up $(ARGS)

## Run every test: ML core, API, migrations, and the integration tests
## (embedded SQLite broker, and PostgreSQL + Redis on this machine).
test: install browser kubectl
	$(BIN)/ruff check service workers migrations tests bench client
	TRAINSERVE_CHROMIUM=$(CHROMIUM) TRAINSERVE_KUBECTL=$(KUBECTL) $(BIN)/pytest $(PYTEST_ARGS)

## Benchmarks (not part of the tests): default hyperparameters vs scikit-learn.
bench: install
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,bench]'
	$(BIN)/python bench/accuracy.py

## Speed benchmarks (not part of the tests): training vs a raw torch loop, predict vs a
## Flask floor (needs wrk, installed from Debian's packages when missing), PostgreSQL + Redis.
bench-speed: install
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,bench]'
	command -v wrk >/dev/null || apt-get install -y wrk || (apt-get update && apt-get install -y wrk)
	$(BIN)/python bench/train.py
	$(BIN)/python bench/predict.py

## GPU against CPU training throughput (not part of the tests; without CUDA it measures
## the CPU and says so).
bench-gpu: install
	$(BIN)/python bench/gpu.py $(ARGS)

## Tables of 1M, 5M and 20M rows through upload, training and batch predict, embedded
## and on PostgreSQL + Redis (about 5 GB of disk for the 20M-row CSV and its copies).
bench-scale: install
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,bench]'
	$(BIN)/python bench/scale.py $(ARGS)

## schemathesis against a live `trainserve api`, longer than the run in `make test`.
fuzz: install
	TRAINSERVE_FUZZ_EXAMPLES=50 TRAINSERVE_FUZZ_SECONDS=900 TRAINSERVE_FUZZ_STATEFUL_SECONDS=600 $(BIN)/pytest tests/integration/test_schemathesis.py -s

lint: install
	$(BIN)/ruff check service workers migrations tests bench client

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
