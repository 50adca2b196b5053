//! `metav1.Status` failures, built the way `k8s.io/apimachinery/pkg/api/errors` builds them, so
//! the message, reason, details and code a client sees match a real API server. No I/O here.

use serde::Serialize;
use serde_json::{Value, json};

use super::store::qualified;

/// A failed request, rendered as a `Status` object by [`ApiError::body`].
#[derive(Debug, Clone)]
pub(super) struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
    /// Seconds for the `Retry-After` header and `details.retryAfterSeconds`.
    pub retry_after: Option<u64>,
    /// `metadata.continue` of an `Expired` list status (the inconsistent-continuation token).
    pub list_continue: Option<String>,
}

/// Field order as the Go type declares it, so the body reads like a real one.
#[derive(Serialize)]
struct StatusBody<'a> {
    kind: &'static str,
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    metadata: Value,
    status: &'static str,
    message: &'a str,
    reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Ordered<'a>>,
    code: u16,
}

/// Serializes an object with its known keys first, in the Go struct's field order (a plain
/// `serde_json::Map` would sort them), then any others.
struct Ordered<'a>(&'a Value);

const KEY_ORDER: &[&str] = &[
    "name",
    "group",
    "kind",
    "uid",
    "causes",
    "retryAfterSeconds",
    "reason",
    "message",
    "field",
];

impl Serialize for Ordered<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap as _, SerializeSeq as _};
        match self.0 {
            Value::Object(m) => {
                let mut map = ser.serialize_map(Some(m.len()))?;
                let known = KEY_ORDER.iter().filter_map(|k| m.get_key_value(*k));
                let rest = m.iter().filter(|(k, _)| !KEY_ORDER.contains(&k.as_str()));
                for (k, v) in known.chain(rest) {
                    map.serialize_entry(k, &Ordered(v))?;
                }
                map.end()
            }
            Value::Array(a) => {
                let mut seq = ser.serialize_seq(Some(a.len()))?;
                for v in a {
                    seq.serialize_element(&Ordered(v))?;
                }
                seq.end()
            }
            v => v.serialize(ser),
        }
    }
}

fn details(group: &str, kind: &str, name: &str) -> Value {
    let mut d = serde_json::Map::new();
    if !name.is_empty() {
        d.insert("name".into(), name.into());
    }
    if !group.is_empty() {
        d.insert("group".into(), group.into());
    }
    if !kind.is_empty() {
        d.insert("kind".into(), kind.into());
    }
    Value::Object(d)
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
            list_continue: None,
        }
    }

    fn with_details(mut self, details: Value) -> ApiError {
        self.details = Some(details);
        self
    }

    /// The JSON body.
    pub fn body(&self) -> Vec<u8> {
        let mut metadata = serde_json::Map::new();
        if let Some(c) = &self.list_continue {
            metadata.insert("continue".into(), c.clone().into());
        }
        let body = StatusBody {
            kind: "Status",
            api_version: "v1",
            metadata: Value::Object(metadata),
            status: "Failure",
            message: &self.message,
            reason: self.reason,
            details: self.details.as_ref().map(Ordered),
            code: self.code,
        };
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// `warehouses.kargo.akuity.io "wh-1" not found`.
    pub fn not_found(group: &str, resource: &str, name: &str) -> ApiError {
        let msg = format!("{} \"{name}\" not found", qualified(resource, group));
        ApiError::new(404, "NotFound", msg).with_details(details(group, resource, name))
    }

    /// A path no route serves.
    pub fn no_route() -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(json!({}))
    }

    pub fn already_exists(group: &str, resource: &str, name: &str) -> ApiError {
        let msg = format!("{} \"{name}\" already exists", qualified(resource, group));
        ApiError::new(409, "AlreadyExists", msg).with_details(details(group, resource, name))
    }

    /// `Operation cannot be fulfilled on {gr} "{name}": {why}`.
    pub fn conflict(group: &str, resource: &str, name: &str, why: &str) -> ApiError {
        let msg = format!(
            "Operation cannot be fulfilled on {} \"{name}\": {why}",
            qualified(resource, group)
        );
        ApiError::new(409, "Conflict", msg).with_details(details(group, resource, name))
    }

    /// The optimistic-concurrency conflict of an update carrying a stale resourceVersion.
    pub fn stale(group: &str, resource: &str, name: &str) -> ApiError {
        ApiError::conflict(
            group,
            resource,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// `{gr} "{name}" is forbidden: {why}` (or `{gr} is forbidden: …` without a name).
    pub fn forbidden(group: &str, resource: &str, name: &str, why: &str) -> ApiError {
        let gr = qualified(resource, group);
        let msg = if name.is_empty() {
            format!("{gr} is forbidden: {why}")
        } else {
            format!("{gr} \"{name}\" is forbidden: {why}")
        };
        ApiError::new(403, "Forbidden", msg).with_details(details(group, resource, name))
    }

    /// A non-resource path the caller may not use.
    pub fn forbidden_path(user: &str, verb: &str, path: &str) -> ApiError {
        let msg = format!("forbidden: User \"{user}\" cannot {verb} path \"{path}\"");
        ApiError::new(403, "Forbidden", msg).with_details(json!({}))
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn bad_request(msg: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", msg)
    }

    /// 422 with field causes: `Warehouse.kargo.akuity.io "x" is invalid: field: message`.
    pub fn invalid(
        group: &str,
        kind: &str,
        name: &str,
        causes: &[(&str, &str, String)],
    ) -> ApiError {
        let what = causes
            .iter()
            .map(|(field, _, msg)| format!("{field}: {msg}"))
            .collect::<Vec<_>>();
        let what = if what.len() == 1 {
            what[0].clone()
        } else {
            format!("[{}]", what.join(", "))
        };
        let msg = format!("{} \"{name}\" is invalid: {what}", qualified(kind, group));
        let mut d = details(group, kind, name);
        d["causes"] = causes
            .iter()
            .map(|(field, reason, msg)| json!({"reason": reason, "message": msg, "field": field}))
            .collect();
        ApiError::new(422, "Invalid", msg).with_details(d)
    }

    /// 422 without field causes (a JSON patch that does not apply).
    pub fn unprocessable(msg: impl Into<String>) -> ApiError {
        ApiError::new(422, "Invalid", msg).with_details(json!({}))
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
        .with_details(json!({}))
    }

    /// A PATCH in a format this server does not apply (strategic merge, server-side apply).
    pub fn unsupported_media_type() -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json",
        )
        .with_details(json!({}))
    }

    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
        )
    }

    /// 410 for a list at a compacted revision; `inconsistent` is the token to carry on with.
    pub fn expired(message: impl Into<String>, inconsistent: Option<String>) -> ApiError {
        let mut e = ApiError::new(410, "Expired", message);
        e.list_continue = inconsistent;
        e
    }

    /// 504 for a read at a revision the store has not reached.
    pub fn too_large_rv(requested: u64, current: u64) -> ApiError {
        let mut e = ApiError::new(
            504,
            "Timeout",
            format!("Too large resource version: {requested}, current: {current}"),
        )
        .with_details(json!({
            "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
            "retryAfterSeconds": 1
        }));
        e.retry_after = Some(1);
        e
    }

    /// An injected status fault, shaped as the real server shapes that code.
    pub fn injected(code: u16, retry_after: Option<u64>) -> ApiError {
        let mut e = match code {
            429 => ApiError::new(
                429,
                "TooManyRequests",
                "Too many requests, please try again later.",
            ),
            500 => ApiError::new(
                500,
                "InternalError",
                "Internal error occurred: injected fault",
            )
            .with_details(json!({"causes": [{"message": "injected fault"}]})),
            503 => ApiError::new(
                503,
                "ServiceUnavailable",
                "the server is currently unable to handle the request",
            ),
            504 => ApiError::new(
                504,
                "Timeout",
                "the server was unable to return a response in the time allotted, but may still be processing the request",
            ),
            401 => ApiError::unauthorized(),
            403 => {
                ApiError::new(403, "Forbidden", "forbidden: injected fault").with_details(json!({}))
            }
            404 => ApiError::no_route(),
            409 => ApiError::new(
                409,
                "Conflict",
                "Operation cannot be fulfilled: injected fault",
            ),
            410 => ApiError::expired("injected fault", None),
            _ => ApiError::new(code, "", format!("injected fault {code}")),
        };
        if let Some(secs) = retry_after {
            e.retry_after = Some(secs);
            let d = e.details.get_or_insert_with(|| json!({}));
            d["retryAfterSeconds"] = json!(secs);
        }
        e
    }

    pub fn internal(msg: &str) -> ApiError {
        ApiError::new(
            500,
            "InternalError",
            format!("Internal error occurred: {msg}"),
        )
        .with_details(json!({"causes": [{"message": msg}]}))
    }
}
