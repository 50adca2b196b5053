//! The remote cluster: the [`WarehouseStore`] trait (list Warehouses, merge-patch one) and its
//! `kube` implementation over HTTPS with a bearer token, built in memory from a kubeconfig.
//!
//! A list is decoded page by page straight from the response text into [`ListedWarehouse`]s:
//! the pure core's `Deserialize` reads only names and `spec.subscriptions` and turns a
//! malformed Warehouse into an unreadable item, so no page is ever held as `DynamicObject`s or
//! JSON value trees, and one bad Warehouse never fails the list.
//!
//! The client under `kube` is quayhook's own (`transport`): HTTP/2 when the API server offers
//! it, so all the PATCHes of one push travel as concurrent streams on one kept-alive
//! connection, and HTTP/1.1 otherwise. A request that fails because that connection turned
//! out dead (after a Lambda freeze, or a load balancer's idle cut) is sent once more on a
//! fresh connection, outside the bounded retries: see [`KubeStore`].
//!
//! I/O. Errors are classified by HTTP status and transport failure into [`ClusterError`], so
//! callers decide on variants (404 drops an index entry, 401 re-reads the kubeconfig, 429/5xx
//! retry), never on message text. Nothing here logs or returns kubeconfig content.

mod transport;

use std::future::Future;
use std::time::Duration;

use kube::Resource;
use kube::api::{DynamicObject, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind, ListMeta, Request};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;

use kargo_match::index::{Index, IndexBuilder};
use kargo_match::token::SecretString;

use crate::cause::{Cause, Chain};
use kargo_match::warehouse::{GROUP, KIND, ListedWarehouse, PLURAL, VERSION, WarehouseKey};

/// Why a cluster call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// Returned when the kubeconfig cannot be used; the reason never quotes its content.
    #[error("kubeconfig unusable: {0}")]
    Kubeconfig(String),
    /// Returned when kube cannot build a client from an accepted kubeconfig (kube's errors
    /// here name the missing piece, never content).
    #[error("cannot build a client from the kubeconfig")]
    Client(#[source] Cause),
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
    #[error("cannot reach the API server")]
    Transport(#[source] Cause),
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
            other => ClusterError::Transport(Cause::new(other)),
        }
    }
}

/// Receives a Warehouse list one decoded page at a time (see [`WarehouseStore::list`]).
pub type PageSink<'a> = &'a mut (dyn FnMut(Vec<ListedWarehouse>) + Send);

/// Lists `namespace` (all namespaces when `None`) into an [`Index`], page by page: at most one
/// decoded page is alive beside the index being built.
///
/// # Errors
/// The failing page's [`ClusterError`].
pub async fn list_index<S: WarehouseStore + ?Sized>(
    store: &S,
    namespace: Option<&str>,
    page_size: u32,
) -> Result<Index, ClusterError> {
    let mut builder = IndexBuilder::new();
    store
        .list(namespace, page_size, &mut |items| builder.extend(items))
        .await?;
    Ok(builder.finish())
}

/// Lists and refreshes Warehouses in one cluster.
pub trait WarehouseStore: Send + Sync {
    /// Lists every Warehouse in `namespace` (all namespaces when `None`), following `continue`
    /// tokens with pages of `page_size`, and hands each page to `page` as soon as it is
    /// decoded, so a caller that indexes page by page never holds the whole list.
    ///
    /// Each page's items are in list order, each decoded or, when that one object is
    /// malformed, [`ListedWarehouse::Unreadable`] with its decode error; a malformed Warehouse
    /// never fails the list.
    ///
    /// # Errors
    /// The first failing page's [`ClusterError`] (the pages before it were handed over).
    fn list(
        &self,
        namespace: Option<&str>,
        page_size: u32,
        page: PageSink<'_>,
    ) -> impl Future<Output = Result<(), ClusterError>> + Send;

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
    /// [`ClusterError::Kubeconfig`] or [`ClusterError::Client`] when the text cannot be used.
    fn connect(
        &self,
        kubeconfig: &SecretString,
    ) -> impl Future<Output = Result<Self::Store, ClusterError>> + Send;
}

/// The `kube` implementation of [`WarehouseStore`].
///
/// A call that fails because its connection was dead (see `transport::is_dead_connection`:
/// closed, reset or gone away under the request) is sent once more, on a fresh connection,
/// before its result is returned, so it does not count as an attempt of the caller's bounded
/// retries. Both calls are safe to repeat: a list page is a read, and the refresh merge patch
/// sets one annotation to a fixed value, so applying it twice is applying it once.
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
}

impl WarehouseStore for KubeStore {
    async fn list(
        &self,
        namespace: Option<&str>,
        page_size: u32,
        sink: PageSink<'_>,
    ) -> Result<(), ClusterError> {
        let request = Request::new(DynamicObject::url_path(&self.resource, namespace));
        let mut params = ListParams::default().limit(page_size);
        loop {
            let page: Page = once_more_if_dead(|| async {
                let mut req = request.list(&params).map_err(kube::Error::BuildRequest)?;
                // The same tag `Api::list` sets, for kube's tracing layer.
                req.extensions_mut().insert("list");
                self.client.request(req).await
            })
            .await?;
            sink(page.items.unwrap_or_default());
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => return Ok(()),
            }
        }
    }

    async fn patch(&self, key: &WarehouseKey, patch: &Value) -> Result<(), ClusterError> {
        let request = Request::new(DynamicObject::url_path(
            &self.resource,
            Some(&key.namespace),
        ));
        let (params, merge) = (PatchParams::default(), Patch::Merge(patch));
        once_more_if_dead(|| async {
            let mut req = request
                .patch(&key.name, &params, &merge)
                .map_err(kube::Error::BuildRequest)?;
            // The same tag `Api::patch` sets, for kube's tracing layer.
            req.extensions_mut().insert("patch");
            // The answer is the whole patched object and only its status matters: an error
            // status is still decoded (kube reads it as a `Status`), a success body is skipped
            // without building a tree of it.
            self.client.request::<IgnoredAny>(req).await
        })
        .await?;
        Ok(())
    }
}

/// Runs `call`, and once more when it failed on a dead connection (the pool then holds none,
/// so the second call opens a fresh one). Callers pass only calls that are safe to repeat.
async fn once_more_if_dead<T, F, Fut>(call: F) -> Result<T, kube::Error>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    match call().await {
        Err(e) if transport::is_dead_connection(&e) => {
            tracing::debug!(cause = %Chain(&e), "connection to the API server was dead; sending again on a fresh one");
            call().await
        }
        other => other,
    }
}

/// One page of a Warehouse list (`WarehouseList`): the `continue` token and the items, each
/// decoded by [`ListedWarehouse`]'s `Deserialize`; `apiVersion`, `kind` and the rest are
/// skipped.
#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(default)]
    items: Option<Vec<ListedWarehouse>>,
}

/// Builds [`KubeStore`]s from kubeconfig text with quayhook's timeouts, on quayhook's HTTP/2
/// client (see the module docs).
#[derive(Clone, Debug)]
pub struct KubeConnector {
    /// TCP+TLS connect timeout.
    pub connect_timeout: Duration,
    /// Longest wait for the answer to one request.
    pub read_timeout: Duration,
    /// How long an idle connection to the API server is kept for the next call.
    pub idle_timeout: Duration,
}

impl KubeConnector {
    /// The connector with the configuration's timeouts: connect as configured, no single
    /// call longer than the whole request budget, idle connections kept as configured.
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            connect_timeout: config.connect_timeout,
            read_timeout: config.request_timeout,
            idle_timeout: config.cluster_idle_timeout,
        }
    }
}

impl Connector for KubeConnector {
    type Store = KubeStore;

    async fn connect(&self, kubeconfig: &SecretString) -> Result<KubeStore, ClusterError> {
        let config = client_config(kubeconfig, self.connect_timeout, self.read_timeout).await?;
        let client = transport::client(
            &config,
            transport::Tuning {
                connect_timeout: self.connect_timeout,
                response_timeout: self.read_timeout,
                idle_timeout: self.idle_timeout,
            },
        )?;
        Ok(KubeStore::new(client))
    }
}

/// What the bearer token of a kubeconfig's current context says about its own expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenExpiry {
    /// The current context has no bearer token (or the kubeconfig does not parse).
    NoToken,
    /// An EKS token, made afresh from the function's IAM role (15 minutes, renewed at 14).
    Eks,
    /// A token that is not a JWT: its expiry cannot be read.
    NotJwt,
    /// A JWT without `exp`: a legacy, non-expiring service-account token.
    Never,
    /// A JWT expiring at this Unix time (seconds).
    At(i64),
}

/// Reads the `exp` claim of the current context's bearer token, without verifying the token
/// (the base64url of its middle part). Pure: the token itself never leaves this function.
pub fn token_expiry(kubeconfig: &SecretString) -> TokenExpiry {
    use base64::Engine as _;
    // kube keeps the token in a `secrecy` string, exposed only by its serializer: to a JSON
    // value in memory, never to output.
    let token = Kubeconfig::from_yaml(kubeconfig.expose())
        .ok()
        .and_then(|parsed| {
            let context = parsed.current_context.as_deref()?;
            let user = parsed
                .contexts
                .iter()
                .find(|c| c.name == context)?
                .context
                .as_ref()?
                .user
                .clone()?;
            let info = parsed.auth_infos.iter().find(|a| a.name == user)?;
            let value = serde_json::to_value(info.auth_info.as_ref()?).ok()?;
            value.get("token")?.as_str().map(str::to_owned)
        });
    let Some(token) = token else {
        return TokenExpiry::NoToken;
    };
    if token.starts_with("k8s-aws-v1.") {
        return TokenExpiry::Eks;
    }
    let mut parts = token.split('.');
    let claims = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(payload), Some(_), None) => base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .ok()
            .and_then(|json| serde_json::from_slice::<Value>(&json).ok()),
        _ => None,
    };
    match claims {
        None => TokenExpiry::NotJwt,
        Some(claims) => claims
            .get("exp")
            .and_then(Value::as_i64)
            .map_or(TokenExpiry::Never, TokenExpiry::At),
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
/// [`ClusterError::Kubeconfig`] with a reason that names fields, never values, or
/// [`ClusterError::Client`] when kube refuses the accepted kubeconfig.
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
        // kube's messages for these variants name the missing piece, not content; parse
        // errors (which could quote content) were handled above.
        .map_err(|e| ClusterError::Client(Cause::new(e)))?;
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
    fn transient_errors_are_429_5xx_transport_and_timeouts() {
        assert!(ClusterError::Throttled { retry_after: None }.is_transient());
        assert!(
            ClusterError::Status {
                code: 503,
                message: String::new()
            }
            .is_transient()
        );
        assert!(ClusterError::Transport(Cause::new("reset")).is_transient());
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

    /// Exact request shapes against a mock API server, in the manner of controller-rs's
    /// `ApiServerVerifier`: the test plays the server's side of each exchange, in order.
    mod requests {
        use super::*;
        use http::{Method, Response, header};
        use kube::client::Body;
        use serde_json::json;
        use std::time::SystemTime;

        type Handle = tower_test::mock::Handle<http::Request<Body>, Response<Body>>;

        fn store() -> (KubeStore, Handle) {
            let (service, handle) = tower_test::mock::pair::<http::Request<Body>, Response<Body>>();
            (
                KubeStore::new(kube::Client::new(service, "default")),
                handle,
            )
        }

        /// What the store sent in one exchange.
        struct Sent {
            headers: http::HeaderMap,
            body: Vec<u8>,
        }

        /// Serves the next exchange: asserts the request's method and URI (path and query),
        /// answers `status` with the JSON `reply`, and returns the request's headers and body.
        async fn serve(
            handle: &mut Handle,
            method: Method,
            uri: &str,
            status: u16,
            reply: serde_json::Value,
        ) -> Sent {
            let (request, send) = handle.next_request().await.expect("no request was sent");
            assert_eq!(request.method(), method);
            assert_eq!(request.uri().to_string(), uri);
            let headers = request.headers().clone();
            let body = request.into_body().collect_bytes().await.unwrap().to_vec();
            send.send_response(
                Response::builder()
                    .status(status)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                    .unwrap(),
            );
            Sent { headers, body }
        }

        /// Runs the store's call and the server's side together, failing instead of hanging.
        async fn exchange<T>(
            client: impl Future<Output = T>,
            server: impl Future<Output = ()>,
        ) -> T {
            let both = async { tokio::join!(client, server).0 };
            tokio::time::timeout(Duration::from_secs(5), both)
                .await
                .expect("the exchange did not finish")
        }

        fn warehouse(ns: &str, name: &str, subscriptions: serde_json::Value) -> serde_json::Value {
            json!({
                "apiVersion": "kargo.akuity.io/v1alpha1", "kind": "Warehouse",
                "metadata": {"namespace": ns, "name": name, "resourceVersion": "1",
                             "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]},
                "spec": {"interval": "5m0s", "subscriptions": subscriptions},
                "status": {"discoveredArtifacts": {"images": [{"repoURL": "quay.io/a/b"}]}}
            })
        }

        fn list_page(continue_: Option<&str>, items: Vec<serde_json::Value>) -> serde_json::Value {
            let mut metadata = json!({"resourceVersion": "42"});
            if let Some(token) = continue_ {
                metadata["continue"] = json!(token);
            }
            json!({
                "apiVersion": "kargo.akuity.io/v1alpha1", "kind": "WarehouseList",
                "metadata": metadata, "items": items
            })
        }

        fn status(code: u16, reason: &str, details: serde_json::Value) -> serde_json::Value {
            json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("{reason} (test)"), "reason": reason, "details": details,
                "code": code
            })
        }

        /// Lists through `store`, keeping the pages as they were handed over.
        async fn pages(
            store: &KubeStore,
            namespace: Option<&str>,
            page_size: u32,
        ) -> Result<Vec<Vec<ListedWarehouse>>, ClusterError> {
            let mut pages = Vec::new();
            store
                .list(namespace, page_size, &mut |page| pages.push(page))
                .await
                .map(|()| pages)
        }

        const PROJECT: &str = "/apis/kargo.akuity.io/v1alpha1/namespaces/kargo-demo/warehouses";
        // kube's request builder starts every query with `&` (`…/warehouses?&limit=2`), as
        // `Api::list` does; the API server ignores the empty pair.

        #[tokio::test]
        async fn list_pages_with_limit_then_continue_and_decodes_each_item() {
            let (store, mut handle) = store();
            let image = json!([{"image": {"repoURL": "quay.io/a/b"}}]);
            let server = async {
                serve(
                    &mut handle,
                    Method::GET,
                    &format!("{PROJECT}?&limit=2"),
                    200,
                    list_page(
                        Some("tok/en=1"),
                        vec![
                            warehouse("kargo-demo", "a", image.clone()),
                            warehouse("kargo-demo", "broken", json!({"image": {}})),
                        ],
                    ),
                )
                .await;
                serve(
                    &mut handle,
                    Method::GET,
                    &format!("{PROJECT}?&limit=2&continue=tok%2Fen%3D1"),
                    200,
                    list_page(Some(""), vec![warehouse("kargo-demo", "c", json!(null))]),
                )
                .await;
            };
            let pages = exchange(pages(&store, Some("kargo-demo"), 2), server)
                .await
                .unwrap();
            let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
            assert_eq!(
                sizes,
                [2, 1],
                "page by page; an empty continue token ends the list"
            );
            let listed = pages.concat();
            assert!(
                matches!(&listed[0], ListedWarehouse::Readable(w) if w.key == WarehouseKey::new("kargo-demo", "a") && w.subscriptions.len() == 1)
            );
            assert_eq!(
                listed[1],
                ListedWarehouse::Unreadable {
                    namespace: Some("kargo-demo".into()),
                    name: Some("broken".into()),
                    error: kargo_match::warehouse::WarehouseError::SubscriptionsNotList,
                }
            );
            assert!(
                matches!(&listed[2], ListedWarehouse::Readable(w) if w.key.name == "c" && w.subscriptions.is_empty())
            );
        }

        #[tokio::test]
        async fn a_cluster_wide_list_uses_the_all_namespaces_path() {
            let (store, mut handle) = store();
            let server = async {
                serve(
                    &mut handle,
                    Method::GET,
                    "/apis/kargo.akuity.io/v1alpha1/warehouses?&limit=500",
                    200,
                    list_page(None, vec![warehouse("p", "w", json!([]))]),
                )
                .await;
            };
            let listed = exchange(pages(&store, None, 500), server)
                .await
                .unwrap()
                .concat();
            assert!(
                matches!(&listed[..], [ListedWarehouse::Readable(w)] if w.key == WarehouseKey::new("p", "w"))
            );
        }

        #[tokio::test]
        async fn a_list_with_null_items_is_empty() {
            let (store, mut handle) = store();
            let server = async {
                let page = json!({"kind": "WarehouseList", "metadata": {}, "items": null});
                serve(
                    &mut handle,
                    Method::GET,
                    &format!("{PROJECT}?&limit=5"),
                    200,
                    page,
                )
                .await;
            };
            let listed = exchange(pages(&store, Some("kargo-demo"), 5), server)
                .await
                .map(|p| p.concat());
            assert_eq!(listed, Ok(Vec::new()));
        }

        #[tokio::test]
        async fn patch_sends_the_merge_patch_to_the_warehouse() {
            let (store, mut handle) = store();
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_787_334_701);
            let patch = kargo_match::warehouse::refresh_patch(now);
            let server = async {
                let sent = serve(
                    &mut handle,
                    Method::PATCH,
                    &format!("{PROJECT}/w?"),
                    200,
                    warehouse("kargo-demo", "w", json!([])),
                )
                .await;
                assert_eq!(
                    sent.headers.get(header::CONTENT_TYPE).unwrap(),
                    "application/merge-patch+json"
                );
                assert_eq!(
                    String::from_utf8(sent.body).unwrap(),
                    r#"{"metadata":{"annotations":{"kargo.akuity.io/refresh":"2026-08-21T17:51:41.000000000Z"}}}"#
                );
            };
            let key = WarehouseKey::new("kargo-demo", "w");
            exchange(store.patch(&key, &patch), server).await.unwrap();
        }

        #[tokio::test]
        async fn a_404_status_is_not_found() {
            let (store, mut handle) = store();
            let server = async {
                let details = json!({"name": "w", "group": GROUP, "kind": PLURAL});
                serve(
                    &mut handle,
                    Method::PATCH,
                    &format!("{PROJECT}/w?"),
                    404,
                    status(404, "NotFound", details),
                )
                .await;
            };
            let key = WarehouseKey::new("kargo-demo", "w");
            let patched = exchange(store.patch(&key, &json!({})), server).await;
            assert_eq!(patched, Err(ClusterError::NotFound));
        }

        #[tokio::test]
        async fn a_429_status_is_throttled_with_its_retry_after() {
            let (store, mut handle) = store();
            let server = async {
                let details = json!({"causes": [{"message": "slow down"}], "retryAfterSeconds": 3});
                serve(
                    &mut handle,
                    Method::GET,
                    &format!("{PROJECT}?&limit=10"),
                    429,
                    status(429, "TooManyRequests", details),
                )
                .await;
            };
            let listed = exchange(pages(&store, Some("kargo-demo"), 10), server)
                .await
                .map(|p| p.concat());
            assert_eq!(
                listed,
                Err(ClusterError::Throttled {
                    retry_after: Some(Duration::from_secs(3))
                })
            );
        }

        /// Fails the next exchange with a transport error instead of an answer.
        async fn fail(handle: &mut Handle, error: impl Into<tower::BoxError>) {
            let (_, send) = handle.next_request().await.expect("no request was sent");
            send.send_error(error);
        }

        fn reset() -> std::io::Error {
            std::io::Error::from(std::io::ErrorKind::ConnectionReset)
        }

        #[tokio::test]
        async fn a_patch_that_finds_its_connection_dead_is_sent_once_more() {
            let (store, mut handle) = store();
            let server = async {
                fail(&mut handle, reset()).await;
                let again = serve(
                    &mut handle,
                    Method::PATCH,
                    &format!("{PROJECT}/w?"),
                    200,
                    warehouse("kargo-demo", "w", json!([])),
                )
                .await;
                assert_eq!(String::from_utf8(again.body).unwrap(), r#"{"a":1}"#);
            };
            let key = WarehouseKey::new("kargo-demo", "w");
            let patched = exchange(store.patch(&key, &json!({"a": 1})), server).await;
            assert_eq!(patched, Ok(()));
        }

        #[tokio::test]
        async fn a_list_page_is_sent_once_more_but_not_twice() {
            let (store, mut handle) = store();
            let server = async {
                fail(&mut handle, reset()).await;
                fail(&mut handle, reset()).await;
            };
            let listed = exchange(pages(&store, Some("kargo-demo"), 5), server)
                .await
                .map(|p| p.concat());
            assert!(
                matches!(listed, Err(ClusterError::Transport(_))),
                "{listed:?}"
            );
            drop(store);
            assert!(handle.next_request().await.is_none(), "no third request");
        }

        #[tokio::test]
        async fn other_transport_errors_are_left_to_the_bounded_retries() {
            let (store, mut handle) = store();
            let server = fail(&mut handle, "tls handshake failed");
            let key = WarehouseKey::new("kargo-demo", "w");
            let patched = exchange(store.patch(&key, &json!({})), server).await;
            assert!(
                matches!(patched, Err(ClusterError::Transport(_))),
                "{patched:?}"
            );
            drop(store);
            assert!(handle.next_request().await.is_none(), "not sent again");
        }
    }
}
