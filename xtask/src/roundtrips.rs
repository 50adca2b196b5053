//! Benchmark 1: round trips and latency of quayhook's handler against Kargo's request model,
//! at 1, 10 and 100 selected Warehouses, warm and cold, with [`LATENCY`] per remote call.
//!
//! I/O: runs the local stack (API server, moto behind the proxy) and writes
//! `roundtrips.json`.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind};
use quayhook_testkit::events::{delivery, push};
use quayhook_testkit::fixtures::{QUAY_REPO, wh};
use serde_json::{Value, json};

use crate::machine::{machine, write_json};
use crate::stack::{LATENCY, Stack};
use crate::stats::{ms, percentile, stats};
use crate::timeline::{Span, Timeline, depth, timed};

/// Selected Warehouses per push.
const SIZES: [usize; 3] = [1, 10, 100];

/// Kargo's receiver, request by request: one uncached Secret read, then one merge PATCH per
/// selected Warehouse, one after another.
struct Kargo {
    /// An admin kubeconfig of the local API server.
    kubeconfig: String,
    /// The long-lived client of the warm mode.
    client: Option<kube::Client>,
    /// `warehouses.kargo.akuity.io/v1alpha1`.
    resource: ApiResource,
}

impl Kargo {
    fn new(kubeconfig: String) -> Kargo {
        let gvk = GroupVersionKind::gvk("kargo.akuity.io", "v1alpha1", "Warehouse");
        Kargo {
            kubeconfig,
            client: None,
            resource: ApiResource::from_gvk_with_plural(&gvk, "warehouses"),
        }
    }

    async fn new_client(&self) -> anyhow::Result<kube::Client> {
        let kc = Kubeconfig::from_yaml(&self.kubeconfig).context("kubeconfig")?;
        let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .context("kube config")?;
        kube::Client::try_from(config).context("client")
    }

    /// One request; `fresh` builds a new client (new connection) first.
    async fn handle(
        &mut self,
        fresh: bool,
        ns: &str,
        warehouses: &[String],
        timeline: &Timeline,
    ) -> anyhow::Result<()> {
        let client = match &self.client {
            Some(client) if !fresh => client.clone(),
            _ => {
                let client = self.new_client().await?;
                self.client = Some(client.clone());
                client
            }
        };
        let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
        timed(timeline, "get secrets", secrets.get("quay-receiver"))
            .await
            .context("secret read")?;
        let api: Api<DynamicObject> = Api::namespaced_with(client, ns, &self.resource);
        let patch = kargo_match::warehouse::refresh_patch(SystemTime::now());
        for name in warehouses {
            let params = PatchParams::default();
            let merge = Patch::Merge(&patch);
            timed(
                timeline,
                "patch warehouses",
                api.patch(name, &params, &merge),
            )
            .await
            .context("patch")?;
        }
        Ok(())
    }
}

/// The figures of a series of requests.
#[derive(Default)]
struct Samples {
    latency_ms: Vec<f64>,
    round_trips: Vec<f64>,
    calls: Vec<f64>,
}

impl Samples {
    fn add(&mut self, elapsed: Duration, spans: &[Span]) {
        self.latency_ms.push(ms(elapsed));
        self.round_trips.push(depth(spans) as f64);
        self.calls.push(spans.len() as f64);
    }
}

/// The objects of the benchmark in namespace `ns`: `n` Warehouses subscribed to
/// [`QUAY_REPO`], 10 subscribed elsewhere, and the Secret Kargo's receiver reads on every
/// request.
pub(crate) fn objects(ns: &str, n: usize) -> Vec<Value> {
    let mut objects: Vec<Value> = (0..n)
        .map(|i| {
            wh(ns, &format!("wh-{i:03}"))
                .image(QUAY_REPO, json!({}))
                .json()
        })
        .collect();
    for i in 0..10 {
        let repo = format!("quay.io/mynamespace/other-{i}");
        objects.push(
            wh(ns, &format!("other-{i:02}"))
                .image(&repo, json!({}))
                .json(),
        );
    }
    objects.push(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "namespace": ns, "name": "quay-receiver" },
        "data": { "secret": base64::engine::general_purpose::STANDARD.encode("kargo-secret") }
    }));
    objects
}

/// quayhook's handler on one delivery; `Err` unless it answers 200.
async fn deliver<S, C>(
    state: &quayhook::state::State<S, C>,
    event: &str,
    what: &str,
) -> anyhow::Result<()>
where
    S: quayhook::secrets::SecretSource,
    C: quayhook::cluster::Connector,
{
    let req = lambda_http::request::from_str(event).context("bench event")?;
    let resp = quayhook::handler::handle(state, req).await;
    if resp.status() != 200 {
        bail!("{what} answered {}", resp.status());
    }
    Ok(())
}

/// One repetition of Kargo's model: `per_rep` requests (after one that brings the connection
/// up, when warm), each added to `all`. Returns the repetition's p50 in ms.
async fn kargo_rep(
    mut kargo: Kargo,
    stack: &Stack,
    cold: bool,
    ns: &str,
    names: &[String],
    per_rep: usize,
    all: &mut Samples,
) -> anyhow::Result<f64> {
    if !cold {
        kargo.handle(false, ns, names, &stack.timeline).await?; // connection up
    }
    let mut rep = Samples::default();
    for _ in 0..per_rep {
        stack.timeline.take();
        let t = Instant::now();
        kargo.handle(cold, ns, names, &stack.timeline).await?;
        let elapsed = t.elapsed();
        let spans = stack.timeline.take();
        rep.add(elapsed, &spans);
        all.add(elapsed, &spans);
    }
    Ok(percentile(&rep.latency_ms, 50.0))
}

/// One repetition of quayhook with configuration `extra`: `per_rep` deliveries of `event`
/// through one `State` warmed by a first delivery (warm) or a new `State` each (cold), each
/// added to `all`. Returns the repetition's p50 in ms.
async fn quayhook_rep(
    stack: &Stack,
    extra: &[(&str, String)],
    cold: bool,
    event: &str,
    per_rep: usize,
    all: &mut Samples,
) -> anyhow::Result<f64> {
    let mut warm_state = None;
    if !cold {
        let s = stack.state(extra)?;
        deliver(&s, event, "warm-up").await?;
        warm_state = Some(s);
    }
    let mut rep = Samples::default();
    for _ in 0..per_rep {
        let fresh;
        let state = match &warm_state {
            Some(s) => s,
            None => {
                fresh = stack.state(extra)?;
                &fresh
            }
        };
        // The event is parsed outside the timed section, as the runtime does.
        let req = lambda_http::request::from_str(event).context("bench event")?;
        stack.timeline.take();
        let t = Instant::now();
        let resp = quayhook::handler::handle(state, req).await;
        let elapsed = t.elapsed();
        let spans = stack.timeline.take();
        if resp.status() != 200 {
            bail!("quayhook answered {}", resp.status());
        }
        rep.add(elapsed, &spans);
        all.add(elapsed, &spans);
    }
    Ok(percentile(&rep.latency_ms, 50.0))
}

/// Runs benchmark 1 with `reps` repetitions and writes its results to `out`.
///
/// # Errors
/// When a request of either model fails, or the results cannot be written.
pub async fn run(out: &Path, reps: usize) -> anyhow::Result<()> {
    let namespaces: Vec<String> = SIZES.iter().map(|n| format!("bench-n{n}")).collect();
    let all = SIZES
        .iter()
        .zip(&namespaces)
        .flat_map(|(n, ns)| objects(ns, *n))
        .collect();
    let stack = Stack::start("rt", &namespaces, all).await?;
    let admin_kubeconfig = stack.api.kubeconfig_yaml(stack.api.admin_token(), None);
    stack.set_latency(LATENCY);
    let body = push(QUAY_REPO, &["v1.2.0"]);

    let mut rows = Vec::new();
    for (n, ns) in SIZES.iter().zip(&namespaces) {
        let names: Vec<String> = (0..*n).map(|i| format!("wh-{i:03}")).collect();
        let ev = delivery(stack.token(ns)?, &body);
        // Requests per repetition: fewer where Kargo's model takes seconds per request.
        let per_rep = if *n >= 100 { 5 } else { 15 };
        // The default configuration (`QUAYHOOK_PATCH_CONCURRENCY` is 100: one wave for every
        // N here); more variants, each with its environment, can be listed beside it.
        let variants: Vec<(&str, Vec<(&str, String)>)> = vec![("quayhook", Vec::new())];
        for mode in ["warm", "cold"] {
            let cold = mode == "cold";
            let mut kargo_all = Samples::default();
            let mut quay_all: Vec<Samples> = variants.iter().map(|_| Samples::default()).collect();
            let mut kargo_p50 = Vec::new();
            let mut quay_p50: Vec<Vec<f64>> = variants.iter().map(|_| Vec::new()).collect();
            let mut ratios: Vec<Vec<f64>> = variants.iter().map(|_| Vec::new()).collect();
            for _ in 0..reps {
                let kargo = Kargo::new(admin_kubeconfig.clone());
                let k50 =
                    kargo_rep(kargo, &stack, cold, ns, &names, per_rep, &mut kargo_all).await?;
                kargo_p50.push(k50);
                for (v, (_, extra)) in variants.iter().enumerate() {
                    let q50 =
                        quayhook_rep(&stack, extra, cold, &ev, per_rep, &mut quay_all[v]).await?;
                    quay_p50[v].push(q50);
                    ratios[v].push(k50 / q50);
                }
            }
            let row = |model: &str, all: &Samples, p50s: &[f64], ratio: Option<&[f64]>| {
                json!({
                    "n": n, "mode": mode, "model": model,
                    "requests": all.latency_ms.len(),
                    "round_trips": stats(&all.round_trips),
                    "remote_calls": stats(&all.calls),
                    "p50_ms": stats(p50s),
                    "p99_ms": percentile(&all.latency_ms, 99.0),
                    "ratio": ratio.map(stats),
                })
            };
            rows.push(row("Kargo", &kargo_all, &kargo_p50, None));
            for (v, (name, _)) in variants.iter().enumerate() {
                rows.push(row(name, &quay_all[v], &quay_p50[v], Some(&ratios[v])));
            }
            eprintln!("roundtrips: N={n} {mode} done");
        }
    }
    write_json(
        out,
        &json!({
            "machine": machine(),
            "latency_ms": ms(LATENCY),
            "repetitions": reps,
            "rows": rows,
        }),
    )
}
