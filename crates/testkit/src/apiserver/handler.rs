//! One HTTP request, start to finish: route, authenticate, injected faults and latency,
//! authorize, dispatch to the verb, record. The only code here that does I/O is reading the
//! body and sleeping; the store lock is taken only in synchronous sections.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{AUTHORIZATION, CONNECTION, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use super::auth::{self, Attributes, BoundObject, Identity};
use super::discovery::{api_group, api_group_list, api_resource_list, api_versions, version};
use super::list::{self, ListOptions};
use super::objects::{self, PatchType, Target};
use super::route::{Route, attributes, parse_query, route, verb_of};
use super::status::ApiError;
use super::store::{ResourceDef, key};
use super::{DEFAULT_AUDIENCE, FaultEffect, RecordedRequest, Shared, lock, new_uid, rfc3339};

/// The largest request body a real API server accepts (3 MiB).
const BODY_LIMIT: usize = 3 * 1024 * 1024;

/// Returned by the service to make hyper close the connection without answering.
#[derive(Debug)]
pub(super) struct Dropped;

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection dropped by an injected fault")
    }
}

impl std::error::Error for Dropped {}

/// A response body and status, before headers.
struct Reply {
    code: u16,
    body: Vec<u8>,
    content_type: &'static str,
    retry_after: Option<u64>,
    /// Sends `Connection: close`.
    close: bool,
}

impl Reply {
    fn json(code: u16, v: &Value) -> Reply {
        Reply {
            code,
            body: serde_json::to_vec(v).unwrap_or_default(),
            content_type: "application/json",
            retry_after: None,
            close: false,
        }
    }

    fn error(e: &ApiError) -> Reply {
        Reply {
            code: e.code,
            body: e.body(),
            content_type: "application/json",
            retry_after: e.retry_after,
            close: false,
        }
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        let mut res = Response::new(Full::new(Bytes::from(self.body)));
        *res.status_mut() =
            StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let h = res.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        h.insert(
            "cache-control",
            HeaderValue::from_static("no-cache, private"),
        );
        if let Ok(v) = HeaderValue::from_str(&new_uid()) {
            h.insert("audit-id", v);
        }
        if let Some(secs) = self.retry_after {
            h.insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.close {
            h.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        res
    }
}

/// Counts a request in flight for as long as it lives.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> InFlight<'a> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = shared.in_flight.fetch_add(1, SeqCst) + 1;
        shared.peak.fetch_max(now, SeqCst);
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn authenticate(shared: &Shared, headers: &HeaderMap) -> Option<Identity> {
    let header = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    let who = lock(&shared.tokens).get(token).cloned()?;
    who.valid(&lock(&shared.store), SystemTime::now())
        .then_some(who)
}

/// Injected effects that apply to this request: total added latency, and the first terminal
/// effect (status, drop or hang). Each fault applied uses up one of its `times`.
fn take_faults(shared: &Shared, method: &Method, target: &str) -> (Duration, Option<FaultEffect>) {
    let mut faults = lock(&shared.faults);
    let mut extra = *lock(&shared.latency);
    let mut terminal = None;
    for f in faults.iter_mut() {
        if f.times == Some(0) || !f.matches(method, target) {
            continue;
        }
        match &f.effect {
            FaultEffect::Latency(d) => extra += *d,
            _ if terminal.is_some() => continue,
            effect => terminal = Some(effect.clone()),
        }
        if let Some(n) = f.times.as_mut() {
            *n -= 1;
        }
    }
    faults.retain(|f| f.times != Some(0));
    (extra, terminal)
}

/// The log entry of a request, before its status is known.
fn record_of(
    method: &Method,
    path: &str,
    query: &str,
    verb: &str,
    route: &Route,
    who: Option<&Identity>,
) -> RecordedRequest {
    let mut record = RecordedRequest {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        verb: verb.to_string(),
        resource: String::new(),
        namespace: None,
        name: None,
        status: 0,
        user: who.map(|w| w.user.clone()).unwrap_or_default(),
    };
    if let Route::Resource {
        def,
        namespace,
        name,
        subresource,
    } = route
    {
        record.resource = if subresource.is_empty() {
            def.plural.to_string()
        } else {
            format!("{}/{subresource}", def.plural)
        };
        record.namespace = namespace.clone();
        record.name = Some(name.clone()).filter(|n| !n.is_empty());
    }
    record
}

/// Reads the whole body, up to [`BODY_LIMIT`].
async fn read_body(body: Incoming) -> Result<Bytes, Reply> {
    match Limited::new(body, BODY_LIMIT).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Reply {
            // The rest of the body is unread: the connection cannot be reused.
            close: true,
            ..Reply::error(&ApiError::too_large(BODY_LIMIT))
        }),
        Err(_) => Err(Reply::error(&ApiError::bad_request(
            "error reading request body",
        ))),
    }
}

/// The hyper service: answers one request.
pub(super) async fn serve(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let _in_flight = InFlight::enter(&shared);
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    let query_str = parts.uri.query().unwrap_or("");
    let target = if query_str.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query_str}")
    };
    let route = route(path);
    let query = parse_query(query_str);
    let verb = verb_of(&parts.method, &route, query.as_deref().unwrap_or(&[]));
    let who = match authenticate(&shared, &parts.headers) {
        None => super::eks::authenticate(&shared, &parts.headers).await,
        known => known,
    };
    let mut record = record_of(&parts.method, path, query_str, &verb, &route, who.as_ref());

    let (delay, terminal) = take_faults(&shared, &parts.method, &target);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match terminal {
        Some(FaultEffect::Drop) => {
            shared.record(record);
            return Err(Dropped);
        }
        Some(FaultEffect::Hang) => {
            shared.record(record);
            return std::future::pending().await;
        }
        _ => {}
    }
    let reply = match (terminal, read_body(body).await) {
        (Some(FaultEffect::Status { code, retry_after }), _) => {
            Reply::error(&ApiError::injected(code, retry_after))
        }
        (_, Err(reply)) => reply,
        (_, Ok(_)) if matches!(route, Route::Health) => Reply {
            code: 200,
            body: b"ok".to_vec(),
            content_type: "text/plain; charset=utf-8",
            retry_after: None,
            close: false,
        },
        (_, Ok(body)) => match (&who, &query) {
            (None, _) => Reply::error(&ApiError::unauthorized()),
            (_, None) => Reply::error(&ApiError::bad_request("invalid query string")),
            (Some(who), Some(query)) => {
                let call = Call {
                    shared: &shared,
                    who,
                    method: &parts.method,
                    route: &route,
                    attrs: attributes(&verb, &route, path),
                    query,
                    content_type: parts
                        .headers
                        .get(CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or(""),
                    body,
                };
                call.dispatch().unwrap_or_else(|e| Reply::error(&e))
            }
        },
    };
    record.status = reply.code;
    shared.record(record);
    Ok(reply.into_response())
}

/// An authenticated request, ready to authorize and run.
struct Call<'a> {
    shared: &'a Shared,
    who: &'a Identity,
    method: &'a Method,
    route: &'a Route,
    attrs: Attributes,
    query: &'a [(String, String)],
    content_type: &'a str,
    body: Bytes,
}

impl Call<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn json_body(&self) -> Result<Value, ApiError> {
        if self.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })
    }

    fn dry_run(&self) -> Result<bool, ApiError> {
        match self.param("dryRun") {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(v) => Err(ApiError::bad_request(format!(
                "dryRun: Unsupported value: \"{v}\": supported values: \"All\""
            ))),
        }
    }

    fn dispatch(&self) -> Result<Reply, ApiError> {
        let store = lock(&self.shared.store);
        let decision = auth::authorize(&store, self.who, &self.attrs);
        if !decision.allowed {
            return Err(auth::forbidden(self.who, &self.attrs, &decision.reason));
        }
        drop(store);
        let get = self.method == Method::GET || self.method == Method::HEAD;
        match self.route {
            Route::Health | Route::Unknown => Err(ApiError::no_route()),
            _ if !get && !matches!(self.route, Route::Resource { .. }) => {
                Err(ApiError::method_not_allowed())
            }
            Route::Version => Ok(Reply::json(200, &version())),
            Route::Api => Ok(Reply::json(200, &api_versions(&self.shared.address))),
            Route::Apis => Ok(Reply::json(200, &api_group_list())),
            Route::Group(g) => Ok(Reply::json(200, &api_group(g))),
            Route::GroupVersion(g, v) => Ok(Reply::json(200, &api_resource_list(g, v))),
            Route::Resource {
                def,
                namespace,
                name,
                subresource,
            } => {
                let t = Target {
                    def,
                    namespace: namespace.as_deref(),
                    name,
                    subresource,
                };
                self.resource(t)
            }
        }
    }

    fn resource(&self, t: Target) -> Result<Reply, ApiError> {
        let collection = t.name.is_empty();
        let all_namespaces = t.def.namespaced && t.namespace.is_none();
        let m = self.method;
        if !t.def.stored {
            return match (m.as_str(), collection) {
                ("POST", true) => self.review(t.def),
                _ => Err(ApiError::method_not_allowed()),
            };
        }
        if t.subresource == "token" {
            return match m.as_str() {
                "POST" => self.token_request(t),
                _ => Err(ApiError::method_not_allowed()),
            };
        }
        if self.attrs.verb == "watch" {
            return Err(ApiError::method_not_allowed());
        }
        let mut store = lock(&self.shared.store);
        match (m.as_str(), collection) {
            ("GET" | "HEAD", true) => {
                let o = ListOptions::from_query(self.query)?;
                list::list(&store, t.def, t.namespace, &o).map(|v| Reply::json(200, &v))
            }
            ("GET" | "HEAD", false) => objects::get(&store, t).map(|v| Reply::json(200, &v)),
            ("POST", true) if !all_namespaces && t.subresource.is_empty() => {
                let body = self.json_body()?;
                objects::create(&mut store, t, body, self.dry_run()?).map(|v| Reply::json(201, &v))
            }
            ("PUT", false) => {
                let body = self.json_body()?;
                objects::update(&mut store, t, body, self.dry_run()?)
                    .map(|(code, v)| Reply::json(code, &v))
            }
            ("PATCH", false) => {
                let kind = PatchType::from_content_type(self.content_type)?;
                objects::patch(&mut store, t, kind, &self.body, self.dry_run()?)
                    .map(|v| Reply::json(200, &v))
            }
            ("DELETE", false) if t.subresource.is_empty() => {
                let options = self.json_body()?;
                objects::delete(&mut store, t, &options, self.dry_run()?)
                    .map(|v| Reply::json(200, &v))
            }
            ("DELETE", true) if !all_namespaces => {
                let options = self.json_body()?;
                let dry_run = self.dry_run()?;
                let o = ListOptions::from_query(self.query)?;
                let victims = list::select_current(&store, t.def, t.namespace, &o)?;
                let mut items = Vec::new();
                for v in victims {
                    let name = v["metadata"]["name"].as_str().unwrap_or("").to_string();
                    let one = Target { name: &name, ..t };
                    items.push(objects::delete(&mut store, one, &options, dry_run)?);
                }
                let list = json!({
                    "kind": t.def.list_kind(),
                    "apiVersion": t.def.api_version(),
                    "metadata": {"resourceVersion": store.revision().to_string()},
                    "items": items,
                });
                Ok(Reply::json(200, &list))
            }
            _ => Err(ApiError::method_not_allowed()),
        }
    }

    /// `POST …/serviceaccounts/{name}/token`: a TokenRequest.
    fn token_request(&self, t: Target) -> Result<Reply, ApiError> {
        let ns = t.namespace.unwrap_or("");
        let body = self.json_body()?;
        if !body.is_null() && !body.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be a JSON object",
            ));
        }
        for (field, want) in [
            ("apiVersion", "authentication.k8s.io/v1"),
            ("kind", "TokenRequest"),
        ] {
            if let Some(v) = body[field].as_str().filter(|v| !v.is_empty() && *v != want) {
                return Err(ApiError::bad_request(format!(
                    "the {field} in the data ({v}) does not match the expected {field} ({want})"
                )));
            }
        }
        let seconds = match &body["spec"]["expirationSeconds"] {
            Value::Null => 3600,
            v => v.as_i64().ok_or_else(|| {
                ApiError::bad_request("spec.expirationSeconds must be an integer")
            })?,
        };
        let invalid = |msg: &str| {
            ApiError::invalid(
                "authentication.k8s.io",
                "TokenRequest",
                t.name,
                &[(
                    "spec.expirationSeconds",
                    "FieldValueInvalid",
                    format!("Invalid value: {seconds}: {msg}"),
                )],
            )
        };
        if seconds < 600 {
            return Err(invalid("may not specify a duration less than 10 minutes"));
        }
        if seconds > 1 << 32 {
            return Err(invalid(
                "may not specify a duration larger than 2^32 seconds",
            ));
        }
        let audiences: Vec<String> = match body["spec"]["audiences"].as_array() {
            Some(a) if !a.is_empty() => a
                .iter()
                .map(|v| v.as_str().unwrap_or("").to_string())
                .collect(),
            _ => vec![DEFAULT_AUDIENCE.to_string()],
        };
        let (bound_object, bound_ref) =
            self.bound_object(ns, t.name, &body["spec"]["boundObjectRef"])?;
        let ttl = Duration::from_secs(seconds.unsigned_abs());
        let issued =
            self.shared
                .issue_token(ns, t.name, ttl, &audiences, bound_object, self.dry_run()?);
        let Some((token, expires)) = issued else {
            return Err(ApiError::not_found("", "serviceaccounts", t.name));
        };
        Ok(Reply::json(
            201,
            &json!({
                "kind": "TokenRequest",
                "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"name": t.name, "namespace": ns, "creationTimestamp": null},
                "spec": {"audiences": audiences, "expirationSeconds": seconds, "boundObjectRef": bound_ref},
                "status": {"token": token, "expirationTimestamp": rfc3339(expires)},
            }),
        ))
    }

    /// Resolves a TokenRequest's `boundObjectRef` as the real `TokenREST` does: a Secret or Pod
    /// (`v1`) in the ServiceAccount's namespace that exists, with the given uid if one is
    /// given (409 otherwise); another kind is a 400. Returns the binding and the reference as
    /// echoed in the answer, uid filled in.
    fn bound_object(
        &self,
        ns: &str,
        sa: &str,
        r: &Value,
    ) -> Result<(Option<BoundObject>, Value), ApiError> {
        if r.is_null() {
            return Ok((None, Value::Null));
        }
        let s = |f: &str| r[f].as_str().unwrap_or("").to_string();
        let (kind, api_version, name, uid) = (s("kind"), s("apiVersion"), s("name"), s("uid"));
        let resource = match (api_version.as_str(), kind.as_str()) {
            ("v1", "Secret") => "secrets",
            ("v1", "Pod") => "pods",
            _ => {
                let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
                let version = api_version.rsplit('/').next().unwrap_or("");
                return Err(ApiError::bad_request(format!(
                    "cannot bind token for serviceaccount \"{sa}\" to object of type {group}/{version}, Kind={kind}"
                )));
            }
        };
        let stored = lock(&self.shared.store)
            .get(resource, &key(Some(ns), &name))
            .cloned();
        let Some(obj) = stored else {
            return Err(ApiError::not_found("", resource, &name));
        };
        let actual = obj["metadata"]["uid"].as_str().unwrap_or("").to_string();
        if !uid.is_empty() && uid != actual {
            return Err(ApiError::conflict(
                "",
                &kind,
                &name,
                &format!(
                    "the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"
                ),
            ));
        }
        let echoed = json!({"kind": kind, "apiVersion": api_version, "name": name, "uid": actual});
        let bound = BoundObject {
            resource,
            namespace: ns.to_string(),
            name,
            uid: actual,
        };
        Ok((Some(bound), echoed))
    }

    /// `SelfSubjectAccessReview` and `SelfSubjectReview`.
    fn review(&self, def: &'static ResourceDef) -> Result<Reply, ApiError> {
        let mut body = self.json_body()?;
        if !body.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be a JSON object",
            ));
        }
        body["apiVersion"] = def.api_version().into();
        body["kind"] = def.kind.into();
        body["metadata"] = json!({"creationTimestamp": null});
        if def.plural == "selfsubjectreviews" {
            body["status"] = json!({"userInfo": {
                "username": self.who.user, "uid": self.who.uid, "groups": self.who.groups,
            }});
            return Ok(Reply::json(201, &body));
        }
        let spec = body["spec"].clone();
        let ra = &spec["resourceAttributes"];
        let nra = &spec["nonResourceAttributes"];
        let s = |v: &Value, f: &str| v[f].as_str().unwrap_or("").to_string();
        let attrs = match (ra.is_object(), nra.is_object()) {
            (true, false) => Attributes {
                verb: s(ra, "verb"),
                resource_request: true,
                group: s(ra, "group"),
                resource: s(ra, "resource"),
                subresource: s(ra, "subresource"),
                namespace: s(ra, "namespace"),
                name: s(ra, "name"),
                path: String::new(),
            },
            (false, true) => Attributes {
                verb: s(nra, "verb"),
                path: s(nra, "path"),
                ..Attributes::default()
            },
            _ => {
                return Err(ApiError::invalid(
                    def.group,
                    def.kind,
                    "",
                    &[("spec.resourceAttributes", "FieldValueInvalid", "Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified".into())],
                ));
            }
        };
        let decision = auth::authorize(&lock(&self.shared.store), self.who, &attrs);
        let mut status = json!({"allowed": decision.allowed});
        if !decision.reason.is_empty() {
            status["reason"] = decision.reason.into();
        }
        body["status"] = status;
        Ok(Reply::json(201, &body))
    }
}
