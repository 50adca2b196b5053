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
lint: ## rustfmt check, clippy -D warnings, the pure core's dependency closure (cargo metadata), checkov on template.yaml
	$(CARGO) fmt --all --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings
	$(PYTHON) tools/purity.py
	$(MAKE) checkov

.PHONY: fmt
fmt: ## Format the code
	$(CARGO) fmt --all

.PHONY: demo
demo: venv ## Run the whole flow locally: moto + local API server + quayhook serve, post a recorded push
	RUN_DIR=$(RUN_DIR) VENV=$(VENV) CARGO=$(CARGO) tools/demo.sh

.PHONY: demo-outage
demo-outage: venv ## The durable path locally: cluster API down -> 202 queued; back up -> the worker refreshes
	$(CARGO) run --quiet --locked --example outage-demo

.PHONY: clean
clean: ## Remove build outputs and the venvs
	$(CARGO) clean
	rm -rf $(VENV) .venv-sam .venv-checkov .aws-sam

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
sam-lint: sam-venv ## sam validate and --lint (cfn-lint, warnings fail) on template.yaml and its variants (SAM_VARIANTS), offline
	$(SAM_OFFLINE) $(VENV_SAM)/bin/sam validate --template template.yaml
	$(SAM_OFFLINE) $(VENV_SAM)/bin/sam validate --lint --template template.yaml
	$(SAM_OFFLINE) $(VENV_SAM)/bin/cfn-lint --parameters DurablePath=Disabled -- template.yaml
	@# sam validate takes no parameter values: each variant is a copy whose parameters
	@# default to other values (tools/sam/local-template.py variant), so SAM's transform and
	@# cfn-lint check the template as CloudFormation would resolve it with those values.
	mkdir -p $(RUN_DIR)
	$(foreach v,$(SAM_VARIANTS),$(VENV_SAM)/bin/python tools/sam/local-template.py variant template.yaml \
	  $(RUN_DIR)/template-$(v).yaml $(SAM_VARIANT_$(v)) && \
	  $(SAM_OFFLINE) $(VENV_SAM)/bin/sam validate --template $(RUN_DIR)/template-$(v).yaml && \
	  $(SAM_OFFLINE) $(VENV_SAM)/bin/sam validate --lint --template $(RUN_DIR)/template-$(v).yaml && ) true

# The variants sam-lint (and checkov) also check. Placeholder ARNs and ids: nothing is deployed.
SAM_VARIANTS := durable-disabled all-on all-on-direct eks-endpoint
FAKE_ACCOUNT := 123456789012
FAKE_CERT := arn:aws:acm:us-east-1:$(FAKE_ACCOUNT):certificate/00000000-0000-0000-0000-000000000000
FAKE_KEY := arn:aws:kms:us-east-1:$(FAKE_ACCOUNT):key/00000000-0000-0000-0000-000000000000
# No queue, DLQ, worker, queue alarms or QUAYHOOK_QUEUE_URL.
SAM_VARIANT_durable-disabled := DurablePath=Disabled
# Every option on, durable path included: keyless EKS (eks:DescribeCluster), ECR events
# through the queue, custom domain, tracing, VPC, KMS (secrets and log groups), extra
# secrets, an alarm topic.
SAM_VARIANT_all-on := DurablePath=Enabled EksClusterName=prod-1 'EcrProjects=*' \
  EcrRepositoryPrefixes=team-a/,team-b/ DomainName=hooks.example.com CertificateArn=$(FAKE_CERT) \
  Tracing=Active KmsKeyArn=$(FAKE_KEY) EncryptLogGroups=true ReceiverSecretIds=quayhook/r1 \
  'ExtraSecretArns=arn:aws:secretsmanager:us-east-1:$(FAKE_ACCOUNT):secret:other/receiver-*' \
  SubnetIds=subnet-0123456789abcdef0,subnet-0123456789abcdef1 SecurityGroupIds=sg-0123456789abcdef0 \
  AlarmTopicArn=arn:aws:sns:us-east-1:$(FAKE_ACCOUNT):alerts
# The other branches: durable path off, so ECR events go straight to the function (retry
# policy, DLQ, permission, on-failure destination); the kubeconfig secret's resource policy.
SAM_VARIANT_all-on-direct := DurablePath=Disabled EcrProjects=kargo-demo,other KmsKeyArn=$(FAKE_KEY) \
  AdminPrincipalArns=arn:aws:iam::$(FAKE_ACCOUNT):role/admin,arn:aws:iam::$(FAKE_ACCOUNT):role/deployer \
  Tracing=Active DomainName=hooks.example.com CertificateArn=$(FAKE_CERT) DeploymentType=AllAtOnce \
  ReservedConcurrency=none
# Keyless EKS with endpoint and CA (no eks:DescribeCluster), receivers by id only.
SAM_VARIANT_eks-endpoint := EksClusterName=prod-1 EksEndpoint=https://ABC.gr7.us-east-1.eks.amazonaws.com \
  EksCaData=Zm9v ReceiverSecretPrefix= ReceiverSecretIds=quayhook/r1,quayhook/r2

# ---- checkov: policy checks on the template (its own venv: its pins are not the SAM CLI's) ----
VENV_CHECKOV := .venv-checkov
# Checks that do not apply anywhere in this template (the README lists why); checks that do
# not apply to one resource are skipped in that resource's Metadata instead.
#   CKV_AWS_27   SQS encryption: only recognizes KmsMasterKeyId; the queues use SSE-SQS.
#   CKV_AWS_116  Lambda DLQ: the webhook is invoked synchronously, the worker by SQS (the
#                queue's redrive policy is its DLQ); ECR's asynchronous path has an on-failure
#                destination.
#   CKV_AWS_173  Environment encryption with a customer key: the variables hold no secret
#                (names, ids, URLs); Lambda encrypts them at rest anyway.
CHECKOV_SKIP := CKV_AWS_27,CKV_AWS_116,CKV_AWS_173

$(VENV_CHECKOV)/.installed: tools/requirements-checkov.txt
	$(PYTHON) -m venv $(VENV_CHECKOV)
	$(VENV_CHECKOV)/bin/pip install --quiet --disable-pip-version-check -r tools/requirements-checkov.txt
	touch $@

.PHONY: checkov
checkov: $(VENV_CHECKOV)/.installed sam-venv ## checkov on template.yaml and its all-on variants (offline, skip list in the Makefile)
	mkdir -p $(RUN_DIR)
	$(foreach v,all-on all-on-direct,$(VENV_SAM)/bin/python tools/sam/local-template.py variant template.yaml \
	  $(RUN_DIR)/template-$(v).yaml $(SAM_VARIANT_$(v)) && ) true
	@# --skip-download: no call to Prisma Cloud for guidelines (offline, and nothing to send).
	$(VENV_CHECKOV)/bin/checkov --quiet --compact --skip-download --framework cloudformation \
	  --skip-check $(CHECKOV_SKIP) -f template.yaml \
	  -f $(RUN_DIR)/template-all-on.yaml -f $(RUN_DIR)/template-all-on-direct.yaml

.PHONY: sam-build
sam-build: venv sam-venv ## sam build for ARCH=arm64 (default) or x86_64: .aws-sam/build/QuayFunction/bootstrap
	ARCH=$(ARCH) VENV=$(VENV) VENV_SAM=$(VENV_SAM) tools/sam/build.sh

.PHONY: base-image
base-image: ## Local image quayhook-provided-al2023:local for sam local invoke, from this host's files (no registry)
	RUN_DIR=$(RUN_DIR) tools/sam/base-image.sh

.PHONY: invoke
invoke: venv sam-venv ## sam local invoke with EVENT (default events/push.json; an SQS event goes to WorkerFunction) against moto + a local API server
	RUN_DIR=$(RUN_DIR) VENV=$(VENV) VENV_SAM=$(VENV_SAM) CARGO=$(CARGO) tools/sam/invoke.sh --build $(BUILD) $(EVENT)

# The worker's event is an SQS batch: =0 means it must report no batchItemFailures. An
# EventBridge event (ECR push, "source": "aws.ecr") goes to QuayFunction; its =EXPECT is the
# response's result (done, ignored; done:N also checks how many Warehouses it refreshed)
# or "error" (tools/sam/invoke.sh). The local env-vars file turns ECR events on for
# kargo-demo and the repository prefix kargo-demo/ (tools/sam/local-template.py env-vars);
# the worker also decodes an ECR event queued by the rule (sqs-ecr-push.json).
INVOKE_CHECK_EVENTS := events/push.json=200 events/unknown-token.json=404 events/sqs-refresh.json=0 \
  events/ecr-push-tagged.json=done events/ecr-push-untagged.json=done \
  events/ecr-push-failed.json=ignored events/ecr-push-out-of-scope.json=ignored \
  events/sqs-ecr-push.json=0

.PHONY: invoke-check
invoke-check: venv sam-venv ## sam local invoke: push.json 200, unknown-token.json 404, ECR push events, worker on SQS batches no failures (debug build)
	RUN_DIR=$(RUN_DIR) VENV=$(VENV) VENV_SAM=$(VENV_SAM) CARGO=$(CARGO) tools/sam/invoke.sh --build host \
	  $(INVOKE_CHECK_EVENTS)

include tools/ops.mk
include tools/bench.mk
