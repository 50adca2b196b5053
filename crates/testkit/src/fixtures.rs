//! Kargo `Warehouse` objects for tests, written as a chained builder so a fixture reads like
//! its case: `wh("kargo-demo", "app").image(QUAY_REPO, json!({"constraint": "^1.0.0"}))`.
//!
//! Test support, no I/O: builds `serde_json::Value`s the local API server, the in-memory
//! cluster of [`crate::fakes`] and the benchmarks all take.

use serde_json::{Value, json};

/// The repository of the recorded Quay push (`events/`).
pub const QUAY_REPO: &str = "quay.io/mynamespace/repository";

/// A Warehouse object as a user would `kubectl apply` it; [`Wh::json`] renders it.
#[derive(Clone, Debug)]
pub struct Wh {
    namespace: String,
    name: String,
    subscriptions: Vec<Value>,
}

/// Starts a Warehouse fixture with no subscriptions.
pub fn wh(namespace: &str, name: &str) -> Wh {
    Wh {
        namespace: namespace.into(),
        name: name.into(),
        subscriptions: Vec::new(),
    }
}

impl Wh {
    /// Adds an image subscription to `repo`; the fields of `extra` (an object such as
    /// `{"constraint": "^1.0.0"}`) are merged into it.
    pub fn image(mut self, repo: &str, extra: Value) -> Self {
        let mut sub = json!({ "repoURL": repo });
        if let (Some(obj), Some(more)) = (sub.as_object_mut(), extra.as_object()) {
            obj.extend(more.clone());
        }
        self.subscriptions.push(json!({ "image": sub }));
        self
    }

    /// Adds a chart subscription to `repo` with a `semverConstraint`.
    pub fn chart(mut self, repo: &str, constraint: &str) -> Self {
        self.subscriptions
            .push(json!({ "chart": { "repoURL": repo, "semverConstraint": constraint } }));
        self
    }

    /// Adds a subscription given whole (`{"git": …}`, or a shape the other methods cannot
    /// write, such as an invalid one).
    pub fn subscription(mut self, sub: Value) -> Self {
        self.subscriptions.push(sub);
        self
    }

    /// The object: `apiVersion`, `kind`, `metadata` (namespace, name) and `spec` (a 5-minute
    /// `interval` and the subscriptions in the order added).
    pub fn json(&self) -> Value {
        json!({
            "apiVersion": "kargo.akuity.io/v1alpha1",
            "kind": "Warehouse",
            "metadata": { "namespace": self.namespace, "name": self.name },
            "spec": { "interval": "5m0s", "subscriptions": self.subscriptions }
        })
    }
}

impl From<Wh> for Value {
    fn from(w: Wh) -> Value {
        w.json()
    }
}

/// The `i % 4`-th of the four subscription shapes seen in practice, on `repo`: an image with a
/// semver constraint, Lexical with an ignore regex, Digest of `latest`, and an OCI chart with a
/// semver range. Mixes for index sizes and benchmarks: `wh(ns, name).subscription(…)`.
pub fn typical_subscription(i: usize, repo: &str) -> Value {
    match i % 4 {
        0 => json!({ "image": { "repoURL": repo, "constraint": "^1.0.0" } }),
        1 => {
            json!({ "image": { "repoURL": repo, "imageSelectionStrategy": "Lexical", "ignoreTagsRegexes": ["-rc"] } })
        }
        2 => {
            json!({ "image": { "repoURL": repo, "imageSelectionStrategy": "Digest", "constraint": "latest" } })
        }
        _ => {
            json!({ "chart": { "repoURL": format!("oci://{repo}"), "semverConstraint": ">=1.2.0 <2.0.0" } })
        }
    }
}
