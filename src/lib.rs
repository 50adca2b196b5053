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
//! Modules in the order a delivery flows through them; each module's `//!` says whether it
//! does I/O.
//! - [`config`]: every environment variable, parsed and validated once (pure).
//! - [`lambda`]: the Lambda edge: the invocation read without lambda_http's adapter (API
//!   Gateway, SQS or EventBridge), dispatched by the function's handler, answered in kind; a 400,
//!   never a panic.
//! - [`serve`]: the same handler as a plain HTTP server, bounded at every stage.
//! - [`handler`]: one Quay delivery, from the request head (route, method, token, length) to
//!   the answer; the one status mapping.
//! - [`receivers`]: the receiver tokens, cached: single-flight fetches, stamped attempts,
//!   stale-while-revalidate.
//! - [`secrets`]: receiver secrets and the kubeconfig (AWS Secrets Manager or files).
//! - [`eks`]: keyless EKS access: a kubeconfig made with a token presigned from the function's
//!   IAM credentials (the token is pure; credentials and DescribeCluster are I/O).
//! - [`state`]: what lives across warm invocations: receivers, the cluster client, the
//!   per-scope Warehouse indexes.
//! - [`cluster`]: list and merge-patch Warehouses through `kube`, over HTTP/2.
//! - [`retry`]: the request's time budget and bounded retries.
//! - [`refresh`]: the plan and the bounded concurrent patches, shared by every front.
//! - [`outcome`]: what a delivery did, and the bounded echo of it in answers and logs (pure).
//! - [`ecr`]: ECR push events from EventBridge, scoped and planned like a Quay push.
//! - The durable path, when a queue is configured: [`message`] (the versioned queue message,
//!   pure), [`queue`] (the queue trait and its Amazon SQS implementation) and [`worker`] (an
//!   SQS batch in, its partial batch response out).
//! - [`metrics`]: one CloudWatch embedded-metric-format record per delivery.
//! - [`telemetry`]: logging setup; the runtime's raw-event TRACE lines are never written.
//! - [`cause`]: underlying errors kept as `#[source]`, and their one-line rendering (pure).
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
