//! Drives quayhook's Lambda handler in tests: [`deliver`] and [`parts`] for any state, and the
//! [`Harness`], quayhook's real adapters wired to the local API server and a real moto server,
//! with a unique secret namespace per test and a check that nothing sensitive was logged.
//!
//! Test support, I/O: the harness starts an API server, talks to moto and builds real clients.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use kargo_match::token::{SecretString, receiver_token};
use lambda_http::Body;
use quayhook::cluster::KubeConnector;
use quayhook::config::Config;
use quayhook::handler;
use quayhook::secrets::SecretsManager;
use quayhook::state::State;
use serde_json::{Value, json};

use crate::apiserver::{Alpn, ApiServer};
use crate::events::{delivery, request};
use crate::{logs, moto};

/// POSTs `body` to `/quay/{token}` through the Lambda handler of `state` (real adapters or
/// [`crate::fakes`]) and returns the answer's status and JSON body.
///
/// # Panics
/// As [`parts`] does.
pub async fn deliver<S, C>(state: &State<S, C>, token: &str, body: &str) -> (u16, Value)
where
    S: quayhook::secrets::SecretSource,
    C: quayhook::cluster::Connector,
{
    parts(handler::handle(state, request(&delivery(token, body))).await)
}

/// Sends an EventBridge event (an ECR push) through the Lambda entry of `state`, as the
/// runtime would, and returns what the runtime sends back: the answer as JSON, or the message
/// of the function error that makes Lambda retry the event.
///
/// # Panics
/// When `event` is not JSON or the answer is not an ECR answer (a test bug).
pub async fn invoke_ecr<S, C>(state: &State<S, C>, event: &str) -> Result<Value, String>
where
    S: quayhook::secrets::SecretSource,
    C: quayhook::cluster::Connector,
{
    let payload: Value = serde_json::from_str(event).expect("event is JSON");
    let invocation = lambda_http::LambdaEvent::new(payload, lambda_http::Context::default());
    let reply = quayhook::lambda::invoke(state, invocation).await;
    assert!(reply.ecr().is_some(), "an ECR answer");
    match reply.into_result() {
        Ok(reply) => Ok(serde_json::to_value(&reply).expect("the reply serializes")),
        Err(error) => Err(error.to_string()),
    }
}

/// Status and JSON body of a response.
///
/// # Panics
/// When the body is not UTF-8 JSON ending in a newline, the shape of every quayhook answer.
pub fn parts(resp: lambda_http::Response<Body>) -> (u16, Value) {
    let status = resp.status().as_u16();
    let body: &[u8] = resp.body().as_ref();
    let text = std::str::from_utf8(body).expect("utf-8 body");
    assert!(
        text.ends_with('\n'),
        "bodies end with a newline like Go's json.Encoder: {text:?}"
    );
    (status, serde_json::from_str(text).expect("JSON body"))
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// quayhook's real adapters against the local API server and moto, with a unique secret
/// namespace per test.
pub struct Harness {
    /// The local Kubernetes API server.
    pub api: ApiServer,
    /// A moto client.
    pub sm: aws_sdk_secretsmanager::Client,
    /// Prefix of every secret of this test.
    pub prefix: String,
    /// The receiver's state.
    pub state: State<SecretsManager, KubeConnector>,
    /// The service account token in the stored kubeconfig.
    pub sa_token: String,
    sensitive: Mutex<Vec<String>>,
}

/// Options of a [`Harness`].
#[derive(Default)]
pub struct Setup {
    /// Namespaces the service account may get/list/patch Warehouses in.
    pub namespaces: Vec<&'static str>,
    /// Grant cluster-wide instead.
    pub cluster: bool,
    /// Extra configuration variables.
    pub env: Vec<(&'static str, String)>,
    /// Warehouses to create before starting.
    pub warehouses: Vec<Value>,
    /// Use a secret-id list instead of a prefix for receivers (ids filled by `receiver`).
    pub receiver_ids: Option<Vec<String>>,
    /// The protocols the API server offers (h2 and HTTP/1.1 unless a test says otherwise).
    pub alpn: Alpn,
}

impl Harness {
    /// Starts an API server, grants the service account, stores the kubeconfig in moto and
    /// builds quayhook's state from a configuration map.
    pub async fn start(setup: Setup) -> Harness {
        logs::install();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("t{}-{n}", std::process::id());
        let api = ApiServer::start_with(setup.alpn).await;
        for w in &setup.warehouses {
            api.apply(w.clone());
        }
        let sa_token = if setup.cluster {
            api.grant_quayhook(None)
        } else {
            api.grant_quayhook(Some(&setup.namespaces))
        };
        let sm = moto::client();
        let kubeconfig_id = format!("{prefix}/kubeconfig");
        moto::put_secret(&sm, &kubeconfig_id, &api.kubeconfig_yaml(&sa_token, None)).await;

        let mut vars: HashMap<String, String> = HashMap::new();
        match &setup.receiver_ids {
            Some(ids) => vars.insert("QUAYHOOK_RECEIVER_SECRET_IDS".into(), ids.join(",")),
            None => vars.insert(
                "QUAYHOOK_RECEIVER_SECRET_PREFIX".into(),
                format!("{prefix}/receivers/"),
            ),
        };
        vars.insert("QUAYHOOK_KUBECONFIG_SECRET_ID".into(), kubeconfig_id);
        for (k, v) in &setup.env {
            vars.insert((*k).into(), v.clone());
        }
        let config = Config::from_lookup(|k| vars.get(k).cloned()).expect("test config");
        let secrets = quayhook::secrets::SecretsManager::new(
            sm.clone(),
            config_ids(&config),
            config_prefix(&config),
            format!("{prefix}/kubeconfig"),
        );
        let connector = KubeConnector::from_config(&config);
        // `QUAYHOOK_QUEUE_URL` in `env`: the durable path, on moto's SQS.
        let state = moto::sqs::state(config, secrets, connector);
        let h = Harness {
            state,
            api,
            sm,
            prefix,
            sensitive: Mutex::new(vec![sa_token.clone()]),
            sa_token,
        };
        h.sensitive(h.api.admin_token().to_owned());
        h
    }

    /// Records a value that must never appear in logs.
    pub fn sensitive(&self, value: String) {
        // An empty value is "contained" in every log: it would make the check meaningless.
        if !value.is_empty() {
            self.sensitive.lock().unwrap().push(value);
        }
    }

    /// Stores a receiver secret and returns its URL token.
    pub async fn receiver(
        &self,
        project: &str,
        name: &str,
        secret: &str,
        previous: Option<&str>,
    ) -> String {
        let mut body = json!({ "project": project, "receiver": name, "secret": secret });
        if let Some(p) = previous {
            body["previousSecret"] = json!(p);
            self.sensitive(p.to_owned());
            self.sensitive(receiver_token(project, name, &SecretString::new(p)));
        }
        let id = format!("{}/receivers/{project}-{name}", self.prefix);
        moto::put_secret(&self.sm, &id, &body.to_string()).await;
        let token = receiver_token(project, name, &SecretString::new(secret));
        self.sensitive(secret.to_owned());
        self.sensitive(token.clone());
        token
    }

    /// POSTs `body` to `/quay/{token}` through the Lambda handler.
    pub async fn post(&self, token: &str, body: &str) -> (u16, Value) {
        deliver(&self.state, token, body).await
    }

    /// Another state over this test's cluster with its own secret source and configuration.
    pub fn state_with<S: quayhook::secrets::SecretSource>(
        &self,
        config: Config,
        secrets: S,
    ) -> State<S, KubeConnector> {
        let connector = KubeConnector::from_config(&config);
        State::new(config, secrets, connector)
    }

    /// Sends a raw event through the Lambda entry, [`quayhook::lambda::invoke`], as the
    /// runtime would (any payload: an unreadable one is answered 400, never a panic).
    ///
    /// # Panics
    /// When `event` is not JSON or the answer has no JSON body (a test bug).
    pub async fn send(&self, event: &str) -> (u16, Value) {
        let payload: Value = serde_json::from_str(event).expect("event is JSON");
        let invocation = lambda_http::LambdaEvent::new(payload, lambda_http::Context::default());
        let reply = quayhook::lambda::invoke(&self.state, invocation).await;
        let status = reply.status().expect("an HTTP reply, not a batch response");
        let status = u16::try_from(status).expect("an HTTP status");
        let body = serde_json::from_str(reply.body().expect("a body")).expect("a JSON body");
        (status, body)
    }

    /// Sends an EventBridge event through the Lambda entry ([`invoke_ecr`]).
    ///
    /// # Panics
    /// As [`invoke_ecr`].
    pub async fn send_ecr(&self, event: &str) -> Result<Value, String> {
        invoke_ecr(&self.state, event).await
    }

    /// Sends a raw SQS event through the Lambda entry, as the runtime would for the worker,
    /// and returns the batch response as JSON (`{"batchItemFailures":[…]}`).
    ///
    /// # Panics
    /// When `event` is not JSON or the answer is not a batch response (a test bug).
    pub async fn send_batch(&self, event: &str) -> Value {
        let payload: Value = serde_json::from_str(event).expect("event is JSON");
        let invocation = lambda_http::LambdaEvent::new(payload, lambda_http::Context::default());
        let reply = quayhook::lambda::invoke(&self.state, invocation).await;
        assert!(reply.batch().is_some(), "a batch response");
        serde_json::to_value(&reply).expect("the reply serializes")
    }

    /// Asserts that a queued message body holds none of this test's secrets and tokens, no
    /// request path and no kubeconfig text ([`crate::fakes::assert_clean_body`]).
    pub fn assert_clean_message(&self, body: &str) {
        let sensitive = self.sensitive.lock().unwrap().clone();
        crate::fakes::assert_clean_body(body, &sensitive);
    }

    /// The refresh annotation of a Warehouse, if set.
    pub fn refreshed_at(&self, ns: &str, name: &str) -> Option<String> {
        self.api
            .get("warehouses", Some(ns), name)?
            .pointer("/metadata/annotations/kargo.akuity.io~1refresh")?
            .as_str()
            .map(str::to_owned)
    }

    /// Rotates the service account's token as an operator would: the old token stops
    /// working and a kubeconfig with a new one is stored in the kubeconfig secret.
    pub async fn rotate_cluster_token(&self) {
        let fresh = self.api.grant_quayhook(Some(&["kargo-demo"]));
        self.sensitive(fresh.clone());
        self.api.revoke_token(&self.sa_token);
        let id = format!("{}/kubeconfig", self.prefix);
        moto::put_secret(&self.sm, &id, &self.api.kubeconfig_yaml(&fresh, None)).await;
    }

    /// Points a command at moto and at this test's secrets, as an operator's shell would be.
    pub fn operator_env<'c>(
        &self,
        cmd: &'c mut std::process::Command,
    ) -> &'c mut std::process::Command {
        cmd.env("AWS_ENDPOINT_URL", moto::endpoint())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env(
                "QUAYHOOK_RECEIVER_SECRET_PREFIX",
                format!("{}/receivers/", self.prefix),
            )
            .env(
                "QUAYHOOK_KUBECONFIG_SECRET_ID",
                format!("{}/kubeconfig", self.prefix),
            )
            .env_remove("RUST_LOG")
    }

    /// The current value of a secret of this test.
    pub async fn secret_json(&self, id: &str) -> Value {
        let out = self
            .sm
            .get_secret_value()
            .secret_id(id)
            .send()
            .await
            .expect("secret exists");
        serde_json::from_str(out.secret_string().expect("text secret")).expect("JSON secret")
    }

    /// Asserts that no secret, token or kubeconfig credential of this test was logged.
    pub fn assert_no_leaks(&self) {
        let logs = logs::snapshot();
        assert!(
            !logs.is_empty(),
            "log capture is empty: the check would prove nothing"
        );
        for value in self.sensitive.lock().unwrap().iter() {
            assert!(
                !logs.contains(value.as_str()),
                "a secret value or token appeared in the logs"
            );
        }
        assert!(
            !logs.contains("/quay/"),
            "a request path appeared in the logs"
        );
    }
}

fn config_ids(config: &Config) -> Vec<String> {
    match &config.secrets {
        quayhook::config::SecretsConfig::SecretsManager { receiver_ids, .. }
        | quayhook::config::SecretsConfig::Eks { receiver_ids, .. } => receiver_ids.clone(),
        quayhook::config::SecretsConfig::Files { .. } => Vec::new(),
    }
}

fn config_prefix(config: &Config) -> Option<String> {
    match &config.secrets {
        quayhook::config::SecretsConfig::SecretsManager {
            receiver_prefix, ..
        }
        | quayhook::config::SecretsConfig::Eks {
            receiver_prefix, ..
        } => receiver_prefix.clone(),
        quayhook::config::SecretsConfig::Files { .. } => None,
    }
}
