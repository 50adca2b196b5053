//! quayhook's test kit: everything the integration, end-to-end and load suites, the examples,
//! the benchmark harness and the fuzz targets share, written once.
//!
//! Not published; used only as a dev-dependency (and by `fuzz/`). Unit tests inside quayhook's
//! `src/` cannot use it: they would see a second copy of the `quayhook` crate.
//!
//! # Layout
//! Always built (no I/O, so the fuzz crate takes them with `default-features = false`):
//! - [`fixtures`]: Warehouse objects as a chained builder (`wh(ns, name).image(…)`).
//! - [`events`]: API Gateway events and Quay push bodies.
//! - [`fakes`]: in-memory secret source, cluster and queue, scriptable and counted.
//! - [`merge_patch`]: RFC 7386, as the API server applies it (used by both clusters).
//!
//! Behind default features (I/O):
//! - [`apiserver`] (feature `apiserver`): a local Kubernetes API server over HTTPS.
//! - [`moto`] (feature `moto`): a shared `moto_server` for AWS Secrets Manager, STS and SQS.
//! - [`logs`] (feature `logs`): capture of every log event, for leak checks.
//! - [`proxy`] (feature `proxy`): a loopback TCP proxy adding latency and faults.
//! - [`harness`] (feature `harness`): quayhook's real adapters wired to both servers.

#![deny(missing_docs)]

pub mod events;
pub mod fakes;
pub mod fixtures;
pub mod merge_patch;

#[cfg(feature = "apiserver")]
pub mod apiserver;
#[cfg(feature = "harness")]
pub mod harness;
#[cfg(feature = "logs")]
pub mod logs;
#[cfg(feature = "moto")]
pub mod moto;
#[cfg(feature = "proxy")]
pub mod proxy;
