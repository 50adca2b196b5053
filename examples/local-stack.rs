//! The local stand-ins for a user's AWS account and cluster, for `make demo` and `make invoke`.
//!
//! Starts the local Kubernetes API server (HTTPS, bearer tokens, RBAC) seeded with Warehouses,
//! grants a `quayhook` service account get/list/patch on Warehouses in each seeded namespace
//! (Role + RoleBinding, token from the TokenRequest API, as `deploy/` does on a real cluster),
//! and stores in Secrets Manager (moto) the kubeconfig and one receiver secret: Kargo's
//! documentation example (`kargo-demo` / `q-wh-receiver` / `mysecret`), which is the token of
//! the recorded events in `events/`. Then writes the function's environment (a shell file and
//! a `sam local invoke --env-vars` file), and runs until SIGINT/SIGTERM, when it prints every
//! Warehouse's refresh annotation.
//!
//! ```text
//! cargo run --example local-stack -- --moto http://127.0.0.1:5000 --seed tools/demo/warehouses.json \
//!     --env-file target/run/env.sh --sam-env-file target/run/sam-env.json --ready-file target/run/ready
//! ```

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use quayhook_testkit::apiserver::ApiServer;
use quayhook_testkit::moto;
use serde_json::{Value, json};

const RECEIVER_PREFIX: &str = "quayhook/receivers/";
const KUBECONFIG_ID: &str = "quayhook/kubeconfig";

#[derive(Default)]
struct Args {
    moto: String,
    seeds: Vec<PathBuf>,
    env_file: Option<PathBuf>,
    sam_env_file: Option<PathBuf>,
    ready_file: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args::default();
    let mut argv = std::env::args().skip(1);
    while let Some(flag) = argv.next() {
        let value = argv.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--moto" => args.moto = value,
            "--seed" => args.seeds.push(value.into()),
            "--env-file" => args.env_file = Some(value.into()),
            "--sam-env-file" => args.sam_env_file = Some(value.into()),
            "--ready-file" => args.ready_file = Some(value.into()),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if args.moto.is_empty() {
        return Err("--moto URL is required".into());
    }
    Ok(args)
}

fn write(path: &PathBuf, text: &str) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("local-stack: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let args = parse_args()?;
    let api = ApiServer::start().await;
    let mut namespaces = BTreeSet::new();
    for seed in &args.seeds {
        let text = std::fs::read_to_string(seed).map_err(|e| format!("{}: {e}", seed.display()))?;
        let objects: Vec<Value> =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", seed.display()))?;
        for obj in objects {
            if obj["kind"] == "Warehouse"
                && let Some(ns) = obj.pointer("/metadata/namespace").and_then(Value::as_str)
            {
                namespaces.insert(ns.to_owned());
            }
            api.try_apply(obj)?;
        }
    }
    let granted: Vec<&str> = namespaces.iter().map(String::as_str).collect();
    let token = api.grant_quayhook(Some(&granted));
    let sm = moto::client_for(&args.moto);
    let receiver =
        json!({"project": "kargo-demo", "receiver": "q-wh-receiver", "secret": "mysecret"});
    moto::put_secret(
        &sm,
        &format!("{RECEIVER_PREFIX}kargo-demo-q-wh-receiver"),
        &receiver.to_string(),
    )
    .await;
    moto::put_secret(&sm, KUBECONFIG_ID, &api.kubeconfig_yaml(&token, None)).await;

    let env = [
        ("AWS_ENDPOINT_URL", args.moto.as_str()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
        ("QUAYHOOK_RECEIVER_SECRET_PREFIX", RECEIVER_PREFIX),
        ("QUAYHOOK_KUBECONFIG_SECRET_ID", KUBECONFIG_ID),
    ];
    if let Some(path) = &args.env_file {
        let text: String = env
            .iter()
            .map(|(k, v)| format!("export {k}='{v}'\n"))
            .collect();
        write(path, &text)?;
    }
    if let Some(path) = &args.sam_env_file {
        let vars: serde_json::Map<String, Value> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        write(
            path,
            &serde_json::to_string_pretty(&json!({ "QuayFunction": vars })).unwrap_or_default(),
        )?;
    }
    eprintln!(
        "local-stack: API server {} ({} namespace(s) granted), secrets in {}",
        api.url(),
        namespaces.len(),
        args.moto
    );
    if let Some(path) = &args.ready_file {
        write(path, &api.url())?;
    }

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    println!("\nWarehouses after the run (kargo.akuity.io/refresh):");
    for w in api.list("warehouses", None) {
        let name = format!(
            "{}/{}",
            w.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("?"),
            w.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("?")
        );
        let stamp = w
            .pointer("/metadata/annotations/kargo.akuity.io~1refresh")
            .and_then(Value::as_str)
            .unwrap_or("-");
        println!("  {name:<32} {stamp}");
    }
    Ok(())
}
