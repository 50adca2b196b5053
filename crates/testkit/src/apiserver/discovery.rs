//! Discovery documents: `/version`, `/api`, `/apis`, `/apis/{group}` and the resource lists
//! of each group version, in the legacy (non-aggregated) format `kube::Discovery` reads. No I/O.

use serde_json::{Value, json};

use super::store::RESOURCES;

/// The group versions served, besides the core `v1`, in table order.
pub(super) fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut gvs: Vec<(&str, &str)> = Vec::new();
    for d in RESOURCES {
        if !d.group.is_empty() && !gvs.contains(&(d.group, d.version)) {
            gvs.push((d.group, d.version));
        }
    }
    gvs
}

pub(super) fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "emulationMajor": "1",
        "emulationMinor": "33",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "32",
        "gitVersion": "v1.33.0",
        "gitCommit": "60a317eadfcb839692a68eab88b2096f4d708f4f",
        "gitTreeState": "clean",
        "buildDate": "2025-04-23T13:00:00Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

pub(super) fn api_versions(address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}],
    })
}

fn group_json(group: &str, version: &str) -> Value {
    let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
    json!({"name": group, "versions": [gv.clone()], "preferredVersion": gv})
}

pub(super) fn api_group_list() -> Value {
    let groups: Vec<Value> = group_versions()
        .into_iter()
        .map(|(g, v)| group_json(g, v))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub(super) fn api_group(group: &str) -> Value {
    let version = group_versions()
        .into_iter()
        .find(|(g, _)| *g == group)
        .map(|(_, v)| v)
        .unwrap_or("v1");
    let mut v = group_json(group, version);
    v["kind"] = "APIGroup".into();
    v["apiVersion"] = "v1".into();
    v
}

pub(super) fn api_resource_list(group: &str, version: &str) -> Value {
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let mut resources = Vec::new();
    for d in RESOURCES
        .iter()
        .filter(|d| d.group == group && d.version == version)
    {
        let mut r = json!({
            "name": d.plural,
            "singularName": d.singular,
            "namespaced": d.namespaced,
            "kind": d.kind,
            "verbs": d.verbs,
        });
        if !d.short_names.is_empty() {
            r["shortNames"] = json!(d.short_names);
        }
        resources.push(r);
        for sub in d.subresources() {
            let sub_json = if *sub == "token" {
                json!({"name": "serviceaccounts/token", "singularName": "", "namespaced": true,
                       "group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest", "verbs": ["create"]})
            } else {
                json!({"name": format!("{}/{sub}", d.plural), "singularName": "", "namespaced": d.namespaced,
                       "kind": d.kind, "verbs": ["get", "patch", "update"]})
            };
            resources.push(sub_json);
        }
    }
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
}
