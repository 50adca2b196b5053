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

.PHONY: check
check: $(QUAYHOOK_CLI) ## quayhook check with the function's secrets: secrets, kubeconfig, API server, RBAC, subscriptions
	$(QUAYHOOK_CLI) check

.PHONY: logs
logs: sam-venv ## Follow the function's logs (one JSON event per delivery)
	$(SAM) logs --stack-name $(STACK) --name QuayFunction --tail
