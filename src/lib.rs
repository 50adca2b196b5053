//! quayhook: Kargo's Quay.io webhook receiver as an AWS Lambda.
//!
//! Quay's "Push to Repository" notification POSTs to `{base}/quay/{token}`; quayhook checks the
//! token against receiver secrets, finds the Kargo `Warehouse`s subscribed to the pushed
//! repository, filters them by the pushed tags exactly as Kargo does, and merge-patches the
//! `kargo.akuity.io/refresh` annotation on each through the cluster API.
//!
//! Kargo's semantics (token hash, payload, URL normalization, semver, Warehouse model,
//! selection, index and plan) live in the pure crate [`kargo_match`]; this crate is the shell
//! around it.
//!
//! # Layout
//! Modules in the order a request flows through them:
//! - [`config`]: every environment variable, parsed and validated (pure).
//!
//! - [`cause`]: underlying errors kept as `#[source]`, and their one-line rendering (pure).
//!
//! The I/O shell, behind traits so the core runs without a network:
//! - [`secrets`]: receiver secrets and the kubeconfig (AWS Secrets Manager or files).
//! - [`eks`]: keyless EKS access: the kubeconfig made with a token presigned from the
//!   function's IAM credentials (the token is pure; credentials and DescribeCluster are I/O).
//! - [`receivers`]: the receiver tokens, cached: single-flight fetches, stamped attempts,
//!   stale-while-revalidate.
//! - [`cluster`]: list and merge-patch Warehouses through `kube`.
//! - [`retry`]: the request's time budget and bounded retries.
//! - [`state`]: caches that live across warm invocations.
//! - [`handler`]: one delivery, request to response; the one status mapping.
//! - [`refresh`]: the plan and the bounded concurrent patches, shared by handler and worker.
//! - [`outcome`]: what a delivery did, and the bounded echo of it in answers and logs (pure).
//!
//! The durable path, when a queue is configured: what the cluster cannot take in time is
//! queued and answered 202, and a worker (the same binary, SQS-triggered) finishes it:
//! - [`message`]: the versioned queue message (pure).
//! - [`queue`]: the queue trait and its Amazon SQS implementation.
//! - [`worker`]: an SQS batch in, its partial batch response out.
//!
//! ECR pushes, from EventBridge rather than a webhook, through the same index and refresh:
//! - [`ecr`]: an "ECR Image Action" event read and scoped (pure), then refreshed, queued or
//!   retried.
//!
//! - [`lambda`]: the Lambda edge: API Gateway, SQS or EventBridge event in, its response out;
//!   400, never a panic.
//! - [`serve`]: the same handler as a plain HTTP server.
//! - [`telemetry`]: logging setup.
//! - [`metrics`]: one CloudWatch embedded-metric-format record per delivery (the record is
//!   built purely, then written to stdout).
//! - [`cli`] and [`check`]: the `quayhook` command line and its operator checks.

#![deny(missing_docs)]

pub mod cause;
pub mod config;

pub mod check;
pub mod cli;
pub mod cluster;
pub mod ecr;
pub mod eks;
pub mod handler;
pub mod lambda;
pub mod message;
pub mod metrics;
pub mod outcome;
pub mod queue;
pub mod receivers;
pub mod refresh;
pub mod retry;
pub mod secrets;
pub mod serve;
pub mod state;
pub mod telemetry;
pub mod worker;
