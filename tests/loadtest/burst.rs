//! The clean burst: 1,000 pushes in bursts of 50 concurrent deliveries through the Lambda
//! handler, nothing else going on (the checks are the crate's, see `main.rs`).

use std::sync::atomic::Ordering;

use serde_json::json;

use super::deliveries::deliver_all;
use super::rig::{Rig, Via};
use super::{FAIL_EVERY, PROJECTS, Rng, WAREHOUSES, exclusive, panics_since, plan, record};

const PUSHES: usize = 1_000;
const BURST: usize = 50;

#[test]
fn a_burst_of_1000_pushes_with_5_percent_transient_failures_loses_no_refresh() {
    exclusive(run);
}

async fn run(panics_before: usize) {
    let rig = Rig::start(&[]).await;
    let deliveries = plan(&mut Rng(0x5eed_1234_abcd_ef01), &rig, PUSHES);
    let patched_before = rig.observed.patches();
    rig.failing.store(true, Ordering::SeqCst);
    let run = deliver_all(&rig, Via::Handler, &deliveries, BURST, |_| {}).await;
    rig.failing.store(false, Ordering::SeqCst);

    let observed = &rig.observed;
    let mut report = run.json();
    for (k, v) in [
        ("pushes", json!(PUSHES)),
        ("burst", json!(BURST)),
        ("projects", json!(PROJECTS.len())),
        ("warehouses", json!(WAREHOUSES)),
        ("fail_rate", json!(1.0 / FAIL_EVERY as f64)),
        (
            "successful_patches",
            json!(observed.patches() - patched_before),
        ),
        (
            "api_requests",
            json!(observed.requests.load(Ordering::SeqCst)),
        ),
        (
            "injected_failures",
            json!(observed.injected.load(Ordering::SeqCst)),
        ),
        ("panics", json!(panics_since(panics_before))),
    ] {
        report[k] = v;
    }
    println!("loadtest: {report:#}");
    record(&report);
}
