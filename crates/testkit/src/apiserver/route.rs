//! Request routing: which resource a path names, the Kubernetes verb of a request, and the
//! attributes the authorizer sees (`RequestInfo` in the real server). No I/O here.

use hyper::Method;

use super::auth::Attributes;
use super::discovery::group_versions;
use super::store::{ResourceDef, find};

/// Where a request path leads.
#[derive(Debug)]
pub(super) enum Route {
    Health,
    Version,
    Api,
    Apis,
    Group(String),
    GroupVersion(String, String),
    Resource {
        def: &'static ResourceDef,
        /// The namespace segment of the path; `None` for cluster-scoped resources and for
        /// lists across all namespaces.
        namespace: Option<String>,
        name: String,
        subresource: String,
    },
    Unknown,
}

pub(super) fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

pub(super) fn parse_query(q: &str) -> Option<Vec<(String, String)>> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((percent_decode(k, true)?, percent_decode(v, true)?))
        })
        .collect()
}

pub(super) fn route(path: &str) -> Route {
    let Some(segs) = path
        .strip_prefix('/')
        .unwrap_or(path)
        .split('/')
        .map(|s| percent_decode(s, false).filter(|s| !s.is_empty()))
        .collect::<Option<Vec<String>>>()
    else {
        return Route::Unknown;
    };
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match segs.as_slice() {
        ["healthz" | "readyz" | "livez", ..] => Route::Health,
        ["version"] => Route::Version,
        ["api"] => Route::Api,
        ["apis"] => Route::Apis,
        ["api", "v1"] => Route::GroupVersion(String::new(), "v1".into()),
        ["api", "v1", rest @ ..] => resource_route("", "v1", rest),
        ["apis", g] if group_versions().iter().any(|(gg, _)| gg == g) => {
            Route::Group(g.to_string())
        }
        ["apis", g, v] if group_versions().contains(&(g, v)) => {
            Route::GroupVersion(g.to_string(), v.to_string())
        }
        ["apis", g, v, rest @ ..] => resource_route(g, v, rest),
        _ => Route::Unknown,
    }
}

fn resource_route(group: &str, version: &str, rest: &[&str]) -> Route {
    let make = |def: &'static ResourceDef, ns: Option<&str>, name: &str, sub: &str| {
        if !sub.is_empty() && !def.subresources().contains(&sub) {
            return Route::Unknown;
        }
        Route::Resource {
            def,
            namespace: ns.map(str::to_string),
            name: name.to_string(),
            subresource: sub.to_string(),
        }
    };
    if let ["namespaces", ns, plural, tail @ ..] = rest
        && let Some(def) = find(group, version, plural).filter(|d| d.namespaced)
    {
        return match tail {
            [] => make(def, Some(ns), "", ""),
            [name] => make(def, Some(ns), name, ""),
            [name, sub] => make(def, Some(ns), name, sub),
            _ => Route::Unknown,
        };
    }
    let [plural, tail @ ..] = rest else {
        return Route::Unknown;
    };
    let Some(def) = find(group, version, plural) else {
        return Route::Unknown;
    };
    match (def.namespaced, tail) {
        (_, []) => make(def, None, "", ""),
        (false, [name]) => make(def, None, name, ""),
        (false, [name, sub]) => make(def, None, name, sub),
        _ => Route::Unknown,
    }
}

/// The verb Kubernetes names this request with (`RequestInfo.Verb`).
pub(super) fn verb_of(method: &Method, route: &Route, query: &[(String, String)]) -> String {
    let Route::Resource { name, .. } = route else {
        return method.as_str().to_ascii_lowercase();
    };
    let watch = query
        .iter()
        .any(|(k, v)| k == "watch" && (v == "true" || v == "1"));
    match (method.as_str(), name.is_empty()) {
        ("GET" | "HEAD", true) if watch => "watch",
        ("GET" | "HEAD", true) => "list",
        ("GET" | "HEAD", false) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "deletecollection",
        ("DELETE", false) => "delete",
        (m, _) => return m.to_ascii_lowercase(),
    }
    .to_string()
}

pub(super) fn attributes(verb: &str, route: &Route, path: &str) -> Attributes {
    match route {
        Route::Resource {
            def,
            namespace,
            name,
            subresource,
        } => Attributes {
            verb: verb.into(),
            resource_request: true,
            group: def.group.into(),
            resource: def.plural.into(),
            subresource: subresource.clone(),
            // A namespace is its own namespace, as `RequestInfo` has it.
            namespace: match namespace {
                Some(ns) => ns.clone(),
                None if def.plural == "namespaces" => name.clone(),
                None => String::new(),
            },
            name: name.clone(),
            path: path.into(),
        },
        _ => Attributes {
            verb: verb.into(),
            path: path.into(),
            ..Attributes::default()
        },
    }
}
