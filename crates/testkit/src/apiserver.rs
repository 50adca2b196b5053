//! A local Kubernetes API server for tests and the demo: HTTPS with a bearer token, in memory.
//!
//! It serves the slice of the API quayhook and its scenarios touch — Namespaces,
//! ServiceAccounts (and their `token` subresource: JWT-shaped tokens with readable claims,
//! expiring, optionally bound to a Secret whose deletion revokes them), Secrets, ConfigMaps,
//! RBAC, Kargo `Warehouse`s, CRDs, and self access reviews — following the API conventions
//! closely enough that the same `kube` client code runs against it and against a real
//! cluster: `Status` failures with real messages and reasons, resourceVersions from one
//! counter, paged lists with opaque continue tokens read from a snapshot (and `410 Expired`
//! once compacted), merge and JSON patches, optimistic concurrency, RBAC authorization, and
//! the behaviour of a bare kube-apiserver without controller-manager (a deleted Namespace
//! stays `Terminating`).
//!
//! Tests also reach behind the API: [`ApiServer::apply`] and friends edit the store directly,
//! [`ApiServer::inject`] makes requests fail, hang, drop or slow down, and
//! [`ApiServer::requests`] shows what the client sent.
//!
//! Test support, I/O: binds a TCP listener on loopback and spawns tokio tasks; dropping the [`ApiServer`]
//! stops them. Everything is `Send + Sync`; state sits behind `std::sync::Mutex`es that are
//! never held across an `.await`.
//!
//! # Layout
//! - `store`: the resource table and the versioned (MVCC) object store
//! - `list`: LIST paging, continue tokens, resourceVersion semantics, selectors
//! - `objects`: get, create, update, patch, delete
//! - `strategy`: per-resource write rules (validation, defaults, NamespaceLifecycle)
//! - `patch`: merge patch (RFC 7386) and JSON patch (RFC 6902)
//! - `auth`: token identities and the RBAC authorizer
//! - `eks`: EKS tokens (`k8s-aws-v1.…`): aws-iam-authenticator's checks, STS, access entries
//! - `status`: `metav1.Status` failures
//! - `route`: paths to resources, verbs and authorizer attributes
//! - `handler`: one HTTP request, from faults and authentication to the recorded log line
//! - `discovery`: `/version`, `/api`, `/apis` documents
//! - `tls`: the generated CA and server certificate
//! - `connections`: accepted connections, their protocol and request counts, and cutting them

mod auth;
mod connections;
mod discovery;
mod eks;
mod fault;
mod handler;
mod list;
mod objects;
mod patch;
mod route;
mod status;
mod store;
mod strategy;
mod tls;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use auth::{BoundObject, Identity};
pub use connections::ConnectionInfo;
use connections::{Connections, OpenGuard};
pub use fault::{Fault, FaultEffect};
use store::{Store, by_plural, key};

/// The user of the admin token (as kubeadm names it).
const ADMIN_USER: &str = "kubernetes-admin";

/// A running API server. Dropping it stops the listener and closes every connection.
pub struct ApiServer {
    shared: Arc<Shared>,
    url: String,
    ca_pem: String,
    admin_token: String,
    accept: tokio::task::JoinHandle<()>,
    // Held only to be dropped: connections watch it and close when it goes.
    _shutdown: watch::Sender<()>,
}

/// A request as the server saw it, for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// The HTTP method (`GET`, `PATCH`, …).
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The raw query string (`limit=2&continue=…`), empty when there is none.
    pub query: String,
    /// The Kubernetes verb: get, list, watch, create, update, patch, delete, deletecollection;
    /// for non-resource paths the lower-case HTTP method.
    pub verb: String,
    /// The plural resource (`warehouses`), `plural/subresource` for a subresource
    /// (`serviceaccounts/token`), empty for non-resource paths.
    pub resource: String,
    /// The namespace in the path, if any.
    pub namespace: Option<String>,
    /// The object name in the path, if any.
    pub name: Option<String>,
    /// The HTTP status answered; 0 when a fault dropped or hung the request.
    pub status: u16,
    /// The authenticated user name; empty when the token was missing or unknown.
    pub user: String,
}

/// The application protocols the server offers through ALPN.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Alpn {
    /// `h2`, then `http/1.1`, as kube-apiserver does.
    #[default]
    H2AndHttp1,
    /// `http/1.1` only, as a proxy in front of an API server may.
    Http1Only,
}

type Observer = Arc<dyn Fn(&RecordedRequest) + Send + Sync>;

/// State shared by the handle and every connection task.
struct Shared {
    store: Mutex<Store>,
    tokens: Mutex<HashMap<String, Identity>>,
    /// EKS token authentication, when on ([`ApiServer::enable_eks_auth`]).
    eks: Mutex<Option<eks::EksAuth>>,
    faults: Mutex<Vec<Fault>>,
    latency: Mutex<Duration>,
    log: Mutex<Vec<RecordedRequest>>,
    observer: Mutex<Option<Observer>>,
    in_flight: AtomicUsize,
    connections: Connections,
    peak: AtomicUsize,
    grants: AtomicU64,
    /// `host:port` as clients reach it, for `/api` discovery.
    address: String,
}

/// Locks a mutex, ignoring poisoning: every critical section leaves the state consistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn record(&self, r: RecordedRequest) {
        let observer = lock(&self.observer).clone();
        if let Some(f) = observer {
            f(&r);
        }
        lock(&self.log).push(r);
    }

    /// Issues a token for a ServiceAccount, valid for `ttl`, for `audiences`, bound to
    /// `bound_object` when given (deleting that object revokes the token). `None` when the
    /// ServiceAccount does not exist. The token is shaped like a real one: a JWT whose claims
    /// (`sub`, `aud`, `exp`, `iat`, `kubernetes.io`) can be read without verifying; its
    /// signature is random bytes, and the server knows its tokens by their whole text.
    fn issue_token(
        &self,
        namespace: &str,
        name: &str,
        ttl: Duration,
        audiences: &[String],
        bound_object: Option<BoundObject>,
        dry_run: bool,
    ) -> Option<(String, SystemTime)> {
        let uid = {
            let store = lock(&self.store);
            let sa = store.get("serviceaccounts", &key(Some(namespace), name))?;
            sa["metadata"]["uid"].as_str().unwrap_or("").to_string()
        };
        let now = SystemTime::now();
        let expires = now + ttl;
        let unix = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut k8s = json!({
            "namespace": namespace,
            "serviceaccount": {"name": name, "uid": uid},
        });
        if let Some(o) = &bound_object {
            let kind = if o.resource == "pods" {
                "pod"
            } else {
                "secret"
            };
            k8s[kind] = json!({"name": o.name, "uid": o.uid});
        }
        let claims = json!({
            "aud": audiences,
            "exp": unix(expires),
            "iat": unix(now),
            "nbf": unix(now),
            "iss": "https://kubernetes.default.svc.cluster.local",
            "jti": new_uid(),
            "kubernetes.io": k8s,
            "sub": format!("system:serviceaccount:{namespace}:{name}"),
        });
        let header = json!({"alg": "RS256", "kid": "quayhook-testkit"});
        let token = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            URL_SAFE_NO_PAD.encode(random_bytes::<64>())
        );
        if !dry_run {
            let mut who = Identity::service_account(namespace, name, &uid);
            who.expires = Some(expires);
            who.bound_object = bound_object;
            lock(&self.tokens).insert(token.clone(), who);
        }
        Some((token, expires))
    }
}

/// The audience of a token requested without one (the API server's `--api-audiences`).
const DEFAULT_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the OS random source failed");
    b
}

/// An opaque bearer token.
fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// A version 4 UUID, as object uids are.
fn new_uid() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The five characters `generateName` appends (the apiserver's alphabet, no vowels).
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    random_bytes::<5>()
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// RFC 3339 in UTC with second precision, as `metav1.Time` serializes.
fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    jiff::Timestamp::from_second(i64::try_from(secs).unwrap_or(0))
        .map(|ts| ts.to_string())
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

impl ApiServer {
    /// Starts a server on `127.0.0.1` at a free port.
    ///
    /// # Panics
    /// When the listener cannot be bound.
    pub async fn start() -> ApiServer {
        ApiServer::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .expect("bind the test API server on 127.0.0.1")
    }

    /// Starts a server on `127.0.0.1` at a free port offering `alpn`.
    ///
    /// # Panics
    /// When the listener cannot be bound.
    pub async fn start_with(alpn: Alpn) -> ApiServer {
        ApiServer::start_on_with(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), alpn)
            .await
            .expect("bind the test API server on 127.0.0.1")
    }

    /// Starts a server on `addr` (port 0 picks a free one).
    ///
    /// # Errors
    /// Returned when the listener cannot be bound.
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<ApiServer> {
        ApiServer::start_on_with(addr, Alpn::default()).await
    }

    /// Starts a server on `addr` (port 0 picks a free one) offering `alpn`.
    ///
    /// # Errors
    /// Returned when the listener cannot be bound.
    pub async fn start_on_with(addr: SocketAddr, alpn: Alpn) -> std::io::Result<ApiServer> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let reach_ip = match local.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let reach = SocketAddr::new(reach_ip, local.port());
        let (config, ca_pem) = tls::tls_config(local.ip(), alpn);
        let admin_token = random_token();
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new()),
            tokens: Mutex::new(HashMap::new()),
            eks: Mutex::new(None),
            faults: Mutex::new(Vec::new()),
            latency: Mutex::new(Duration::ZERO),
            log: Mutex::new(Vec::new()),
            observer: Mutex::new(None),
            in_flight: AtomicUsize::new(0),
            connections: Connections::default(),
            peak: AtomicUsize::new(0),
            grants: AtomicU64::new(0),
            address: reach.to_string(),
        });
        lock(&shared.tokens).insert(
            admin_token.clone(),
            Identity::new(ADMIN_USER, &["system:masters"]),
        );
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            objects::apply(&mut lock(&shared.store), obj).expect("seed namespaces");
        }
        for obj in auth::bootstrap_policy() {
            objects::apply(&mut lock(&shared.store), obj).expect("seed the bootstrap RBAC policy");
        }

        let (shutdown, closed) = watch::channel(());
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let accept_shared = Arc::clone(&shared);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    // Out of file descriptors and the like: back off, keep serving.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let shared = Arc::clone(&accept_shared);
                let mut closed = closed.clone();
                tokio::spawn(async move {
                    let conn = async move {
                        let handshake =
                            tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp));
                        let Ok(Ok(tls)) = handshake.await else {
                            return;
                        };
                        let protocol = tls.get_ref().1.alpn_protocol();
                        let conn = shared.connections.accepted(protocol);
                        let _open = OpenGuard(Arc::clone(&conn));
                        let serving = Arc::clone(&conn);
                        let service = service_fn(move |req| {
                            let (shared, conn) = (Arc::clone(&shared), Arc::clone(&serving));
                            async move {
                                if !conn.admit() {
                                    // Cut: the connection closes under this request, unanswered.
                                    return std::future::pending().await;
                                }
                                handler::serve(shared, req).await
                            }
                        });
                        let builder =
                            hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                        // Errors here are the client going away or an injected drop.
                        tokio::select! {
                            _ = builder.serve_connection(TokioIo::new(tls), service) => {}
                            () = conn.killed() => {}
                        }
                    };
                    tokio::select! {
                        () = conn => {}
                        _ = closed.changed() => {}
                    }
                });
            }
        });
        let url = match reach_ip {
            IpAddr::V6(ip) => format!("https://[{ip}]:{}", local.port()),
            IpAddr::V4(ip) => format!("https://{ip}:{}", local.port()),
        };
        Ok(ApiServer {
            shared,
            url,
            ca_pem,
            admin_token,
            accept,
            _shutdown: shutdown,
        })
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The PEM of the CA that signed the server certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A token of `kubernetes-admin` in `system:masters`, allowed everything.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// A kubeconfig with one cluster (this server, its CA inline), one user (`token`) and one
    /// context, set as current, with `namespace` as its default namespace when given.
    pub fn kubeconfig_yaml(&self, token: &str, namespace: Option<&str>) -> String {
        // JSON strings are valid YAML double-quoted scalars, whatever the token holds.
        let quote = |s: &str| serde_json::to_string(s).unwrap_or_default();
        let ns = namespace
            .map(|ns| format!("    namespace: {}\n", quote(ns)))
            .unwrap_or_default();
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: quayhook-test
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: quayhook-test
  user:
    token: {token}
contexts:
- name: quayhook-test
  context:
    cluster: quayhook-test
    user: quayhook-test
{ns}current-context: quayhook-test
preferences: {{}}
",
            server = quote(&self.url),
            ca = STANDARD.encode(&self.ca_pem),
            token = quote(token),
        )
    }

    /// Registers a bearer token for `user` in `groups` (plus `system:authenticated`).
    pub fn add_token(&self, token: &str, user: &str, groups: &[&str]) {
        lock(&self.shared.tokens).insert(token.to_string(), Identity::new(user, groups));
    }

    /// Authenticates EKS bearer tokens (`k8s-aws-v1.…`) from now on, as an EKS control plane
    /// named `cluster` does: aws-iam-authenticator's checks, a signature check with the keys
    /// given to [`ApiServer::eks_signing_key`] (what STS verifies; moto does not), the caller's
    /// ARN from moto's `GetCallerIdentity` at `sts_endpoint` (`http://…`), and the access
    /// entries of [`ApiServer::eks_access_entry`]. A token that fails any step gets 401.
    pub fn enable_eks_auth(&self, cluster: &str, sts_endpoint: &str) {
        let mut eks = lock(&self.shared.eks);
        let auth = eks.get_or_insert_with(eks::EksAuth::default);
        auth.cluster = cluster.to_string();
        auth.sts_endpoint = sts_endpoint.to_string();
    }

    /// Lets the STS stand-in verify signatures made with this access key (as STS knows the
    /// keys it issued). Call [`ApiServer::enable_eks_auth`] first.
    pub fn eks_signing_key(&self, access_key_id: &str, secret_access_key: &str) {
        if let Some(auth) = lock(&self.shared.eks).as_mut() {
            auth.keys
                .insert(access_key_id.to_string(), secret_access_key.to_string());
        }
    }

    /// An access entry (`aws eks create-access-entry --principal-arn … --username …
    /// --kubernetes-groups …`): callers whose canonical ARN is `principal_arn` (an IAM role
    /// ARN for an assumed role's sessions) are `username` in `groups`. Call
    /// [`ApiServer::enable_eks_auth`] first.
    pub fn eks_access_entry(&self, principal_arn: &str, username: &str, groups: &[&str]) {
        if let Some(auth) = lock(&self.shared.eks).as_mut() {
            let groups = groups.iter().map(|g| g.to_string()).collect();
            auth.access_entries
                .insert(principal_arn.to_string(), (username.to_string(), groups));
        }
    }

    /// Why the EKS tokens refused so far were refused (aws-iam-authenticator's and STS's
    /// reasons, e.g. `SignatureDoesNotMatch`), oldest first; the clients saw 401.
    pub fn eks_refusals(&self) -> Vec<String> {
        lock(&self.shared.eks)
            .as_ref()
            .map(|auth| auth.refusals.clone())
            .unwrap_or_default()
    }

    /// Forgets a token: requests bearing it get 401 from now on (a rotated credential).
    pub fn revoke_token(&self, token: &str) {
        lock(&self.shared.tokens).remove(token);
    }

    /// Whether requests bearing `token` authenticate now: it is known, not expired, its
    /// ServiceAccount is the one it was issued for, and the object it is bound to (a
    /// TokenRequest's `boundObjectRef`) still exists. Deleting that object revokes the token.
    pub fn authenticates(&self, token: &str) -> bool {
        let who = lock(&self.shared.tokens).get(token).cloned();
        who.is_some_and(|w| w.valid(&lock(&self.shared.store), SystemTime::now()))
    }

    /// Issues a ServiceAccount token valid for `ttl`, bypassing TokenRequest's 10-minute
    /// minimum so tests can watch one expire.
    ///
    /// # Panics
    /// When the ServiceAccount does not exist.
    pub fn issue_token(&self, namespace: &str, service_account: &str, ttl: Duration) -> String {
        let audiences = [DEFAULT_AUDIENCE.to_string()];
        self.shared
            .issue_token(namespace, service_account, ttl, &audiences, None, false)
            .unwrap_or_else(|| {
                panic!("issue_token: no ServiceAccount {namespace}/{service_account}")
            })
            .0
    }

    /// Creates or replaces an object directly in the store, bypassing authorization and
    /// admission. Sets uid and creationTimestamp (kept on replace), `generation` (bumped when
    /// the spec changes) and a new resourceVersion; keeps `status` as given. A namespaced
    /// object without a namespace goes to `default`; when its Namespace does not exist it is
    /// created first (a test convenience a real cluster would not offer). Returns the stored
    /// object.
    ///
    /// # Panics
    /// When the object's `apiVersion`/`kind` is not served here, or it has no name.
    pub fn apply(&self, obj: Value) -> Value {
        self.try_apply(obj).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`ApiServer::apply`] that reports an object it cannot store instead of panicking.
    ///
    /// # Errors
    /// Returned when the object's `apiVersion`/`kind` is not served here, or it has no name.
    pub fn try_apply(&self, obj: Value) -> Result<Value, String> {
        objects::apply(&mut lock(&self.shared.store), obj)
    }

    /// The current state of an object, by plural resource name (`"warehouses"`).
    pub fn get(&self, resource: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        lock(&self.shared.store)
            .get(resource, &key(namespace, name))
            .cloned()
    }

    /// Removes an object from the store at once (no finalizers, no Terminating phase).
    pub fn delete(&self, resource: &str, namespace: Option<&str>, name: &str) {
        if let Some(def) = by_plural(resource) {
            lock(&self.shared.store).remove(def.plural, &key(namespace, name));
        }
    }

    /// The objects of a resource in one namespace (all namespaces when `None`), in the order
    /// a list returns them.
    pub fn list(&self, resource: &str, namespace: Option<&str>) -> Vec<Value> {
        let store = lock(&self.shared.store);
        let prefix = namespace.map(|ns| format!("{ns}/")).unwrap_or_default();
        store
            .scan(resource, &prefix, "", store.revision())
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Compacts the store's history at the current revision: continue tokens and list
    /// resourceVersions issued before now get `410 Expired`, as after an etcd compaction.
    pub fn compact(&self) {
        let mut store = lock(&self.shared.store);
        let at = store.revision();
        store.compact(at);
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        lock(&self.shared.store).revision()
    }

    /// Adds a fault. Faults are checked in the order added.
    pub fn inject(&self, fault: Fault) {
        lock(&self.shared.faults).push(fault);
    }

    /// Removes every fault (the global latency stays).
    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// Delays every request by `d` (zero turns it off).
    pub fn set_latency(&self, d: Duration) {
        *lock(&self.shared.latency) = d;
    }

    /// Every request since the last reset, in the order they finished.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.log).clone()
    }

    /// How many recorded requests had this verb on this resource (`count("patch",
    /// "warehouses")`), whatever their status.
    pub fn count(&self, verb: &str, resource: &str) -> usize {
        lock(&self.shared.log)
            .iter()
            .filter(|r| r.verb == verb && r.resource == resource)
            .count()
    }

    /// Clears the request log and the concurrency peak.
    pub fn reset_requests(&self) {
        lock(&self.shared.log).clear();
        let now = self.shared.in_flight.load(Ordering::SeqCst);
        self.shared.peak.store(now, Ordering::SeqCst);
    }

    /// The most requests in flight at once since the last reset.
    pub fn max_concurrency(&self) -> usize {
        self.shared.peak.load(Ordering::SeqCst)
    }

    /// How many TLS connections the server accepted since it started (not reset by
    /// [`ApiServer::reset_requests`]: compare two readings).
    pub fn connections(&self) -> usize {
        self.shared.connections.count()
    }

    /// Every accepted connection in accept order: its ALPN protocol, the requests it carried
    /// and whether it is still open.
    pub fn connection_log(&self) -> Vec<ConnectionInfo> {
        self.shared.connections.snapshot()
    }

    /// Cuts every open connection silently, as a load balancer's idle timeout or a lost NAT
    /// mapping does to a client that was frozen: the client is told nothing, and finds out by
    /// sending, as the next request on such a connection closes it without an answer (with
    /// every other request on it). Connections accepted later are not affected.
    pub fn drop_connections(&self) {
        self.shared.connections.doom_open();
    }

    /// Closes every open connection now (the client sees the close while idle), as an API
    /// server that restarts does.
    pub fn close_connections(&self) {
        self.shared.connections.close_open();
    }

    /// Calls `f` with every request as it is recorded (the example binary logs them).
    pub fn on_request(&self, f: impl Fn(&RecordedRequest) + Send + Sync + 'static) {
        *lock(&self.shared.observer) = Some(Arc::new(f));
    }

    /// Grants the `quayhook` ServiceAccount (namespace `quayhook`) exactly what `deploy/rbac.sh`
    /// grants: list and patch on Warehouses (the runtime's two verbs) in each of `namespaces`,
    /// or in every namespace when `namespaces` is `None`. Returns a fresh token (empty when the
    /// list is empty).
    pub fn grant_quayhook(&self, namespaces: Option<&[&str]>) -> String {
        let grant = |scope: Option<&str>| {
            self.grant_service_account(
                "quayhook",
                "quayhook",
                scope,
                "kargo.akuity.io",
                &["warehouses"],
                &["list", "patch"],
            )
        };
        match namespaces {
            None => grant(None),
            // Every namespace is granted; the token of the last grant is as good as any.
            Some(list) => list.iter().fold(String::new(), |_, ns| grant(Some(ns))),
        }
    }

    /// Grants `verbs` on `resources` of `api_group` to ServiceAccount `namespace/sa` (created
    /// if missing): a Role and RoleBinding in namespace `scope`, or a ClusterRole and
    /// ClusterRoleBinding when `scope` is `None` — the objects a real cluster would hold.
    /// Returns a fresh token for the ServiceAccount, valid for an hour.
    pub fn grant_service_account(
        &self,
        namespace: &str,
        sa: &str,
        scope: Option<&str>,
        api_group: &str,
        resources: &[&str],
        verbs: &[&str],
    ) -> String {
        if self.get("serviceaccounts", Some(namespace), sa).is_none() {
            self.apply(json!({
                "apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": sa, "namespace": namespace},
            }));
        }
        let n = self.shared.grants.fetch_add(1, Ordering::SeqCst);
        let rules = json!([{"apiGroups": [api_group], "resources": resources, "verbs": verbs}]);
        let subject = json!([{"kind": "ServiceAccount", "name": sa, "namespace": namespace}]);
        let rbac = "rbac.authorization.k8s.io/v1";
        let (role_kind, binding_kind, name, meta) = match scope {
            Some(ns) => {
                let name = format!("{sa}-grant-{n}");
                let meta = json!({"name": name, "namespace": ns});
                ("Role", "RoleBinding", name, meta)
            }
            None => {
                let name = format!("{namespace}-{sa}-grant-{n}");
                let meta = json!({"name": name});
                ("ClusterRole", "ClusterRoleBinding", name, meta)
            }
        };
        self.apply(
            json!({"apiVersion": rbac, "kind": role_kind, "metadata": meta, "rules": rules}),
        );
        self.apply(json!({
            "apiVersion": rbac, "kind": binding_kind, "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": name},
            "subjects": subject,
        }));
        self.issue_token(namespace, sa, Duration::from_secs(3600))
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
