//! The receiver under load: quayhook's real adapters against moto and the local API server,
//! with faults injected into the API server, reached through the Lambda handler or over HTTP.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kargo_match::index::Index;
use kargo_match::token::{SecretString, receiver_token};
use kargo_match::warehouse::WarehouseKey;
use quayhook::cluster::KubeConnector;
use quayhook::config::Config;
use quayhook::handler;
use quayhook::secrets::SecretsManager;
use quayhook::state::State;
use serde_json::{Value, json};

use quayhook_testkit::apiserver::{ApiServer, Fault};
use quayhook_testkit::events::{delivery, push, request};
use quayhook_testkit::harness::parts;
use quayhook_testkit::moto;

use super::{Delivery, FAIL_EVERY, PROJECTS, http, repo, warehouses};

/// What the API server saw: every request's completion time, and the injected failures.
#[derive(Default)]
pub(crate) struct Observed {
    /// Successful PATCHes: Warehouse → completion times.
    pub(crate) patched: Mutex<HashMap<WarehouseKey, Vec<Instant>>>,
    /// Requests of any kind.
    pub(crate) requests: AtomicU64,
    /// Faults armed.
    pub(crate) injected: AtomicU64,
    /// Every LIST and PATCH of Warehouses as it was recorded: when, and whether a PATCH.
    pub(crate) timeline: Mutex<Vec<(Instant, bool)>>,
}

impl Observed {
    pub(crate) fn patches(&self) -> usize {
        self.patched.lock().unwrap().values().map(Vec::len).sum()
    }
}

/// A delivery's answer, as its client saw it.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The status; 0 when an HTTP connection closed without one.
    pub(crate) status: u16,
    /// The JSON body; `null` when there is none.
    pub(crate) body: Value,
    /// When the delivery started (the connect, over HTTP).
    pub(crate) sent: Instant,
    /// From `sent` to the answer's last byte.
    pub(crate) latency: Duration,
}

/// quayhook's state over the real adapters.
pub(crate) type Receiver = State<SecretsManager, KubeConnector>;

/// quayhook's real adapters against moto and the local API server, the injected faults, and
/// the oracle's index over the same Warehouses. No log capture: a Lambda logs at `info`, and
/// capturing debug logs of every dependency would measure the capture.
pub(crate) struct Rig {
    /// The local Kubernetes API server, with 200 Warehouses.
    pub(crate) api: Arc<ApiServer>,
    /// The receiver (for `serve`, or the Lambda handler).
    pub(crate) state: Arc<Receiver>,
    /// Receiver URL token per project.
    pub(crate) tokens: HashMap<&'static str, String>,
    /// What the API server saw.
    pub(crate) observed: Arc<Observed>,
    /// Whether every [`FAIL_EVERY`]-th API server request arms a fault.
    pub(crate) failing: Arc<AtomicBool>,
    /// The oracle: the pure planner's index over the same Warehouses.
    pub(crate) index: Index,
}

impl Rig {
    /// Starts the servers with `vars` added to the configuration, arms the fault injector
    /// (off until [`Rig::failing`] is set) and sends one warm-up delivery per project (filling
    /// the caches as a live Lambda's would be).
    pub(crate) async fn start(vars: &[(&str, &str)]) -> Rig {
        let api = Arc::new(ApiServer::start().await);
        for w in warehouses() {
            api.apply(w);
        }
        let sa_token = api.grant_quayhook(Some(&PROJECTS));
        let sm = moto::client();
        let prefix = format!("loadtest-{}-{}", std::process::id(), rand_suffix());
        let kubeconfig_id = format!("{prefix}/kubeconfig");
        moto::put_secret(&sm, &kubeconfig_id, &api.kubeconfig_yaml(&sa_token, None)).await;
        let mut tokens = HashMap::new();
        for project in PROJECTS {
            let secret = format!("loadtest-secret-{project}");
            let body = json!({ "project": project, "receiver": "quay", "secret": secret });
            moto::put_secret(
                &sm,
                &format!("{prefix}/receivers/{project}"),
                &body.to_string(),
            )
            .await;
            tokens.insert(
                project,
                receiver_token(project, "quay", &SecretString::new(secret)),
            );
        }
        let mut config_vars: HashMap<&str, String> = HashMap::from([
            (
                "QUAYHOOK_RECEIVER_SECRET_PREFIX",
                format!("{prefix}/receivers/"),
            ),
            ("QUAYHOOK_KUBECONFIG_SECRET_ID", kubeconfig_id.clone()),
        ]);
        config_vars.extend(vars.iter().map(|(k, v)| (*k, (*v).to_owned())));
        let config = Config::from_lookup(|k| config_vars.get(k).cloned()).expect("config");
        let secrets = SecretsManager::new(
            sm,
            Vec::new(),
            Some(format!("{prefix}/receivers/")),
            kubeconfig_id,
        );
        let connector = KubeConnector::from_config(&config);
        // `QUAYHOOK_QUEUE_URL` in `vars`: the durable path, on moto's SQS.
        let state = moto::sqs::state(config, secrets, connector);
        let rig = Rig {
            api,
            state: Arc::new(state),
            tokens,
            observed: Arc::new(Observed::default()),
            failing: Arc::new(AtomicBool::new(false)),
            index: Index::from_listed(
                warehouses()
                    .into_iter()
                    .map(|w| serde_json::from_value(w).expect("a JSON value always decodes")),
            ),
        };
        rig.inject_faults();
        for project in PROJECTS {
            let a = Via::Handler
                .send(
                    &rig.state,
                    &rig.tokens[project],
                    &push(&repo(0), &["warmup-no-match"]),
                )
                .await;
            assert_eq!(a.status, 200, "warm-up: {}", a.body);
        }
        rig
    }

    fn inject_faults(&self) {
        let observed = Arc::clone(&self.observed);
        let failing = Arc::clone(&self.failing);
        let weak = Arc::downgrade(&self.api);
        let kinds = [
            Fault::status(503),
            Fault::status(500),
            Fault::status(429),
            Fault::drop(),
        ];
        self.api.on_request(move |r| {
            let n = observed.requests.fetch_add(1, Ordering::SeqCst) + 1;
            if r.resource == "warehouses" && (r.verb == "list" || r.verb == "patch") {
                observed
                    .timeline
                    .lock()
                    .unwrap()
                    .push((Instant::now(), r.verb == "patch"));
            }
            if r.verb == "patch"
                && r.status == 200
                && let (Some(ns), Some(name)) = (&r.namespace, &r.name)
            {
                observed
                    .patched
                    .lock()
                    .unwrap()
                    .entry(WarehouseKey::new(ns, name))
                    .or_default()
                    .push(Instant::now());
            }
            // Every FAIL_EVERY-th request arms a one-shot fault for the next request.
            if failing.load(Ordering::SeqCst)
                && n.is_multiple_of(FAIL_EVERY)
                && let Some(api) = weak.upgrade()
            {
                let kind = kinds[(n / FAIL_EVERY) as usize % kinds.len()].clone();
                api.inject(kind.times(1));
                observed.injected.fetch_add(1, Ordering::SeqCst);
            }
        });
    }

    /// The Warehouses among `sent` (each push's selection and send time) that were not
    /// refreshed after the last push selecting them was sent, sorted.
    pub(crate) fn lost<'a>(
        &self,
        sent: impl IntoIterator<Item = (&'a Delivery, Instant)>,
    ) -> Vec<String> {
        let mut last_push: HashMap<&WarehouseKey, Instant> = HashMap::new();
        for (d, at) in sent {
            for key in &d.selected {
                let last = last_push.entry(key).or_insert(at);
                *last = (*last).max(at);
            }
        }
        let patched = self.observed.patched.lock().unwrap();
        let mut lost: Vec<String> = last_push
            .iter()
            .filter(|(key, sent)| {
                !patched
                    .get(**key)
                    .is_some_and(|times| times.iter().any(|t| t > *sent))
            })
            .map(|(key, _)| key.to_string())
            .collect();
        lost.sort();
        lost
    }
}

/// A number that differs between runs, for unique names.
pub(crate) fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// How a delivery reaches the receiver.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Via {
    /// `handler::handle` with an API Gateway event, as the Lambda runtime calls it.
    Handler,
    /// HTTP/1.1 over loopback to `quayhook serve` at this address, one connection each.
    Http(SocketAddr),
}

impl Via {
    /// POSTs `body` to `token`'s receiver and times the answer.
    pub(crate) async fn send(self, state: &Receiver, token: &str, body: &str) -> Answer {
        let answer = |(status, body), sent: Instant| Answer {
            status,
            body,
            sent,
            latency: sent.elapsed(),
        };
        match self {
            Via::Handler => {
                let event = delivery(token, body);
                let sent = Instant::now();
                answer(parts(handler::handle(state, request(&event)).await), sent)
            }
            Via::Http(addr) => {
                let path = format!("/quay/{token}");
                let sent = Instant::now();
                let reply = http::post(addr, &path, body.as_bytes()).await;
                answer((reply.status, reply.json()), sent)
            }
        }
    }
}
