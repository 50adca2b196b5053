//! The remote cluster: the [`WarehouseStore`] trait (list Warehouses, merge-patch one) and its
//! `kube` implementation over HTTPS with a bearer token, built in memory from a kubeconfig.
//!
//! I/O. Errors are classified by HTTP status and transport failure into [`ClusterError`], so
//! callers decide on variants (404 drops an index entry, 401 re-reads the kubeconfig, 429/5xx
//! retry), never on message text. Nothing here logs or returns kubeconfig content.

use std::future::Future;
use std::time::Duration;

use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;

use kargo_match::token::SecretString;
use kargo_match::warehouse::{GROUP, KIND, PLURAL, VERSION, WarehouseKey};

/// Why a cluster call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// Returned when the kubeconfig cannot be used; the reason never quotes its content.
    #[error("kubeconfig unusable: {0}")]
    Kubeconfig(String),
    /// Returned on HTTP 401: the token is unknown or expired.
    #[error("the API server rejected the token (401)")]
    Unauthorized,
    /// Returned on HTTP 403: the service account lacks a permission.
    #[error("forbidden (403): {0}")]
    Forbidden(String),
    /// Returned on HTTP 404.
    #[error("not found (404)")]
    NotFound,
    /// Returned on HTTP 429, with the server's `retryAfterSeconds` when given.
    #[error("throttled by the API server (429)")]
    Throttled {
        /// How long the server asked us to wait.
        retry_after: Option<Duration>,
    },
    /// Returned on any other HTTP error status.
    #[error("API server answered {code}: {message}")]
    Status {
        /// HTTP status code.
        code: u16,
        /// The Status object's message.
        message: String,
    },
    /// Returned when the API server cannot be reached or the connection broke.
    #[error("cannot reach the API server: {0}")]
    Transport(String),
    /// Returned when a call did not finish within its time budget.
    #[error("the API server did not answer in time")]
    Timeout,
}

impl ClusterError {
    /// The HTTP status this error stands for, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClusterError::Unauthorized => Some(401),
            ClusterError::Forbidden(_) => Some(403),
            ClusterError::NotFound => Some(404),
            ClusterError::Throttled { .. } => Some(429),
            ClusterError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether trying again later may succeed: 429, 5xx, transport errors and timeouts.
    pub fn is_transient(&self) -> bool {
        match self {
            ClusterError::Throttled { .. } | ClusterError::Transport(_) | ClusterError::Timeout => {
                true
            }
            ClusterError::Status { code, .. } => *code >= 500,
            _ => false,
        }
    }

    /// The wait the server asked for (429 `retryAfterSeconds`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ClusterError::Throttled { retry_after } => *retry_after,
            _ => None,
        }
    }
}

impl From<kube::Error> for ClusterError {
    fn from(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(status) => match status.code {
                401 => ClusterError::Unauthorized,
                403 => ClusterError::Forbidden(status.message),
                404 => ClusterError::NotFound,
                429 => ClusterError::Throttled {
                    retry_after: status
                        .details
                        .as_ref()
                        .map(|d| d.retry_after_seconds)
                        .filter(|s| *s > 0)
                        .map(|s| Duration::from_secs(u64::from(s))),
                },
                code => ClusterError::Status {
                    code,
                    message: status.message,
                },
            },
            // kube's Display of transport errors names the failing layer, not headers or bodies.
            other => ClusterError::Transport(error_chain(&other)),
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

/// Lists and refreshes Warehouses in one cluster.
pub trait WarehouseStore: Send + Sync {
    /// Lists every Warehouse in `namespace` (all namespaces when `None`) as raw JSON objects,
    /// following `continue` tokens with pages of `page_size`.
    ///
    /// # Errors
    /// The first failing page's [`ClusterError`].
    fn list(
        &self,
        namespace: Option<&str>,
        page_size: u32,
    ) -> impl Future<Output = Result<Vec<Value>, ClusterError>> + Send;

    /// Applies a JSON merge patch (RFC 7386) to one Warehouse.
    ///
    /// # Errors
    /// [`ClusterError`]; [`ClusterError::NotFound`] when the Warehouse is gone.
    fn patch(
        &self,
        key: &WarehouseKey,
        patch: &Value,
    ) -> impl Future<Output = Result<(), ClusterError>> + Send;
}

/// Builds a [`WarehouseStore`] from kubeconfig text (again after a 401: the token may have
/// been rotated).
pub trait Connector: Send + Sync {
    /// The store this connector builds.
    type Store: WarehouseStore + 'static;

    /// Builds a store from kubeconfig text.
    ///
    /// # Errors
    /// [`ClusterError::Kubeconfig`] when the text cannot be used.
    fn connect(
        &self,
        kubeconfig: &SecretString,
    ) -> impl Future<Output = Result<Self::Store, ClusterError>> + Send;
}

/// The `kube` implementation of [`WarehouseStore`].
#[derive(Clone)]
pub struct KubeStore {
    client: kube::Client,
    resource: ApiResource,
}

impl KubeStore {
    /// Wraps a client.
    pub fn new(client: kube::Client) -> Self {
        let gvk = GroupVersionKind::gvk(GROUP, VERSION, KIND);
        Self {
            client,
            resource: ApiResource::from_gvk_with_plural(&gvk, PLURAL),
        }
    }

    /// The underlying client, for `quayhook check`'s access reviews.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    fn api(&self, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &self.resource),
            None => Api::all_with(self.client.clone(), &self.resource),
        }
    }
}

impl WarehouseStore for KubeStore {
    async fn list(
        &self,
        namespace: Option<&str>,
        page_size: u32,
    ) -> Result<Vec<Value>, ClusterError> {
        let api = self.api(namespace);
        let mut out = Vec::new();
        let mut params = ListParams::default().limit(page_size);
        loop {
            let page = api.list(&params).await?;
            let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
            out.extend(page.items.into_iter().map(slim));
            match next {
                Some(token) => params = params.continue_token(&token),
                None => return Ok(out),
            }
        }
    }

    async fn patch(&self, key: &WarehouseKey, patch: &Value) -> Result<(), ClusterError> {
        self.api(Some(&key.namespace))
            .patch(&key.name, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        Ok(())
    }
}

/// Keeps only what the index reads (name, namespace, `spec.subscriptions`): a Warehouse's
/// status (discovered artifacts), managed fields and the rest of its spec can be far larger,
/// and a cluster-wide list holds thousands of them at once.
fn slim(mut item: DynamicObject) -> Value {
    let subscriptions = item
        .data
        .get_mut("spec")
        .and_then(|spec| spec.get_mut("subscriptions"))
        .map(Value::take)
        .unwrap_or(Value::Null);
    serde_json::json!({
        "metadata": { "name": item.metadata.name, "namespace": item.metadata.namespace },
        "spec": { "subscriptions": subscriptions },
    })
}

/// Builds [`KubeStore`]s from kubeconfig text with quayhook's timeouts.
#[derive(Clone, Debug)]
pub struct KubeConnector {
    /// TCP+TLS connect timeout.
    pub connect_timeout: Duration,
    /// Read timeout per request.
    pub read_timeout: Duration,
}

impl KubeConnector {
    /// The connector with the configuration's timeouts: connect as configured, and no single
    /// call longer than the whole request budget.
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            connect_timeout: config.connect_timeout,
            read_timeout: config.request_timeout,
        }
    }
}

impl Connector for KubeConnector {
    type Store = KubeStore;

    async fn connect(&self, kubeconfig: &SecretString) -> Result<KubeStore, ClusterError> {
        let config = client_config(kubeconfig, self.connect_timeout, self.read_timeout).await?;
        let client = kube::Client::try_from(config).map_err(|e| {
            ClusterError::Kubeconfig(format!("cannot build a client: {}", error_chain(&e)))
        })?;
        Ok(KubeStore::new(client))
    }
}

/// Turns kubeconfig text into a `kube::Config`, in memory.
///
/// Only self-contained credentials are accepted: a bearer token or client certificate data,
/// and the CA as `certificate-authority-data`. Exec plugins, auth providers and file
/// references are refused, because a Lambda has neither the binaries nor the files (and a
/// kubeconfig from a secret must not run programs).
///
/// # Errors
/// [`ClusterError::Kubeconfig`] with a reason that names fields, never values.
pub async fn client_config(
    kubeconfig: &SecretString,
    connect_timeout: Duration,
    read_timeout: Duration,
) -> Result<kube::Config, ClusterError> {
    let bad = |reason: &str| ClusterError::Kubeconfig(reason.to_owned());
    let parsed = Kubeconfig::from_yaml(kubeconfig.expose())
        .map_err(|_| bad("not a kubeconfig YAML document"))?;
    for named in &parsed.auth_infos {
        let Some(auth) = &named.auth_info else {
            continue;
        };
        if auth.exec.is_some() {
            return Err(bad(
                "exec credential plugins are not supported; use a service-account token",
            ));
        }
        if auth.auth_provider.is_some() {
            return Err(bad(
                "auth providers are not supported; use a service-account token",
            ));
        }
        if auth.token_file.is_some()
            || auth.client_certificate.is_some()
            || auth.client_key.is_some()
        {
            return Err(bad(
                "file references (tokenFile, client-certificate, client-key) are not supported; inline the data",
            ));
        }
    }
    for named in &parsed.clusters {
        if named
            .cluster
            .as_ref()
            .is_some_and(|c| c.certificate_authority.is_some())
        {
            return Err(bad(
                "certificate-authority file paths are not supported; use certificate-authority-data",
            ));
        }
    }
    let mut config = kube::Config::from_custom_kubeconfig(parsed, &KubeConfigOptions::default())
        .await
        .map_err(|e| {
            // kube's messages for these variants name the missing piece, not content; parse
            // errors (which could quote content) were handled above.
            ClusterError::Kubeconfig(e.to_string())
        })?;
    config.connect_timeout = Some(connect_timeout);
    config.read_timeout = Some(read_timeout);
    config.write_timeout = Some(read_timeout);
    // Retries are ours: bounded by the request's time budget, and they honour Retry-After.
    config.default_retry = false;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kubeconfig(user: &str) -> SecretString {
        SecretString::new(format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:6443\ncontexts:\n- name: c\n  context:\n    cluster: k\n    user: u\nusers:\n- name: u\n  user:\n{user}"
        ))
    }

    #[tokio::test]
    async fn a_token_kubeconfig_becomes_a_config_without_kube_retries() {
        let c = client_config(
            &kubeconfig("    token: s3cr3t\n"),
            Duration::from_secs(2),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(c.cluster_url.to_string(), "https://127.0.0.1:6443/");
        assert!(!c.default_retry);
        assert_eq!(c.connect_timeout, Some(Duration::from_secs(2)));
    }

    #[tokio::test]
    async fn exec_plugins_files_and_garbage_are_refused_without_quoting_content() {
        for user in [
            "    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: aws\n",
            "    tokenFile: /var/run/s3cr3t\n",
            "    client-certificate: /tmp/s3cr3t.crt\n",
            "    auth-provider:\n      name: gcp\n",
        ] {
            let err = client_config(
                &kubeconfig(user),
                Duration::from_secs(1),
                Duration::from_secs(1),
            )
            .await
            .unwrap_err();
            assert!(matches!(err, ClusterError::Kubeconfig(_)), "{user}");
        }
        let err = client_config(
            &SecretString::new(": s3cr3t : [".to_owned()),
            Duration::from_secs(1),
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
    }

    #[test]
    fn listed_objects_keep_only_what_the_index_reads() {
        let obj: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "kargo.akuity.io/v1alpha1", "kind": "Warehouse",
            "metadata": {"name": "w", "namespace": "p", "managedFields": [{"manager": "kubectl"}]},
            "spec": {"interval": "5m0s", "subscriptions": [{"image": {"repoURL": "quay.io/a/b"}}]},
            "status": {"discoveredArtifacts": {"images": [{"tag": "v1"}]}}
        }))
        .unwrap();
        assert_eq!(
            slim(obj),
            serde_json::json!({
                "metadata": {"name": "w", "namespace": "p"},
                "spec": {"subscriptions": [{"image": {"repoURL": "quay.io/a/b"}}]}
            })
        );
    }

    #[test]
    fn transient_errors_are_429_5xx_transport_and_timeouts() {
        assert!(ClusterError::Throttled { retry_after: None }.is_transient());
        assert!(
            ClusterError::Status {
                code: 503,
                message: String::new()
            }
            .is_transient()
        );
        assert!(ClusterError::Transport("reset".into()).is_transient());
        assert!(ClusterError::Timeout.is_transient());
        assert!(!ClusterError::NotFound.is_transient());
        assert!(!ClusterError::Unauthorized.is_transient());
        assert!(
            !ClusterError::Status {
                code: 409,
                message: String::new()
            }
            .is_transient()
        );
    }

    #[test]
    fn api_statuses_map_to_variants() {
        let status = |code: u16| {
            let mut s = kube::core::Status::failure("m", "r").with_code(code);
            if code == 429 {
                s = s.with_details(kube::core::response::StatusDetails {
                    name: String::new(),
                    group: String::new(),
                    kind: String::new(),
                    uid: String::new(),
                    causes: Vec::new(),
                    retry_after_seconds: 2,
                });
            }
            ClusterError::from(kube::Error::Api(s.boxed()))
        };
        assert_eq!(status(401), ClusterError::Unauthorized);
        assert_eq!(status(403), ClusterError::Forbidden("m".into()));
        assert_eq!(status(404), ClusterError::NotFound);
        assert_eq!(
            status(429),
            ClusterError::Throttled {
                retry_after: Some(Duration::from_secs(2))
            }
        );
        assert_eq!(status(500).status(), Some(500));
    }
}
