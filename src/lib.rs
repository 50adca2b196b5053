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
//! - [`receivers`]: the receiver tokens, cached: single-flight fetches, stamped attempts,
//!   stale-while-revalidate.
//! - [`cluster`]: list and merge-patch Warehouses through `kube`.
//! - [`retry`]: the request's time budget and bounded retries.
//! - [`state`]: caches that live across warm invocations.
//! - [`handler`]: one delivery, request to response; the one status mapping.
//! - [`outcome`]: what a delivery did, and the bounded echo of it in answers and logs (pure).
//! - [`lambda`]: the Lambda edge: API Gateway event in, its response out; 400, never a panic.
//! - [`serve`]: the same handler as a plain HTTP server.
//! - [`telemetry`]: logging setup.
//! - [`cli`] and [`check`]: the `quayhook` command line and its operator checks.

#![deny(missing_docs)]

pub mod cause;
pub mod config;

pub mod check;
pub mod cli;
pub mod cluster;
pub mod handler;
pub mod lambda;
pub mod outcome;
pub mod receivers;
pub mod retry;
pub mod secrets;
pub mod serve;
pub mod state;
pub mod telemetry;
