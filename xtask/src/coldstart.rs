//! Benchmarks 3 and 4: cold start and peak memory of the real binary. The binary runs as a
//! Lambda against a local Lambda Runtime API served here; init time, init CPU (from /proc),
//! the first request's round trips and latency, and VmHWM are sampled per run.
//!
//! I/O: spawns the binary, serves the Runtime API on loopback, reads /proc, runs the local
//! stack and writes `coldstart.json` plus one child log per run next to it.

use std::convert::Infallible;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::HeaderValue;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use kube::api::{Api, DynamicObject, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind};
use quayhook_testkit::events::{delivery, push};
use quayhook_testkit::fixtures::QUAY_REPO;
use quayhook_testkit::moto;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use crate::machine::{command_output, machine, write_json};
use crate::stack::{LATENCY, Stack, realistic_warehouses};
use crate::stats::{ms, stats};
use crate::timeline::depth;

// ---------------------------------------------------------------------------------------------
// A local Lambda Runtime API: hands the binary one event and collects its answer.

/// A `GET …/invocation/next` the binary made: when, and where to send the event.
struct NextCall {
    at: Instant,
    reply: oneshot::Sender<String>,
}

/// A `POST …/response` (or error) the binary made.
struct Posted {
    at: Instant,
    path: String,
    body: String,
}

/// Serves a Lambda Runtime API on a loopback port: returns its `host:port`, the `/next` calls
/// and the posted answers.
async fn start_runtime_api()
-> anyhow::Result<(String, mpsc::Receiver<NextCall>, mpsc::Receiver<Posted>)> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("bind the runtime API")?;
    let addr = listener.local_addr()?.to_string();
    let (next_tx, next_rx) = mpsc::channel::<NextCall>(4);
    let (post_tx, post_rx) = mpsc::channel::<Posted>(4);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let next_tx = next_tx.clone();
            let post_tx = post_tx.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let next_tx = next_tx.clone();
                    let post_tx = post_tx.clone();
                    async move { runtime_api(req, next_tx, post_tx).await }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    Ok((addr, next_rx, post_rx))
}

async fn runtime_api(
    req: Request<Incoming>,
    next_tx: mpsc::Sender<NextCall>,
    post_tx: mpsc::Sender<Posted>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let at = Instant::now();
    let path = req.uri().path().to_owned();
    if path.ends_with("/invocation/next") {
        let (reply, event) = oneshot::channel();
        let _ = next_tx.send(NextCall { at, reply }).await;
        let Ok(event) = event.await else {
            // The harness is done with this process: keep it waiting.
            return std::future::pending().await;
        };
        let deadline = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() + 30_000)
            .ok()
            .and_then(|ms| u64::try_from(ms).ok())
            .unwrap_or(0);
        let mut res = Response::new(Full::new(Bytes::from(event)));
        let h = res.headers_mut();
        h.insert(
            "lambda-runtime-aws-request-id",
            HeaderValue::from_static("bench-request-1"),
        );
        h.insert("lambda-runtime-deadline-ms", HeaderValue::from(deadline));
        h.insert(
            "lambda-runtime-invoked-function-arn",
            HeaderValue::from_static("arn:aws:lambda:us-east-1:123456789012:function:quayhook"),
        );
        h.insert(
            "lambda-runtime-trace-id",
            HeaderValue::from_static("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"),
        );
        h.insert("content-type", HeaderValue::from_static("application/json"));
        return Ok(res);
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .unwrap_or_default();
    let _ = post_tx.send(Posted { at, path, body }).await;
    let mut res = Response::new(Full::new(Bytes::from_static(b"{\"status\":\"OK\"}")));
    *res.status_mut() = StatusCode::ACCEPTED;
    Ok(res)
}

// ---------------------------------------------------------------------------------------------
// CPU and RSS of the child, from /proc.

/// CPU time of a process: utime+stime from /proc/PID/stat (clock ticks), and the sum of its
/// live threads' run time from schedstat (nanoseconds), both in ms.
fn cpu_ms(pid: u32) -> (f64, f64) {
    let tck: f64 = command_output("getconf", &["CLK_TCK"])
        .and_then(|s| s.parse().ok())
        .unwrap_or(100.0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After the `(comm)`, field 3 (state) is index 0: utime (14) is 11, stime (15) is 12.
    let stat_ms = (ticks(11) + ticks(12)) / tck * 1e3;
    let mut sched_ns = 0.0;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            let s = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            sched_ns += s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
        }
    }
    (stat_ms, sched_ns / 1e6)
}

/// A `/proc/PID/status` figure in KiB (`VmHWM`, `VmRSS`); NaN when unreadable.
fn status_kib(pid: u32, key: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

// ---------------------------------------------------------------------------------------------
// The measurement.

/// One cold start of the binary: init, the first request, and memory.
async fn one_cold_start(
    bin: &Path,
    stack: &Stack,
    ns: &str,
    log: &Path,
    extra_env: &[(&str, &str)],
) -> anyhow::Result<Value> {
    let (runtime_addr, mut nexts, mut posts) = start_runtime_api().await?;
    stack.set_latency(Duration::ZERO);
    stack.timeline.take();
    stack.server.take();
    stack.api.reset_requests();
    let log_file = std::fs::File::create(log).with_context(|| log.display().to_string())?;
    let t0 = Instant::now();
    let mut child = Command::new(bin)
        .env_clear()
        .envs(stack.lambda_env(&runtime_addr))
        .envs(extra_env.iter().copied())
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
        .with_context(|| bin.display().to_string())?;
    let pid = child.id();
    let result = async {
        let first = tokio::time::timeout(Duration::from_secs(60), nexts.recv())
            .await
            .map_err(|_| anyhow!("no /next call within 60 s (see the child log)"))?
            .context("runtime API closed")?;
        let init = first.at - t0;
        let (cpu_stat, cpu_sched) = cpu_ms(pid);
        let hwm_ready = status_kib(pid, "VmHWM:");
        let mut init_spans = stack.timeline.take();
        init_spans.extend(stack.server.take());
        let lists = stack.api.count("list", "warehouses");

        // The first request, with the same 20 ms per call as benchmark 1.
        stack.set_latency(LATENCY);
        stack.api.reset_requests();
        let token = stack.token(ns)?;
        let sent = Instant::now();
        let _ = first
            .reply
            .send(delivery(token, &push(QUAY_REPO, &["v1.2.0", "latest"])));
        let posted = tokio::time::timeout(Duration::from_secs(30), posts.recv())
            .await
            .map_err(|_| anyhow!("no response within 30 s"))?
            .context("runtime API closed")?;
        let first_latency = posted.at - sent;
        let mut spans = stack.timeline.take();
        spans.extend(stack.server.take());
        let response: Value = serde_json::from_str(&posted.body).unwrap_or(Value::Null);
        let status = response["statusCode"].as_u64().unwrap_or(0);
        if !posted.path.ends_with("/response") || status != 200 {
            bail!("first request failed: {} {}", posted.path, posted.body);
        }
        // The binary asks for the next event: it is idle, its peak is final.
        let _idle = tokio::time::timeout(Duration::from_secs(10), nexts.recv()).await;
        let hwm = status_kib(pid, "VmHWM:");
        let (cpu_stat_after, cpu_sched_after) = cpu_ms(pid);
        Ok(json!({
            "init_ms": ms(init),
            "init_cpu_ms_stat": cpu_stat,
            "init_cpu_ms_schedstat": cpu_sched,
            "init_calls": init_spans.iter().map(|s| s.what.clone()).collect::<Vec<_>>(),
            "init_lists": lists,
            "vm_hwm_ready_kib": hwm_ready,
            "first_request_ms": ms(first_latency),
            "first_request_round_trips": depth(&spans),
            "first_request_calls": spans.iter().map(|s| s.what.clone()).collect::<Vec<_>>(),
            "first_request_max_concurrency": stack.api.max_concurrency(),
            "first_request_patches": stack.api.count("patch", "warehouses"),
            "vm_hwm_kib": hwm,
            "cpu_ms_after_first_request_stat": cpu_stat_after,
            "cpu_ms_after_first_request_schedstat": cpu_sched_after,
        }))
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    stack.set_latency(Duration::ZERO);
    result
}

/// The network part of init, timed from the harness: the same Secrets Manager calls and
/// Warehouse list over fresh connections, with nothing else. In ms.
async fn network_part(stack: &Stack, ns: &str) -> anyhow::Result<f64> {
    let sm = moto::client_for(&stack.proxy.url);
    let t = Instant::now();
    sm.batch_get_secret_value()
        .filters(
            Filter::builder()
                .key(FilterNameStringType::Name)
                .values(format!("{}/receivers/", stack.prefix))
                .build(),
        )
        .send()
        .await
        .context("batch")?;
    let kubeconfig = sm
        .get_secret_value()
        .secret_id(&stack.kubeconfig_id)
        .send()
        .await
        .context("get")?;
    let text = kubeconfig.secret_string().unwrap_or_default().to_owned();
    let kc = Kubeconfig::from_yaml(&text)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    let client = kube::Client::try_from(config)?;
    let gvk = GroupVersionKind::gvk("kargo.akuity.io", "v1alpha1", "Warehouse");
    let api: Api<DynamicObject> = Api::namespaced_with(
        client,
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, "warehouses"),
    );
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api.list(&params).await?;
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => params = params.continue_token(&c),
            None => break,
        }
    }
    Ok(ms(t.elapsed()))
}

/// A cold-start scenario: label, Warehouses, extra environment of the binary.
type Case<'a> = (&'a str, usize, &'a [(&'a str, &'a str)]);

/// The scenarios. The third skips the prefetch: its init CPU is what the process costs before
/// any network call (runtime, configuration, AWS SDK), so the prefetch's share can be read off.
const CASES: [Case<'static>; 3] = [
    ("100 Warehouses", 100, &[]),
    ("10,000 Warehouses", 10_000, &[]),
    (
        "100 Warehouses, QUAYHOOK_PREFETCH=false",
        100,
        &[("QUAYHOOK_PREFETCH", "false")],
    ),
];

/// Runs benchmarks 3 and 4 on `bin`, `runs` cold starts per scenario, and writes the results
/// to `out` (child logs beside it).
///
/// # Errors
/// When `bin` is missing, a cold start fails, or the results cannot be written.
pub async fn run(bin: &Path, out: &Path, runs: usize) -> anyhow::Result<()> {
    if !bin.exists() {
        bail!("{} not found: run `make build`", bin.display());
    }
    let dir = out.parent().unwrap_or(Path::new(".")).to_path_buf();
    let ns = "kargo-demo".to_owned();
    let mut scenarios = Vec::new();
    for (name, warehouses, extra_env) in CASES {
        let prefetch = extra_env.is_empty();
        let stack = Stack::start(
            "cold",
            std::slice::from_ref(&ns),
            realistic_warehouses(&ns, warehouses),
        )
        .await?;
        let mut samples = Vec::new();
        let mut network = Vec::new();
        for run in 0..runs {
            let log = dir.join(format!("coldstart-{warehouses}-{prefetch}-{run}.log"));
            samples.push(one_cold_start(bin, &stack, &ns, &log, extra_env).await?);
            network.push(network_part(&stack, &ns).await?);
        }
        let figure =
            |key: &str| -> Vec<f64> { samples.iter().filter_map(|s| s[key].as_f64()).collect() };
        let mib = |key: &str| -> Vec<f64> { figure(key).iter().map(|k| k / 1024.0).collect() };
        let init = figure("init_ms");
        let beyond: Vec<f64> = init.iter().zip(&network).map(|(i, n)| i - n).collect();
        scenarios.push(json!({
            "name": name,
            "warehouses": warehouses,
            "prefetch": prefetch,
            "runs": runs,
            "init_ms": stats(&init),
            "network_ms": stats(&network),
            "init_minus_network_ms": stats(&beyond),
            "init_cpu_ms_stat": stats(&figure("init_cpu_ms_stat")),
            "init_cpu_ms_schedstat": stats(&figure("init_cpu_ms_schedstat")),
            "first_request_ms": stats(&figure("first_request_ms")),
            "first_request_round_trips": stats(&figure("first_request_round_trips")),
            "vm_hwm_ready_mib": stats(&mib("vm_hwm_ready_kib")),
            "vm_hwm_mib": stats(&mib("vm_hwm_kib")),
            "samples": samples,
        }));
        eprintln!("coldstart: {name} done");
    }
    write_json(
        out,
        &json!({
            "machine": machine(),
            "binary": bin.display().to_string(),
            "first_request_latency_ms": ms(LATENCY),
            "scenarios": scenarios,
        }),
    )
}
