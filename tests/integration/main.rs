//! Integration suites: quayhook's real adapters against real protocols — the AWS SDK against
//! moto_server, `kube` over HTTPS with a bearer token against the local API server — driven
//! through the Lambda handler with API Gateway events (and, for the durable path's worker,
//! SQS events). One test binary (ripgrep-style), so the heavy dependency graph links once.

mod cli;
mod deploy;
mod durable;
mod ecr;
mod eks;
mod events;
mod http2;
mod scenarios;
mod serve;
