# quayhook — every workflow a developer or CI needs. Run `make help` for the list.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
CARGO  ?= cargo
# Where local services of `make demo` keep their state and logs (outside the crate dir, so
# `cargo lambda watch` never sees files change under it).
RUN_DIR ?= $(abspath target/run)

PURE_MODULES := token quay urls constraint warehouse select index config

.PHONY: help
help: ## List targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 12

$(VENV)/.installed: tools/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tools/requirements.txt
	touch $@

.PHONY: venv
venv: $(VENV)/.installed ## Python venv with moto_server and cargo-lambda (from PyPI)

.PHONY: build
build: ## Release build of the x86_64 binary (target/release/quayhook)
	$(CARGO) build --release --locked

.PHONY: test
test: venv ## All tests: unit, property, integration (moto + local API server), events, e2e against the local API server
	$(CARGO) test --locked --all-targets --no-fail-fast
	$(CARGO) test --locked --doc

.PHONY: lint
lint: ## rustfmt check, clippy -D warnings, and the pure-core import rule
	$(CARGO) fmt --all --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	@for m in $(PURE_MODULES); do \
	  if grep -nE '^\s*use (tokio|aws_|kube|k8s_openapi|lambda_http|hyper)' src/$$m.rs; then \
	    echo "src/$$m.rs is a pure module: no I/O crates"; exit 1; fi; done
	@echo "pure modules import no I/O crates"

.PHONY: fmt
fmt: ## Format the code
	$(CARGO) fmt --all

.PHONY: demo
demo: venv ## Run the whole flow locally: moto + local API server + quayhook serve, post a recorded push
	RUN_DIR=$(RUN_DIR) VENV=$(VENV) CARGO=$(CARGO) tools/demo.sh

.PHONY: clean
clean: ## Remove build outputs and the venvs
	$(CARGO) clean
	rm -rf $(VENV) .venv-sam .aws-sam
