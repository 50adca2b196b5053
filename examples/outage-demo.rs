//! `make demo-outage`: the durable path on this machine, in one process.
//!
//! Starts moto (Secrets Manager and SQS, a queue with a dead-letter queue) and the local
//! Kubernetes API server seeded with `tools/demo/warehouses.json`, stores the receiver of
//! Kargo's documentation example (the token of the recorded events), and then:
//! 1. takes the API server down (every request dropped) and delivers the recorded Quay push
//!    (`events/push.json`) through the Lambda entry: the answer is 202, with what was queued;
//! 2. shows the queue's depth;
//! 3. brings the API server back and runs the worker once on what the queue holds, as the
//!    SQS event source would;
//! 4. prints the Warehouses' refresh annotations.
//!
//! Everything it starts stops when it exits. Needs `.venv` (moto): `make demo-outage` makes it.

use std::path::PathBuf;
use std::process::ExitCode;

use quayhook_testkit::apiserver::Fault;
use quayhook_testkit::harness::{Harness, Setup};
use quayhook_testkit::moto::sqs;
use serde_json::Value;

const PROJECT: &str = "kargo-demo";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn indent(value: &Value) -> String {
    serde_json::to_string_pretty(value)
        .unwrap_or_default()
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect()
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("outage demo: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let read = |path: &str| {
        std::fs::read_to_string(root().join(path)).map_err(|e| format!("cannot read {path}: {e}"))
    };
    let warehouses: Vec<Value> = serde_json::from_str(&read("tools/demo/warehouses.json")?)
        .map_err(|e| format!("tools/demo/warehouses.json: {e}"))?;
    let names: Vec<String> = warehouses
        .iter()
        .filter(|w| w["metadata"]["namespace"] == PROJECT)
        .filter_map(|w| w["metadata"]["name"].as_str().map(str::to_owned))
        .collect();

    println!("==> starting moto (Secrets Manager, SQS) and the local Kubernetes API server");
    let queue = sqs::create_queue_with_dlq(&sqs::client(), "quayhook-demo", 5).await;
    let h = Harness::start(Setup {
        namespaces: vec![PROJECT],
        env: vec![
            ("QUAYHOOK_QUEUE_URL", queue.url.clone()),
            ("QUAYHOOK_REQUEST_TIMEOUT", "2s".into()),
        ],
        warehouses,
        ..Setup::default()
    })
    .await;
    // The receiver of Kargo's documentation example (reference §1.1): the events' token.
    h.receiver(PROJECT, "q-wh-receiver", "mysecret", None).await;

    println!("==> the cluster API goes down: every request is dropped");
    h.api.inject(Fault::drop());
    println!("==> POST the recorded Quay push (events/push.json) through the Lambda entry");
    let (status, body) = h.send(&read("events/push.json")?).await;
    println!("    HTTP {status}");
    print!("{}", indent(&body));
    if status != 202 {
        return Err(format!("expected 202 (queued), got {status}"));
    }
    let (visible, in_flight) = sqs::depth(&sqs::client(), &queue.url).await;
    println!("==> the queue holds {visible} message(s) ({in_flight} in flight); Quay saw a 2xx");

    println!(
        "==> the cluster API is back; the worker runs once on the queue (as SQS would invoke it)"
    );
    h.api.clear_faults();
    let client = sqs::client();
    let messages = sqs::receive(&client, &queue.url).await;
    let response = quayhook::worker::run(&h.state, sqs::event(&messages, &queue.arn), None).await;
    sqs::settle(&client, &queue.url, &messages, &response).await;
    println!(
        "    {} message(s) handled, {} failed (they would come back after their backoff)",
        messages.len(),
        response.batch_item_failures.len()
    );

    println!("==> refresh annotations (kargo.akuity.io/refresh) in {PROJECT}:");
    for name in &names {
        let stamp = h.refreshed_at(PROJECT, name);
        println!("    {name:<24} {}", stamp.as_deref().unwrap_or("-"));
    }
    h.assert_no_leaks();
    Ok(())
}
