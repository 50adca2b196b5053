//! The local stack the measurements share: the test kit's Kubernetes API server with a granted
//! service account and the Warehouses of a scenario, Secrets Manager (moto) behind the
//! counting proxy, one receiver per namespace, and the timelines that record remote calls.
//!
//! I/O: starts the API server and the proxy, writes secrets to moto.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use kargo_match::token::{SecretString, receiver_token};
use quayhook::cluster::KubeConnector;
use quayhook::config::Config;
use quayhook::secrets::SecretsManager;
use quayhook::state::State;
use quayhook_testkit::apiserver::ApiServer;
use quayhook_testkit::fixtures::{QUAY_REPO, typical_subscription, wh};
use quayhook_testkit::moto;
use serde_json::{Value, json};

use crate::proxy::{self, Proxy};
use crate::timeline::{SharedLatency, Timed, Timeline, observe, set_latency_of};

/// Latency the API server (and the Secrets Manager proxy) adds to every request while a
/// request is measured: Kargo's receiver and quayhook pay it per remote call alike.
pub const LATENCY: Duration = Duration::from_millis(20);

/// A seeded stack: API server with a granted service account, secrets in moto (behind the
/// proxy), one receiver per namespace.
pub struct Stack {
    /// The local Kubernetes API server, holding the scenario's objects.
    pub api: ApiServer,
    /// The proxy in front of moto.
    pub proxy: Proxy,
    /// Secrets Manager calls (from the proxy) and client-side cluster calls.
    pub timeline: Timeline,
    /// API server requests as the server saw them (for the child process, which cannot be
    /// wrapped): in flight at least from `end - latency` to `end`.
    pub server: Timeline,
    /// The latency the API server currently applies, for [`Stack::server`]'s spans.
    api_latency: SharedLatency,
    /// The secret ID prefix of this stack, unique per process and start.
    pub prefix: String,
    /// The secret holding the service account's kubeconfig.
    pub kubeconfig_id: String,
    /// Receiver path token per namespace.
    pub tokens: HashMap<String, String>,
}

impl Stack {
    /// Starts a stack holding `warehouses` (any objects), with quayhook granted in
    /// `namespaces` and a receiver `quay` in each.
    ///
    /// # Errors
    /// When the proxy cannot start. (The test kit panics when moto or the API server cannot.)
    pub async fn start(
        what: &str,
        namespaces: &[String],
        warehouses: Vec<Value>,
    ) -> anyhow::Result<Stack> {
        let api = ApiServer::start().await;
        for w in warehouses {
            api.apply(w);
        }
        let granted: Vec<&str> = namespaces.iter().map(String::as_str).collect();
        let sa_token = api.grant_quayhook(Some(&granted));
        let timeline = Timeline::default();
        let server = Timeline::default();
        let api_latency = Arc::new(Mutex::new(Duration::ZERO));
        observe(&api, &server, Arc::clone(&api_latency));
        let moto_url = moto::endpoint();
        let proxy = proxy::start(&moto_url, &timeline).await?;
        let sm = moto::client_for(&moto_url);
        let prefix = unique_prefix(what);
        let kubeconfig_id = format!("{prefix}/kubeconfig");
        moto::put_secret(&sm, &kubeconfig_id, &api.kubeconfig_yaml(&sa_token, None)).await;
        let mut tokens = HashMap::new();
        for ns in namespaces {
            let secret = format!("bench-secret-{ns}");
            let body = json!({ "project": ns, "receiver": "quay", "secret": secret });
            moto::put_secret(&sm, &format!("{prefix}/receivers/{ns}"), &body.to_string()).await;
            tokens.insert(
                ns.clone(),
                receiver_token(ns, "quay", &SecretString::new(secret)),
            );
        }
        timeline.take();
        server.take();
        Ok(Stack {
            api,
            proxy,
            timeline,
            server,
            api_latency,
            prefix,
            kubeconfig_id,
            tokens,
        })
    }

    /// Sets the latency of every API server request and Secrets Manager call.
    pub fn set_latency(&self, d: Duration) {
        self.api.set_latency(d);
        set_latency_of(&self.api_latency, d);
        set_latency_of(&self.proxy.latency, d);
    }

    /// The receiver path token of namespace `ns`.
    ///
    /// # Errors
    /// When the stack has no receiver there.
    pub fn token(&self, ns: &str) -> anyhow::Result<&str> {
        self.tokens
            .get(ns)
            .map(String::as_str)
            .with_context(|| format!("no receiver in namespace {ns}"))
    }

    /// quayhook's state as a fresh Lambda would build it, with extra configuration; its
    /// cluster calls are timed into [`Stack::timeline`].
    ///
    /// # Errors
    /// When quayhook rejects the configuration.
    pub fn state(
        &self,
        extra: &[(&str, String)],
    ) -> anyhow::Result<State<SecretsManager, Timed<KubeConnector>>> {
        let mut vars: HashMap<String, String> = HashMap::from([
            (
                "QUAYHOOK_RECEIVER_SECRET_PREFIX".to_owned(),
                format!("{}/receivers/", self.prefix),
            ),
            (
                "QUAYHOOK_KUBECONFIG_SECRET_ID".to_owned(),
                self.kubeconfig_id.clone(),
            ),
        ]);
        for (k, v) in extra {
            vars.insert((*k).to_owned(), v.clone());
        }
        let config = Config::from_lookup(|k| vars.get(k).cloned()).context("bench config")?;
        let secrets = SecretsManager::new(
            moto::client_for(&self.proxy.url),
            Vec::new(),
            Some(format!("{}/receivers/", self.prefix)),
            self.kubeconfig_id.clone(),
        );
        let connector = Timed {
            inner: KubeConnector::from_config(&config),
            timeline: self.timeline.clone(),
        };
        Ok(State::new(config, secrets, connector))
    }

    /// The environment of the real binary, as examples/local-stack.rs writes it, with the
    /// Lambda Runtime API at `runtime_api`.
    pub fn lambda_env(&self, runtime_api: &str) -> Vec<(String, String)> {
        [
            ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_owned()),
            ("AWS_LAMBDA_FUNCTION_NAME", "quayhook".into()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".into()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
            ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/quayhook".into()),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "bench".into()),
            ("AWS_LAMBDA_LOG_FORMAT", "JSON".into()),
            ("AWS_ENDPOINT_URL", self.proxy.url.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            (
                "QUAYHOOK_RECEIVER_SECRET_PREFIX",
                format!("{}/receivers/", self.prefix),
            ),
            ("QUAYHOOK_KUBECONFIG_SECRET_ID", self.kubeconfig_id.clone()),
            ("PATH", std::env::var("PATH").unwrap_or_default()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

/// A secret ID prefix no other run shares: moto outlives a run when the Makefile runs it.
fn unique_prefix(what: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("bench-{what}-{}-{nanos}", std::process::id())
}

/// `n` Warehouses in `ns` with the subscription shapes seen in practice, the objects of the
/// cold-start and memory scenarios; 10 of them subscribe to [`QUAY_REPO`] and all 10 want a
/// push of `v1.2.0` and `latest`.
pub fn realistic_warehouses(ns: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let repo = if i % (n / 10).max(1) == 0 {
                QUAY_REPO.to_owned()
            } else {
                format!("quay.io/org/app-{}", i % 1000)
            };
            wh(ns, &format!("wh-{i:05}"))
                .subscription(typical_subscription(i, &repo))
                .json()
        })
        .collect()
}
