//! quayhook: Kargo's Quay.io webhook receiver as an AWS Lambda.
//!
//! Quay's "Push to Repository" notification POSTs to `{base}/quay/{token}`; quayhook checks the
//! token against receiver secrets, finds the Kargo `Warehouse`s subscribed to the pushed
//! repository, filters them by the pushed tags exactly as Kargo does, and merge-patches the
//! `kargo.akuity.io/refresh` annotation on each through the cluster API.
//!
//! # Layout
//! Modules in the order a request flows through them. Pure modules (no I/O) first:
//! - [`token`]: receiver path hash, constant-time token verification, redacting secrets.
//! - [`quay`]: body-size check, push payload decoding with Go semantics, test notifications.
//! - [`urls`]: image and chart URL normalization (go-containerregistry weak parsing).
//! - [`constraint`]: Masterminds semver versions and constraints.
//! - [`warehouse`]: the Warehouse model and the refresh annotation.
//! - [`select`]: per-subscription tag filters with Kargo's strategies and Go regexes.
//! - [`index`]: repository URL → Warehouses, and the refresh plan for one push.
//! - [`config`]: every environment variable, parsed and validated.
//!
//! The shell (I/O, behind traits so the core runs without a network):
//! - [`secrets`]: receiver secrets and the kubeconfig (AWS Secrets Manager or files).
//! - [`cluster`]: list and merge-patch Warehouses through `kube`.
//! - [`retry`]: the request's time budget and bounded retries.
//! - [`state`]: caches that live across warm invocations.
//! - [`handler`]: one delivery, request to response; the one status mapping.
//! - [`serve`]: the same handler as a plain HTTP server.
//! - [`telemetry`]: logging setup.
//! - [`cli`] and [`check`]: the `quayhook` command line and its operator checks.

#![deny(missing_docs)]

pub mod config;
pub mod constraint;
pub mod index;
pub mod quay;
pub mod select;
pub mod token;
pub mod urls;
pub mod warehouse;

pub mod check;
pub mod cli;
pub mod cluster;
pub mod handler;
pub mod retry;
pub mod secrets;
pub mod serve;
pub mod state;
pub mod telemetry;
