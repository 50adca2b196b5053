//! kargo-match: Kargo's Quay.io webhook receiver semantics, with no I/O.
//!
//! Everything here is a pure function of its inputs (the clock is a parameter): the compiler
//! enforces it, since this crate depends on no I/O crate, and `make lint` checks the whole
//! dependency closure. The receiver (`quayhook`) is the shell around it.
//!
//! # Layout
//! Modules in the order a request flows through them:
//! - [`token`]: receiver path hash, constant-time token verification, redacting secrets.
//! - [`path`]: Go's `path.Clean`, shared by the receiver path and the base path.
//! - [`quay`]: the push payload (serde, with the Go `encoding/json` behaviour that matters).
//! - [`urls`]: image and chart URL normalization (go-containerregistry weak parsing).
//! - [`constraint`]: Masterminds semver versions and constraints.
//! - [`warehouse`]: the Warehouse model, decoded from listed objects with Kargo's subscription
//!   rules (a malformed Warehouse is an unreadable item, never a failed list), and the refresh
//!   annotation.
//! - [`select`]: per-subscription tag filters with Kargo's strategies and Go regexes.
//! - [`index`]: repository URL → Warehouses, and the refresh plan for one push.

#![deny(missing_docs)]

pub mod constraint;
pub mod index;
pub mod path;
pub mod quay;
pub mod select;
pub mod token;
pub mod urls;
pub mod warehouse;
