//! "Real network": quayhook over HTTP/2, quayhook over HTTP/1.1 and Kargo's request model, each
//! through real sockets with real delay (the test kit's TCP proxy: [`ONE_WAY`] each way, one
//! round trip held for a new connection's handshake) between the client and the API server,
//! and between quayhook and Secrets Manager (moto). Latency is reported in milliseconds, in
//! RTTs (latency ÷ RTT) and with the connections each delivery opened.
//!
//! Every delivery runs twice in the same run, through the same proxies: first with no added
//! delay, then with [`ONE_WAY`]. The difference, divided by the difference of the proxy's
//! measured RTTs, is the delivery's *network round trips*: how many round trips sit one after
//! another on its critical path, whatever the CPU of the client, the API server and the proxy
//! (which share this machine's cores) adds to both.
//!
//! Three moments per N: *warm* (a client that delivered a moment ago), *after quiet* (the
//! connections the server kept were closed while idle, as kube-apiserver closes a connection
//! that carried no request for 90 s — longer than hyper's old 90 s pool timeout, and what any
//! quiet period longer than that leaves — then [`Options::quiet`] of nothing), and *cold* (a
//! new `State` or client per delivery: Secrets Manager, kubeconfig, list, patches).
//!
//! With `--kubeconfig` (or `QUAYHOOK_E2E_KUBECONFIG`) the same deliveries run against that
//! cluster, through the proxy with no added delay (the network is real), and the report counts
//! the connections opened per push; the quiet period is then really waited (nothing is closed
//! for it).
//!
//! I/O: local API servers, moto, proxies; writes `network.json`.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::core::v1::Secret;
use kargo_match::token::{SecretString, receiver_token};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind};
use quayhook::cluster::KubeConnector;
use quayhook::config::Config;
use quayhook::secrets::{ReceiverSecret, Receivers, SecretSource, SecretsError, SecretsManager};
use quayhook::state::State;
use quayhook_testkit::apiserver::{Alpn, ApiServer};
use quayhook_testkit::events::{delivery, push};
use quayhook_testkit::fixtures::QUAY_REPO;
use quayhook_testkit::moto;
use quayhook_testkit::proxy::{Options as ProxyOptions, Proxy};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::machine::{machine, write_json};
use crate::stats::{ms, stats};

/// Delay per direction on every proxied chunk: a 20 ms round trip.
pub const ONE_WAY: Duration = Duration::from_millis(10);

/// Selected Warehouses per push.
const SIZES: [usize; 3] = [1, 10, 100];

/// What `cargo xtask network` was asked to do.
#[derive(Debug)]
pub struct Options {
    /// Deliveries per (model, moment, N).
    pub runs: usize,
    /// The quiet period before an after-quiet delivery.
    pub quiet: Duration,
    /// A real cluster's kubeconfig, instead of the local API servers.
    pub kubeconfig: Option<PathBuf>,
    /// The namespace of the benchmark's objects on a real cluster.
    pub namespace: String,
    /// Where to write the results.
    pub out: PathBuf,
}

/// Receivers held in memory (real-cluster mode) with the kubeconfig, read without a network.
struct Memory {
    receivers: Vec<ReceiverSecret>,
    kubeconfig: String,
}

impl SecretSource for Memory {
    async fn receivers(&self) -> Result<Receivers, SecretsError> {
        Ok(Receivers {
            receivers: self.receivers.clone(),
            problems: Vec::new(),
        })
    }

    async fn kubeconfig(&self) -> Result<SecretString, SecretsError> {
        Ok(SecretString::new(self.kubeconfig.clone()))
    }
}

/// One delivery's figures.
#[derive(Clone, Copy)]
struct Sample {
    ms: f64,
    connections: usize,
}

/// `samples` as a JSON row, measured with `one_way` added by the proxies (the RTT each pass
/// made is in the file's `passes`).
fn row(model: &str, moment: &str, n: usize, samples: &[Sample], one_way: Duration) -> Value {
    let lat: Vec<f64> = samples.iter().map(|s| s.ms).collect();
    let conns: Vec<f64> = samples.iter().map(|s| s.connections as f64).collect();
    json!({
        "model": model, "moment": moment, "n": n, "deliveries": samples.len(),
        "one_way_ms": ms(one_way), "ms": stats(&lat), "connections": stats(&conns),
    })
}

/// Kargo's receiver over kube (HTTP/1.1, one connection reused): one uncached Secret GET,
/// then one merge PATCH per Warehouse, one after another.
struct Kargo {
    kubeconfig: String,
    client: Option<kube::Client>,
    resource: ApiResource,
}

fn warehouse_resource() -> ApiResource {
    let gvk = GroupVersionKind::gvk("kargo.akuity.io", "v1alpha1", "Warehouse");
    ApiResource::from_gvk_with_plural(&gvk, "warehouses")
}

async fn kube_client(kubeconfig: &str) -> anyhow::Result<kube::Client> {
    let kc = Kubeconfig::from_yaml(kubeconfig).context("kubeconfig")?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .context("kube config")?;
    kube::Client::try_from(config).context("client")
}

impl Kargo {
    async fn handle(&mut self, fresh: bool, ns: &str, names: &[String]) -> anyhow::Result<()> {
        let client = match &self.client {
            Some(c) if !fresh => c.clone(),
            _ => {
                let c = kube_client(&self.kubeconfig).await?;
                self.client = Some(c.clone());
                c
            }
        };
        let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
        secrets.get("quay-receiver").await.context("secret read")?;
        let api: Api<DynamicObject> = Api::namespaced_with(client, ns, &self.resource);
        let patch = kargo_match::warehouse::refresh_patch(SystemTime::now());
        for name in names {
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .context("patch")?;
        }
        Ok(())
    }
}

/// Points a kubeconfig's clusters at `proxy`, keeping TLS verification against the original
/// host name (`tls-server-name`).
fn through_proxy(kubeconfig: &str, proxy: SocketAddr) -> anyhow::Result<(String, SocketAddr)> {
    let mut kc = Kubeconfig::from_yaml(kubeconfig).context("kubeconfig")?;
    let current = kc.current_context.clone().unwrap_or_default();
    let cluster_name = kc
        .contexts
        .iter()
        .find(|c| c.name == current)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone())
        .context("kubeconfig has no current context")?;
    let mut upstream = None;
    for named in &mut kc.clusters {
        if named.name != cluster_name {
            continue;
        }
        let cluster = named.cluster.as_mut().context("cluster entry")?;
        let server = cluster.server.as_deref().context("cluster server")?;
        let authority = server
            .strip_prefix("https://")
            .context("the API server URL is not https")?
            .split('/')
            .next()
            .unwrap_or_default();
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (
                h.trim_matches(['[', ']']).to_owned(),
                p.parse().context("port")?,
            ),
            _ => (authority.to_owned(), 443),
        };
        upstream = (host.as_str(), port)
            .to_socket_addrs()
            .context("resolve the API server")?
            .next();
        cluster.server = Some(format!("https://{proxy}"));
        if cluster.tls_server_name.is_none() {
            cluster.tls_server_name = Some(host);
        }
    }
    let upstream = upstream.context("the current cluster has no server")?;
    Ok((
        serde_json::to_string(&kc).context("kubeconfig back to text")?,
        upstream,
    ))
}

/// The sanity check of the proxy: a request/answer over a reused connection and over a new
/// one, against a loopback echo server behind a proxy with `one_way` each way. Expected: 1
/// RTT reused, 2 RTT new (the held handshake, then the exchange).
async fn measured_rtts(one_way: Duration) -> anyhow::Result<(f64, f64)> {
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let echo_addr = echo.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = echo.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let proxy = Proxy::start(
        echo_addr,
        ProxyOptions {
            one_way,
            ..ProxyOptions::default()
        },
    )
    .await;
    async fn exchange(s: &mut tokio::net::TcpStream) -> anyhow::Result<()> {
        let mut buf = [0u8; 1];
        s.write_all(b"x").await?;
        s.read_exact(&mut buf).await?;
        Ok(())
    }
    let mut new_ms = Vec::new();
    let mut reused_ms = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let mut s = tokio::net::TcpStream::connect(proxy.addr()).await?;
        s.set_nodelay(true)?;
        exchange(&mut s).await?;
        new_ms.push(ms(t.elapsed()));
        let t = Instant::now();
        exchange(&mut s).await?;
        reused_ms.push(ms(t.elapsed()));
    }
    let median = |v: &[f64]| stats(v)["median"].as_f64().unwrap_or(f64::NAN);
    Ok((median(&reused_ms), median(&new_ms)))
}

/// One API server behind its proxy.
struct Target {
    /// The local server (None against a real cluster).
    api: Option<ApiServer>,
    proxy: Proxy,
    /// A kubeconfig for quayhook (through the proxy).
    kubeconfig: String,
    /// A kubeconfig for Kargo's model (through the proxy).
    admin_kubeconfig: String,
}

impl Target {
    async fn local(alpn: Alpn, namespaces: &[String]) -> anyhow::Result<Target> {
        let api = ApiServer::start_with(alpn).await;
        for (ns, n) in namespaces.iter().zip(SIZES) {
            for obj in crate::roundtrips::objects(ns, n) {
                api.apply(obj);
            }
        }
        let granted: Vec<&str> = namespaces.iter().map(String::as_str).collect();
        let token = api.grant_quayhook(Some(&granted));
        let upstream: SocketAddr = api
            .url()
            .trim_start_matches("https://")
            .parse()
            .context("API server address")?;
        let proxy = Proxy::start(
            upstream,
            ProxyOptions {
                one_way: ONE_WAY,
                ..ProxyOptions::default()
            },
        )
        .await;
        let direct = api.url();
        let via = format!("https://{}", proxy.addr());
        let kubeconfig = api.kubeconfig_yaml(&token, None).replace(&direct, &via);
        let admin_kubeconfig = api
            .kubeconfig_yaml(api.admin_token(), None)
            .replace(&direct, &via);
        Ok(Target {
            api: Some(api),
            proxy,
            kubeconfig,
            admin_kubeconfig,
        })
    }

    /// Closes the connections the server holds, as kube-apiserver's idle timeout does after a
    /// quiet period; against a real cluster, the quiet period is waited instead.
    async fn quiet(&self, quiet: Duration) {
        if let Some(api) = &self.api {
            api.close_connections();
        }
        tokio::time::sleep(quiet).await;
    }
}

/// Measures one series: `runs` deliveries, each timed and counted at `proxy`.
async fn series<F, Fut>(
    runs: usize,
    proxy: &Proxy,
    mut before: impl FnMut() -> Fut,
    mut deliver: F,
) -> anyhow::Result<Vec<Sample>>
where
    F: AsyncFnMut() -> anyhow::Result<()>,
    Fut: Future<Output = ()>,
{
    let mut out = Vec::new();
    for _ in 0..runs {
        before().await;
        proxy.reset_counts();
        let t = Instant::now();
        deliver().await?;
        out.push(Sample {
            ms: ms(t.elapsed()),
            connections: proxy.connections(),
        });
    }
    Ok(out)
}

/// quayhook's handler on one delivery; `Err` unless it answers 200.
async fn deliver<S: SecretSource>(
    state: &State<S, KubeConnector>,
    event: &str,
) -> anyhow::Result<()> {
    let req = lambda_http::request::from_str(event).context("bench event")?;
    let resp = quayhook::handler::handle(state, req).await;
    if resp.status() != 200 {
        bail!("quayhook answered {}", resp.status());
    }
    Ok(())
}

/// quayhook's rows (warm, after quiet, cold) for one N against one target.
async fn quayhook_rows<S: SecretSource>(
    model: &str,
    n: usize,
    target: &Target,
    new_state: &dyn Fn() -> anyhow::Result<State<S, KubeConnector>>,
    event: &str,
    options: &Options,
    one_way: Duration,
) -> anyhow::Result<Vec<Value>> {
    let state = new_state()?;
    deliver(&state, event).await?; // warm-up: caches and connection
    let warm = series(
        options.runs,
        &target.proxy,
        async || {},
        async || deliver(&state, event).await,
    )
    .await?;
    let quiet = series(
        options.runs,
        &target.proxy,
        || target.quiet(options.quiet),
        async || deliver(&state, event).await,
    )
    .await?;
    drop(state);
    let mut cold = Vec::new();
    for _ in 0..options.runs {
        let state = new_state()?;
        cold.extend(
            series(
                1,
                &target.proxy,
                async || {},
                async || deliver(&state, event).await,
            )
            .await?,
        );
    }
    Ok(vec![
        row(model, "warm", n, &warm, one_way),
        row(model, "after quiet", n, &quiet, one_way),
        row(model, "cold", n, &cold, one_way),
    ])
}

/// Kargo's rows for one N.
async fn kargo_rows(
    n: usize,
    ns: &str,
    target: &Target,
    options: &Options,
    one_way: Duration,
) -> anyhow::Result<Vec<Value>> {
    let names: Vec<String> = (0..n).map(|i| format!("wh-{i:03}")).collect();
    let mut kargo = Kargo {
        kubeconfig: target.admin_kubeconfig.clone(),
        client: None,
        resource: warehouse_resource(),
    };
    kargo.handle(false, ns, &names).await?;
    // Sequential deliveries: the lock is never contended.
    let kargo = tokio::sync::Mutex::new(kargo);
    let once = async |fresh: bool| kargo.lock().await.handle(fresh, ns, &names).await;
    let warm = series(
        options.runs,
        &target.proxy,
        async || {},
        async || once(false).await,
    )
    .await?;
    let quiet = series(
        options.runs,
        &target.proxy,
        || target.quiet(options.quiet),
        async || once(false).await,
    )
    .await?;
    let cold = series(
        options.runs,
        &target.proxy,
        async || {},
        async || once(true).await,
    )
    .await?;
    Ok(vec![
        row("Kargo model", "warm", n, &warm, one_way),
        row("Kargo model", "after quiet", n, &quiet, one_way),
        row("Kargo model", "cold", n, &cold, one_way),
    ])
}

/// A quayhook configuration for the benchmark: receivers by prefix, the kubeconfig id.
fn config(prefix: &str, kubeconfig_id: &str) -> anyhow::Result<Config> {
    let vars: HashMap<&str, String> = HashMap::from([
        (
            "QUAYHOOK_RECEIVER_SECRET_PREFIX",
            format!("{prefix}/receivers/"),
        ),
        ("QUAYHOOK_KUBECONFIG_SECRET_ID", kubeconfig_id.to_owned()),
    ]);
    Config::from_lookup(|k| vars.get(k).cloned()).context("bench config")
}

fn receiver(ns: &str) -> (ReceiverSecret, String) {
    let secret = format!("bench-secret-{ns}");
    let token = receiver_token(ns, "quay", &SecretString::new(secret.clone()));
    (
        ReceiverSecret {
            source: format!("memory/{ns}"),
            project: ns.to_owned(),
            receiver: "quay".into(),
            secret: SecretString::new(secret),
            previous_secret: None,
        },
        token,
    )
}

/// Runs the benchmark and writes `network.json`.
///
/// # Errors
/// When a delivery fails or the results cannot be written.
pub async fn run(options: &Options) -> anyhow::Result<()> {
    let kubeconfig = options
        .kubeconfig
        .clone()
        .or_else(|| std::env::var_os("QUAYHOOK_E2E_KUBECONFIG").map(PathBuf::from));
    let body = push(QUAY_REPO, &["v1.2.0"]);
    let mut rows = Vec::new();
    let mut passes = Vec::new();
    let cluster;
    match kubeconfig {
        None => {
            cluster = "local API server (crates/testkit) behind the proxy".to_owned();
            let namespaces: Vec<String> = SIZES.iter().map(|n| format!("net-n{n}")).collect();
            let h2 = Target::local(Alpn::H2AndHttp1, &namespaces).await?;
            let h1 = Target::local(Alpn::Http1Only, &namespaces).await?;
            // Secrets Manager (moto) behind its own proxy with the same delay.
            let moto_addr: SocketAddr = moto::endpoint().trim_start_matches("http://").parse()?;
            let sm_proxy = Proxy::start(moto_addr, ProxyOptions::default()).await;
            let sm = moto::client_for(&moto::endpoint());
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let prefix = format!("bench-net-{}-{nanos}", std::process::id());
            let mut tokens = HashMap::new();
            for ns in &namespaces {
                let (r, token) = receiver(ns);
                let body =
                    json!({ "project": ns, "receiver": "quay", "secret": r.secret.expose() });
                moto::put_secret(&sm, &format!("{prefix}/receivers/{ns}"), &body.to_string()).await;
                tokens.insert(ns.clone(), token);
            }
            for (what, t) in [("h2", &h2), ("h1", &h1)] {
                moto::put_secret(&sm, &format!("{prefix}/kubeconfig-{what}"), &t.kubeconfig).await;
            }
            // No added delay first (what the CPU and loopback cost), then the real delay.
            for one_way in [Duration::ZERO, ONE_WAY] {
                for proxy in [&h2.proxy, &h1.proxy, &sm_proxy] {
                    proxy.set_one_way(one_way);
                }
                let (reused, new) = measured_rtts(one_way).await?;
                eprintln!(
                    "network: {} ms each way: proxy RTT reused {reused:.1} ms, new connection {new:.1} ms",
                    ms(one_way)
                );
                passes.push(json!({
                    "one_way_ms": ms(one_way), "rtt_reused_ms": reused, "rtt_new_ms": new,
                }));
                for (n, ns) in SIZES.iter().zip(&namespaces) {
                    let event = delivery(&tokens[ns], &body);
                    for (model, what, t) in [
                        ("quayhook HTTP/2", "h2", &h2),
                        ("quayhook HTTP/1.1", "h1", &h1),
                    ] {
                        let kubeconfig_id = format!("{prefix}/kubeconfig-{what}");
                        let new_state =
                            || -> anyhow::Result<State<SecretsManager, KubeConnector>> {
                                let config = config(&prefix, &kubeconfig_id)?;
                                let secrets = SecretsManager::new(
                                    moto::client_for(&sm_proxy.url()),
                                    Vec::new(),
                                    Some(format!("{prefix}/receivers/")),
                                    kubeconfig_id.clone(),
                                );
                                let connector = KubeConnector::from_config(&config);
                                Ok(State::new(config, secrets, connector))
                            };
                        rows.extend(
                            quayhook_rows(model, *n, t, &new_state, &event, options, one_way)
                                .await?,
                        );
                    }
                    rows.extend(kargo_rows(*n, ns, &h2, options, one_way).await?);
                    eprintln!("network: {} ms each way, N={n} done", ms(one_way));
                }
            }
        }
        Some(path) => {
            let text =
                std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
            cluster = format!("the cluster of {}", path.display());
            let admin = kube_client(&text).await?;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let proxy_addr = listener.local_addr()?;
            drop(listener);
            let (_, upstream) = through_proxy(&text, proxy_addr)?;
            let proxy = Proxy::start(upstream, ProxyOptions::default()).await;
            let (via, _) = through_proxy(&text, proxy.addr())?;
            // The real round trip, as the proxy sees it: a warm GET /version.
            let client = kube_client(&via).await?;
            client.apiserver_version().await.context("GET /version")?;
            let mut v = Vec::new();
            for _ in 0..5 {
                let t = Instant::now();
                client.apiserver_version().await.context("GET /version")?;
                v.push(ms(t.elapsed()));
            }
            let rtt_ms = stats(&v)["median"].as_f64().unwrap_or(f64::NAN);
            // The network's own delay: nothing is added.
            let one_way = Duration::ZERO;
            passes.push(json!({ "one_way_ms": 0.0, "rtt_reused_ms": rtt_ms }));
            let target = Target {
                api: None,
                proxy,
                kubeconfig: via.clone(),
                admin_kubeconfig: via,
            };
            for n in SIZES {
                let ns = format!("{}-n{n}", options.namespace);
                create(&admin, &ns, n).await?;
                let (r, token) = receiver(&ns);
                let event = delivery(&token, &body);
                let new_state = || -> anyhow::Result<State<Memory, KubeConnector>> {
                    let config = config("memory", "memory/kubeconfig")?;
                    let connector = KubeConnector::from_config(&config);
                    Ok(State::new(
                        config,
                        Memory {
                            receivers: vec![r.clone()],
                            kubeconfig: target.kubeconfig.clone(),
                        },
                        connector,
                    ))
                };
                rows.extend(
                    quayhook_rows(
                        "quayhook HTTP/2",
                        n,
                        &target,
                        &new_state,
                        &event,
                        options,
                        one_way,
                    )
                    .await?,
                );
                rows.extend(kargo_rows(n, &ns, &target, options, one_way).await?);
                eprintln!("network: N={n} done");
            }
        }
    }
    write_json(
        &options.out,
        &json!({
            "machine": machine(),
            "cluster": cluster,
            "one_way_ms": ms(ONE_WAY),
            "passes": passes,
            "quiet_s": options.quiet.as_secs_f64(),
            "runs": options.runs,
            "rows": rows,
        }),
    )
}

/// Creates the namespace and objects of size `n` on a real cluster (server-side apply).
async fn create(admin: &kube::Client, ns: &str, n: usize) -> anyhow::Result<()> {
    let params = PatchParams::apply("quayhook-bench").force();
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    namespaces
        .patch(
            ns,
            &params,
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            ),
        )
        .await
        .context("namespace")?;
    for obj in crate::roundtrips::objects(ns, n) {
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if obj["kind"] == "Secret" {
            let api: Api<Secret> = Api::namespaced(admin.clone(), ns);
            api.patch(&name, &params, &Patch::Apply(obj))
                .await
                .context("secret")?;
        } else {
            let api: Api<DynamicObject> =
                Api::namespaced_with(admin.clone(), ns, &warehouse_resource());
            api.patch(&name, &params, &Patch::Apply(obj))
                .await
                .context("warehouse")?;
        }
    }
    Ok(())
}
