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

.PHONY: help
help: ## List targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "%-14s %s\n", $$1, $$2}'

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
	$(CARGO) test --locked --workspace --all-targets --no-fail-fast
	$(CARGO) test --locked --workspace --doc
	$(MAKE) sam-lint
	$(MAKE) invoke-check

.PHONY: lint
lint: ## rustfmt check, clippy -D warnings, and the pure core's dependency closure (cargo metadata)
	$(CARGO) fmt --all --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings
	$(PYTHON) tools/purity.py

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

# ---- AWS SAM: template checks, builds, and `sam local invoke` on this machine -----------------
VENV_SAM := .venv-sam
# `sam validate` needs a region (not the network); fake credentials keep it offline.
SAM_OFFLINE := AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x SAM_CLI_TELEMETRY=0
ARCH  ?= arm64
EVENT ?= events/push.json
BUILD ?= sam

$(VENV_SAM)/.installed: tools/requirements-sam.txt
	$(PYTHON) -m venv $(VENV_SAM)
	$(VENV_SAM)/bin/pip install --quiet --disable-pip-version-check -r tools/requirements-sam.txt
	touch $@

.PHONY: sam-venv
sam-venv: $(VENV_SAM)/.installed ## Python venv with the SAM CLI and cfn-lint (.venv-sam, PyPI)

.PHONY: sam-lint
sam-lint: sam-venv ## sam validate and --lint (cfn-lint, warnings fail) on template.yaml, and with DurablePath=Disabled, offline
	$(SAM_OFFLINE) $(VENV_SAM)/bin/sam validate --template template.yaml
	$(SAM_OFFLINE) $(VENV_SAM)/bin/sam validate --lint --template template.yaml
	@# sam validate takes no parameter values: the variant is a copy whose DurablePath
	@# defaults to Disabled (no queue, DLQ, worker, alarms or QUAYHOOK_QUEUE_URL), and cfn-lint
	@# also resolves the template with that value.
	mkdir -p $(RUN_DIR)
	$(VENV_SAM)/bin/python tools/sam/local-template.py variant template.yaml \
	  $(RUN_DIR)/template-durable-disabled.yaml DurablePath=Disabled
	$(SAM_OFFLINE) $(VENV_SAM)/bin/sam validate --template $(RUN_DIR)/template-durable-disabled.yaml
	$(SAM_OFFLINE) $(VENV_SAM)/bin/sam validate --lint --template $(RUN_DIR)/template-durable-disabled.yaml
	$(SAM_OFFLINE) $(VENV_SAM)/bin/cfn-lint --parameters DurablePath=Disabled -- template.yaml

.PHONY: sam-build
sam-build: venv sam-venv ## sam build for ARCH=arm64 (default) or x86_64: .aws-sam/build/QuayFunction/bootstrap
	ARCH=$(ARCH) VENV=$(VENV) VENV_SAM=$(VENV_SAM) tools/sam/build.sh

.PHONY: base-image
base-image: ## Local image quayhook-provided-al2023:local for sam local invoke, from this host's files (no registry)
	RUN_DIR=$(RUN_DIR) tools/sam/base-image.sh

.PHONY: invoke
invoke: venv sam-venv ## sam local invoke with EVENT (default events/push.json; an SQS event goes to WorkerFunction) against moto + a local API server
	RUN_DIR=$(RUN_DIR) VENV=$(VENV) VENV_SAM=$(VENV_SAM) CARGO=$(CARGO) tools/sam/invoke.sh --build $(BUILD) $(EVENT)

# The worker's event is an SQS batch: =0 means it must report no batchItemFailures.
INVOKE_CHECK_EVENTS := events/push.json=200 events/unknown-token.json=404 events/sqs-refresh.json=0

.PHONY: invoke-check
invoke-check: venv sam-venv ## sam local invoke: push.json 200, unknown-token.json 404, worker on sqs-refresh.json no failures (debug build)
	RUN_DIR=$(RUN_DIR) VENV=$(VENV) VENV_SAM=$(VENV_SAM) CARGO=$(CARGO) tools/sam/invoke.sh --build host \
	  $(INVOKE_CHECK_EVENTS)

include tools/ops.mk
include tools/bench.mk
