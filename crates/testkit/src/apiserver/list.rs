//! LIST: snapshot reads, `limit`/`continue` paging, resourceVersion semantics and selectors.
//!
//! Continue tokens have the real shape: base64url of `{"v":"meta.k8s.io/v1","rv":N,"start":K}`
//! where `K` is the key after the last one returned. Every page is read at the revision `N` of
//! the first page; once that revision is compacted, the token gets `410 Expired` with an
//! inconsistent-continuation token (`rv` -1) in `metadata.continue`. No I/O here.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use super::status::ApiError;
use super::store::{ReadError, ResourceDef, Store};

/// The query parameters of a list (`metav1.ListOptions`).
#[derive(Debug, Default)]
pub(super) struct ListOptions {
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
}

impl ListOptions {
    pub fn from_query(query: &[(String, String)]) -> Result<ListOptions, ApiError> {
        let mut o = ListOptions::default();
        for (k, v) in query {
            let v = Some(v.clone()).filter(|v| !v.is_empty());
            match k.as_str() {
                "limit" => {
                    if let Some(v) = v {
                        let n: i64 = v.parse().map_err(|_| {
                            ApiError::bad_request(format!(
                                "unable to parse quantity's suffix: invalid limit {v:?}"
                            ))
                        })?;
                        o.limit = usize::try_from(n).ok().filter(|n| *n > 0);
                    }
                }
                "continue" => o.continue_token = v,
                "resourceVersion" => o.resource_version = v,
                "resourceVersionMatch" => o.resource_version_match = v,
                "labelSelector" => o.label_selector = v,
                "fieldSelector" => o.field_selector = v,
                _ => {}
            }
        }
        Ok(o)
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Token {
    v: String,
    rv: i64,
    start: String,
}

fn encode_token(rv: i64, start: &str) -> String {
    let t = Token {
        v: "meta.k8s.io/v1".into(),
        rv,
        start: start.to_string(),
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&t).unwrap_or_default())
}

fn decode_token(token: &str) -> Result<Token, ApiError> {
    let bad = |why: &str| ApiError::bad_request(format!("continue key is not valid: {why}"));
    let raw = URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|e| bad(&e.to_string()))?;
    let t: Token = serde_json::from_slice(&raw).map_err(|e| bad(&e.to_string()))?;
    if t.v != "meta.k8s.io/v1" {
        return Err(bad(&format!(
            "incorrect encoded start resourceVersion (version {})",
            t.v
        )));
    }
    if t.start.contains("..") || t.start.starts_with('/') {
        return Err(bad("continue key may not contain a path traversal"));
    }
    Ok(t)
}

/// One label-selector requirement.
#[derive(Debug)]
enum Req {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut from) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[from..]);
    out
}

fn parse_labels(sel: &str) -> Result<Vec<Req>, ApiError> {
    let bad = |part: &str| {
        ApiError::bad_request(format!(
            "unable to parse requirement: found '{part}', expected a valid label selector"
        ))
    };
    let set = |rest: &str| -> Option<Vec<String>> {
        let inner = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
        Some(inner.split(',').map(|v| v.trim().to_string()).collect())
    };
    let mut reqs = Vec::new();
    for part in split_top(sel) {
        let p = part.trim();
        if p.is_empty() {
            continue;
        }
        let req = if let Some(k) = p.strip_prefix('!') {
            Req::NotExists(k.trim().to_string())
        } else if let Some((k, v)) = p.split_once("!=") {
            Req::Ne(k.trim().into(), v.trim().into())
        } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
            Req::Eq(k.trim().into(), v.trim().into())
        } else if let Some((k, rest)) = p.split_once(" notin ") {
            Req::NotIn(k.trim().into(), set(rest).ok_or_else(|| bad(p))?)
        } else if let Some((k, rest)) = p.split_once(" in ") {
            Req::In(k.trim().into(), set(rest).ok_or_else(|| bad(p))?)
        } else if p.contains(['(', ')', ' ', '<', '>']) {
            return Err(bad(p));
        } else {
            Req::Exists(p.to_string())
        };
        reqs.push(req);
    }
    Ok(reqs)
}

fn labels_match(reqs: &[Req], obj: &Value) -> bool {
    let labels = &obj["metadata"]["labels"];
    let get = |k: &str| labels.get(k).and_then(Value::as_str);
    reqs.iter().all(|r| match r {
        Req::Eq(k, v) => get(k) == Some(v),
        Req::Ne(k, v) => get(k) != Some(v),
        Req::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
        Req::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
        Req::Exists(k) => get(k).is_some(),
        Req::NotExists(k) => get(k).is_none(),
    })
}

fn parse_fields(def: &ResourceDef, sel: &str) -> Result<Vec<(String, bool, String)>, ApiError> {
    let mut out = Vec::new();
    for part in sel.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (field, eq, value) = if let Some((f, v)) = part.split_once("!=") {
            (f, false, v)
        } else if let Some((f, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
            (f, true, v)
        } else {
            return Err(ApiError::bad_request(format!(
                "invalid selector: '{sel}'; can't understand '{part}'"
            )));
        };
        let field = field.trim();
        let known = matches!(field, "metadata.name" | "metadata.namespace")
            || (def.plural == "namespaces" && field == "status.phase")
            || (def.plural == "secrets" && field == "type");
        if !known {
            return Err(ApiError::bad_request(format!(
                "\"{field}\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
            )));
        }
        out.push((field.to_string(), eq, value.trim().to_string()));
    }
    Ok(out)
}

fn fields_match(fields: &[(String, bool, String)], obj: &Value) -> bool {
    fields.iter().all(|(field, eq, want)| {
        let got = field
            .split('.')
            .try_fold(obj, |v, part| v.get(part))
            .and_then(Value::as_str)
            .unwrap_or("");
        (got == want) == *eq
    })
}

/// The item as it appears in a list: built-in types drop their type meta there.
fn list_item(def: &ResourceDef, obj: &Value) -> Value {
    let mut item = obj.clone();
    if !def.custom
        && let Some(m) = item.as_object_mut()
    {
        m.remove("kind");
        m.remove("apiVersion");
    }
    item
}

/// Serves a LIST of `def` in `namespace` (all namespaces when `None`).
pub(super) fn list(
    store: &Store,
    def: &'static ResourceDef,
    namespace: Option<&str>,
    o: &ListOptions,
) -> Result<Value, ApiError> {
    let prefix = namespace.map(|ns| format!("{ns}/")).unwrap_or_default();
    let labels = parse_labels(o.label_selector.as_deref().unwrap_or(""))?;
    let fields = parse_fields(def, o.field_selector.as_deref().unwrap_or(""))?;
    let current = store.revision();
    let rv_match = o.resource_version_match.as_deref().unwrap_or("");
    if !matches!(rv_match, "" | "Exact" | "NotOlderThan") {
        return Err(ApiError::bad_request(format!(
            "resourceVersionMatch: Unsupported value: \"{rv_match}\": supported values: \"Exact\", \"NotOlderThan\""
        )));
    }
    if !rv_match.is_empty() && o.resource_version.is_none() {
        return Err(ApiError::bad_request(
            "resourceVersionMatch is forbidden unless resourceVersion is provided",
        ));
    }

    let (read_rv, start) = if let Some(token) = &o.continue_token {
        if o.resource_version.is_some() {
            return Err(ApiError::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }
        let t = decode_token(token)?;
        if t.rv == -1 {
            (current, t.start)
        } else {
            let rv = u64::try_from(t.rv).map_err(|_| {
                ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
            })?;
            if store.check_read(rv).is_err() {
                return Err(ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                    Some(encode_token(-1, &t.start)),
                ));
            }
            (rv, t.start)
        }
    } else {
        match o.resource_version.as_deref() {
            None | Some("0") if rv_match == "Exact" => {
                return Err(ApiError::bad_request(
                    "resourceVersionMatch \"Exact\" is forbidden for resourceVersion \"0\"",
                ));
            }
            None | Some("0") => (current, String::new()),
            Some(v) => {
                let rv: u64 = v.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid resource version: {v:?}"))
                })?;
                let exact = rv_match == "Exact" || (rv_match.is_empty() && o.limit.is_some());
                match store.check_read(rv) {
                    Err(ReadError::Future { current }) => {
                        return Err(ApiError::too_large_rv(rv, current));
                    }
                    Err(ReadError::Compacted { compacted }) if exact => {
                        return Err(ApiError::expired(
                            format!("too old resource version: {rv} ({compacted})"),
                            None,
                        ));
                    }
                    _ if exact => (rv, String::new()),
                    _ => (current, String::new()),
                }
            }
        }
    };

    let selecting = !labels.is_empty() || !fields.is_empty();
    let from = format!("{prefix}{start}");
    let mut items = Vec::new();
    let mut last_key: Option<&String> = None;
    let mut more = false;
    let mut remaining: u64 = 0;
    for (k, obj) in store.scan(def.plural, &prefix, &from, read_rv) {
        if !labels_match(&labels, obj) || !fields_match(&fields, obj) {
            continue;
        }
        if o.limit.is_some_and(|l| items.len() >= l) {
            more = true;
            remaining += 1;
            if selecting {
                break;
            }
            continue;
        }
        items.push(list_item(def, obj));
        last_key = Some(k);
    }

    let mut meta = Map::new();
    meta.insert("resourceVersion".into(), read_rv.to_string().into());
    if more && let Some(k) = last_key {
        let rel = k.strip_prefix(&prefix).unwrap_or(k);
        let rv = i64::try_from(read_rv).unwrap_or(i64::MAX);
        meta.insert(
            "continue".into(),
            encode_token(rv, &format!("{rel}\u{0}")).into(),
        );
        if !selecting {
            meta.insert("remainingItemCount".into(), remaining.into());
        }
    }
    Ok(json!({
        "kind": def.list_kind(),
        "apiVersion": def.api_version(),
        "metadata": meta,
        "items": items,
    }))
}

/// The objects a DELETE of a collection removes (current state, selectors applied).
pub(super) fn select_current(
    store: &Store,
    def: &'static ResourceDef,
    namespace: Option<&str>,
    o: &ListOptions,
) -> Result<Vec<Value>, ApiError> {
    let prefix = namespace.map(|ns| format!("{ns}/")).unwrap_or_default();
    let labels = parse_labels(o.label_selector.as_deref().unwrap_or(""))?;
    let fields = parse_fields(def, o.field_selector.as_deref().unwrap_or(""))?;
    Ok(store
        .scan(def.plural, &prefix, "", store.revision())
        .filter(|(_, obj)| labels_match(&labels, obj) && fields_match(&fields, obj))
        .map(|(_, obj)| obj.clone())
        .collect())
}
