# Operator targets against a deployed stack (included by the Makefile). They use your AWS
# credentials and region, like the AWS CLI; nothing here runs in `make test`.
STACK ?= quayhook
QUAYHOOK_RECEIVER_SECRET_PREFIX ?= quayhook/receivers/
QUAYHOOK_KUBECONFIG_SECRET_ID ?= quayhook/kubeconfig
export QUAYHOOK_RECEIVER_SECRET_PREFIX QUAYHOOK_KUBECONFIG_SECRET_ID
QUAYHOOK_CLI := target/release/quayhook
SAM := $(VENV_SAM)/bin/sam

$(QUAYHOOK_CLI): $(wildcard src/*.rs) Cargo.toml Cargo.lock
	$(CARGO) build --release --locked --bin quayhook

.PHONY: deploy
deploy: sam-build ## sam deploy (guided the first time, then with samconfig.toml), STACK=quayhook
	@if [ -f samconfig.toml ]; then $(SAM) deploy --stack-name $(STACK); \
	 else $(SAM) deploy --guided --stack-name $(STACK); fi

.PHONY: url
url: $(QUAYHOOK_CLI) sam-venv ## Print every receiver's URL for the deployed stack's API (Kargo's computation)
	@base=$$($(SAM) list stack-outputs --stack-name $(STACK) --output json | \
	  $(PYTHON) -c 'import json,sys; print(next(o["OutputValue"] for o in json.load(sys.stdin) if o["OutputKey"]=="ApiBaseUrl"))'); \
	 $(QUAYHOOK_CLI) url --base-url "$$base"

# The deployed stack's output $(1), or nothing when the stack has no such output (QueueUrl
# with DurablePath=Disabled).
stack_output = $(SAM) list stack-outputs --stack-name $(STACK) --output json | \
  $(PYTHON) -c 'import json,sys; print(next((o["OutputValue"] for o in json.load(sys.stdin) if o["OutputKey"]=="$(1)"), ""))'

.PHONY: check
check: $(QUAYHOOK_CLI) sam-venv ## quayhook check with the function's secrets: secrets, kubeconfig, API server, RBAC, subscriptions, the queue and DLQ
	@url=$${QUAYHOOK_QUEUE_URL:-$$( ($(call stack_output,QueueUrl)) || true)}; \
	 [ -n "$$url" ] || echo "check: no QueueUrl in stack $(STACK)'s outputs: checking without the durable path" >&2; \
	 QUAYHOOK_QUEUE_URL="$$url" $(QUAYHOOK_CLI) check

# `make redrive REDRIVE_ARGS=--dry-run` only shows the queues and the DLQ's depth;
# REDRIVE_ARGS=--status shows the last move task; add --max-per-second N to slow the move.
REDRIVE_ARGS ?= --wait

.PHONY: redrive
redrive: $(QUAYHOOK_CLI) sam-venv ## Move dead-lettered deliveries back to the queue (SQS StartMessageMoveTask) and follow the task
	@url=$${QUAYHOOK_QUEUE_URL:-$$($(call stack_output,QueueUrl))}; \
	 [ -n "$$url" ] || { echo "redrive: stack $(STACK) has no QueueUrl output (DurablePath=Disabled?)" >&2; exit 1; }; \
	 QUAYHOOK_QUEUE_URL="$$url" $(QUAYHOOK_CLI) redrive $(REDRIVE_ARGS)

.PHONY: logs
logs: sam-venv ## Follow the function's logs (one JSON event per delivery); FUNCTION=WorkerFunction for the worker's
	$(SAM) logs --stack-name $(STACK) --name $(or $(FUNCTION),QuayFunction) --tail
