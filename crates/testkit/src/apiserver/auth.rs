//! Who is calling, and may they: bearer-token identities and the RBAC authorizer.
//!
//! Authorization follows `plugin/pkg/auth/authorizer/rbac`: `system:masters` may do anything;
//! otherwise ClusterRoleBindings (to ClusterRoles) and the RoleBindings of the request's
//! namespace (to a Role there or a ClusterRole) are visited, and the first rule that matches
//! allows, with the same `RBAC: allowed by …` reason. The server stores the bootstrap policy
//! of a real cluster at start ([`bootstrap_policy`]). No I/O here.

use std::time::SystemTime;

use serde_json::{Value, json};

use super::status::ApiError;
use super::store::{Store, key};

/// An authenticated caller.
#[derive(Debug, Clone)]
pub(super) struct Identity {
    pub user: String,
    pub uid: String,
    pub groups: Vec<String>,
    /// The ServiceAccount a TokenRequest token is bound to, as (namespace, name, uid): the token
    /// stops working when that ServiceAccount is deleted or recreated.
    pub bound: Option<(String, String, String)>,
    /// The object a TokenRequest's `boundObjectRef` named, as (plural resource, namespace,
    /// name, uid): the token stops working once that object is deleted (or recreated), as
    /// `pkg/serviceaccount`'s claims validator has it. Deleting the object revokes the token.
    pub bound_object: Option<BoundObject>,
    pub expires: Option<SystemTime>,
}

/// The object a token is bound to (`boundObjectRef`, resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BoundObject {
    /// The plural resource (`secrets`, `pods`).
    pub resource: &'static str,
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl Identity {
    /// A token holder with the given groups, plus `system:authenticated` as every
    /// authenticator adds it.
    pub fn new(user: &str, groups: &[&str]) -> Identity {
        let mut groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        Identity {
            user: user.to_string(),
            uid: String::new(),
            groups,
            bound: None,
            bound_object: None,
            expires: None,
        }
    }

    /// The identity of a ServiceAccount token.
    pub fn service_account(namespace: &str, name: &str, sa_uid: &str) -> Identity {
        Identity {
            user: format!("system:serviceaccount:{namespace}:{name}"),
            uid: sa_uid.to_string(),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".into(),
            ],
            bound: Some((namespace.into(), name.into(), sa_uid.into())),
            bound_object: None,
            expires: None,
        }
    }

    /// Whether the token is still good: not expired, its ServiceAccount still the same one,
    /// and the object it is bound to (if any) still there, the same one and not being deleted.
    pub fn valid(&self, store: &Store, now: SystemTime) -> bool {
        if self.expires.is_some_and(|t| now >= t) {
            return false;
        }
        if let Some(o) = &self.bound_object {
            let alive = store
                .get(o.resource, &key(Some(&o.namespace), &o.name))
                .is_some_and(|obj| {
                    obj["metadata"]["uid"].as_str() == Some(o.uid.as_str())
                        && obj["metadata"].get("deletionTimestamp").is_none()
                });
            if !alive {
                return false;
            }
        }
        match &self.bound {
            None => true,
            Some((ns, name, uid)) => store
                .get("serviceaccounts", &key(Some(ns), name))
                .is_some_and(|sa| {
                    sa["metadata"]["uid"].as_str() == Some(uid)
                        && sa["metadata"].get("deletionTimestamp").is_none()
                }),
        }
    }
}

/// What a request wants to do, as the authorizer sees it (`authorizer.Attributes`).
#[derive(Debug, Clone, Default)]
pub(super) struct Attributes {
    pub verb: String,
    pub resource_request: bool,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// The path of a non-resource request.
    pub path: String,
}

/// The authorizer's answer.
#[derive(Debug, Clone)]
pub(super) struct Decision {
    pub allowed: bool,
    pub reason: String,
}

fn s<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field).and_then(Value::as_str).unwrap_or("")
}

fn strings(v: &Value, field: &str) -> Vec<String> {
    v.get(field)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn has(list: &[String], want: &str) -> bool {
    list.iter().any(|x| x == "*" || x == want)
}

/// `RuleAllows` from the RBAC authorizer.
fn rule_allows(a: &Attributes, rule: &Value) -> bool {
    if !has(&strings(rule, "verbs"), &a.verb) {
        return false;
    }
    if !a.resource_request {
        return strings(rule, "nonResourceURLs").iter().any(|u| {
            u == "*"
                || u == &a.path
                || u.strip_suffix('*')
                    .is_some_and(|prefix| a.path.starts_with(prefix))
        });
    }
    if !has(&strings(rule, "apiGroups"), &a.group) {
        return false;
    }
    let combined = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let resource_ok = strings(rule, "resources").iter().any(|r| {
        r == "*"
            || *r == combined
            || (!a.subresource.is_empty() && *r == format!("*/{}", a.subresource))
    });
    if !resource_ok {
        return false;
    }
    let names = strings(rule, "resourceNames");
    names.is_empty() || names.contains(&a.name)
}

fn subject_matches(subject: &Value, who: &Identity, binding_ns: &str) -> bool {
    let name = s(subject, "name");
    match s(subject, "kind") {
        "User" => who.user == name,
        "Group" => who.groups.iter().any(|g| g == name),
        "ServiceAccount" => {
            let ns = match s(subject, "namespace") {
                "" => binding_ns,
                ns => ns,
            };
            who.user == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

/// `describeSubject` from the rule resolver.
fn describe_subject(subject: &Value, binding_ns: &str) -> String {
    let kind = s(subject, "kind");
    let name = s(subject, "name");
    if kind == "ServiceAccount" {
        let ns = match s(subject, "namespace") {
            "" => binding_ns,
            ns => ns,
        };
        format!("{kind} \"{name}/{ns}\"")
    } else {
        format!("{kind} \"{name}\"")
    }
}

/// The bootstrap RBAC policy every kube-apiserver stores at start (the part that matters
/// here): `cluster-admin` for `system:masters`, self reviews for everyone authenticated
/// (`system:basic-user`), and discovery and health paths (`system:discovery`,
/// `system:public-info-viewer`).
pub(super) fn bootstrap_policy() -> Vec<Value> {
    let rbac = "rbac.authorization.k8s.io/v1";
    let meta = |name: &str| {
        json!({
            "name": name,
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
        })
    };
    let role = |name: &str, rules: Value| json!({"apiVersion": rbac, "kind": "ClusterRole", "metadata": meta(name), "rules": rules});
    let binding = |name: &str, groups: &[&str]| {
        let subjects: Vec<Value> = groups
            .iter()
            .map(|g| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g}))
            .collect();
        json!({
            "apiVersion": rbac, "kind": "ClusterRoleBinding", "metadata": meta(name),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": subjects,
        })
    };
    let info = json!(["/healthz", "/livez", "/readyz", "/version", "/version/"]);
    vec![
        role(
            "cluster-admin",
            json!([
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]},
            ]),
        ),
        binding("cluster-admin", &["system:masters"]),
        role(
            "system:basic-user",
            json!([
                {"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], "verbs": ["create"]},
                {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]},
            ]),
        ),
        binding("system:basic-user", &["system:authenticated"]),
        role(
            "system:discovery",
            json!([{"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz", "/version", "/version/"], "verbs": ["get"]}]),
        ),
        binding("system:discovery", &["system:authenticated"]),
        role(
            "system:public-info-viewer",
            json!([{"nonResourceURLs": info, "verbs": ["get"]}]),
        ),
        binding(
            "system:public-info-viewer",
            &["system:authenticated", "system:unauthenticated"],
        ),
    ]
}

/// Decides whether `who` may do `a`, from the RBAC objects in `store`.
pub(super) fn authorize(store: &Store, who: &Identity, a: &Attributes) -> Decision {
    let allow = |reason: String| Decision {
        allowed: true,
        reason,
    };
    if who.groups.iter().any(|g| g == "system:masters") {
        return allow(String::new());
    }
    let mut errors: Vec<String> = Vec::new();
    let rbac = "rbac.authorization.k8s.io";
    let now = store.revision();
    let mut bindings: Vec<(&'static str, &Value)> = store
        .scan("clusterrolebindings", "", "", now)
        .map(|(_, b)| ("ClusterRoleBinding", b))
        .collect();
    if !a.namespace.is_empty() {
        let prefix = format!("{}/", a.namespace);
        bindings.extend(
            store
                .scan("rolebindings", &prefix, "", now)
                .map(|(_, b)| ("RoleBinding", b)),
        );
    }
    for (binding_kind, binding) in bindings {
        let binding_name = s(&binding["metadata"], "name");
        let binding_ns = s(&binding["metadata"], "namespace");
        let Some(subject) = binding
            .get("subjects")
            .and_then(Value::as_array)
            .and_then(|subs| {
                subs.iter()
                    .find(|sub| subject_matches(sub, who, binding_ns))
            })
        else {
            continue;
        };
        let role_kind = s(&binding["roleRef"], "kind");
        let role_name = s(&binding["roleRef"], "name");
        let role = match (binding_kind, role_kind) {
            (_, "ClusterRole") => store.get("clusterroles", role_name),
            ("RoleBinding", "Role") => store.get("roles", &key(Some(binding_ns), role_name)),
            _ => None,
        };
        let Some(role) = role else {
            errors.push(format!(
                "{}.{rbac} \"{role_name}\" not found",
                role_kind.to_ascii_lowercase()
            ));
            continue;
        };
        let rules = role.get("rules").and_then(Value::as_array);
        if rules.is_some_and(|rules| rules.iter().any(|r| rule_allows(a, r))) {
            let binding_desc = if binding_kind == "RoleBinding" {
                format!("{binding_name}/{binding_ns}")
            } else {
                binding_name.to_string()
            };
            return allow(format!(
                "RBAC: allowed by {binding_kind} \"{binding_desc}\" of {role_kind} \"{role_name}\" to {}",
                describe_subject(subject, binding_ns)
            ));
        }
    }
    let reason = match errors.len() {
        0 => String::new(),
        1 => format!("RBAC: {}", errors[0]),
        _ => format!("RBAC: [{}]", errors.join(", ")),
    };
    Decision {
        allowed: false,
        reason,
    }
}

/// The 403 a denied request gets (`responsewriters.Forbidden`).
pub(super) fn forbidden(who: &Identity, a: &Attributes, reason: &str) -> ApiError {
    if !a.resource_request {
        return ApiError::forbidden_path(&who.user, &a.verb, &a.path);
    }
    let resource = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let scope = if a.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{}\"", a.namespace)
    };
    let mut why = format!(
        "User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
        who.user, a.verb, a.group
    );
    if !reason.is_empty() {
        why = format!("{why}: {reason}");
    }
    ApiError::forbidden(&a.group, &a.resource, &a.name, &why)
}
