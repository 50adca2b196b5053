//! The resource table and the versioned object store.
//!
//! The store is a small MVCC map in the way etcd is one: every write gets the next value of one
//! global revision counter (the `resourceVersion`), and the history of each key is kept until a
//! compaction, so a paged list can be served from the snapshot its first page was read at, and a
//! continue token from before a compaction is answered `410 Expired`, as a real API server does.
//! Keys are ordered like etcd keys (`namespace/name`, or `name` for cluster-scoped resources), so
//! list order matches a real cluster. No I/O here.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How `metadata.name` is validated on create, per resource (as the real registry strategies do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NameRule {
    /// RFC 1123 label (namespaces).
    Label,
    /// RFC 1123 subdomain (most objects).
    Subdomain,
    /// Any path segment (RBAC objects: `system:basic-user`).
    PathSegment,
}

/// One served resource: where it lives in the URL space and how its registry behaves.
#[derive(Debug)]
pub(super) struct ResourceDef {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// False for create-only virtual resources (access and identity reviews).
    pub stored: bool,
    /// Served from a CustomResourceDefinition: list items keep `kind`/`apiVersion`, status is
    /// dropped on create, an update must carry a `resourceVersion`.
    pub custom: bool,
    /// Has a `status` subresource: writes to the main resource keep the stored status.
    pub status_subresource: bool,
    /// Carries `metadata.generation`.
    pub generation: bool,
    /// DELETE answers with the deleted object rather than a `Status`.
    pub return_deleted: bool,
    /// PUT of a missing object creates it (RBAC).
    pub create_on_update: bool,
    pub names: NameRule,
    pub short_names: &'static [&'static str],
    pub verbs: &'static [&'static str],
}

const RW: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
];

const fn def(group: &'static str, version: &'static str, plural: &'static str) -> ResourceDef {
    ResourceDef {
        group,
        version,
        plural,
        singular: "",
        kind: "",
        namespaced: true,
        stored: true,
        custom: false,
        status_subresource: false,
        generation: false,
        return_deleted: false,
        create_on_update: false,
        names: NameRule::Subdomain,
        short_names: &[],
        verbs: RW,
    }
}

/// Every resource this server knows. Anything else is a 404, as on a cluster without that API.
pub(super) static RESOURCES: &[ResourceDef] = &[
    ResourceDef {
        singular: "namespace",
        kind: "Namespace",
        namespaced: false,
        status_subresource: true,
        return_deleted: true,
        names: NameRule::Label,
        short_names: &["ns"],
        ..def("", "v1", "namespaces")
    },
    ResourceDef {
        singular: "serviceaccount",
        kind: "ServiceAccount",
        return_deleted: true,
        short_names: &["sa"],
        ..def("", "v1", "serviceaccounts")
    },
    ResourceDef {
        singular: "secret",
        kind: "Secret",
        ..def("", "v1", "secrets")
    },
    ResourceDef {
        singular: "configmap",
        kind: "ConfigMap",
        short_names: &["cm"],
        ..def("", "v1", "configmaps")
    },
    ResourceDef {
        singular: "role",
        kind: "Role",
        create_on_update: true,
        names: NameRule::PathSegment,
        ..def("rbac.authorization.k8s.io", "v1", "roles")
    },
    ResourceDef {
        singular: "rolebinding",
        kind: "RoleBinding",
        create_on_update: true,
        names: NameRule::PathSegment,
        ..def("rbac.authorization.k8s.io", "v1", "rolebindings")
    },
    ResourceDef {
        singular: "clusterrole",
        kind: "ClusterRole",
        namespaced: false,
        create_on_update: true,
        names: NameRule::PathSegment,
        ..def("rbac.authorization.k8s.io", "v1", "clusterroles")
    },
    ResourceDef {
        singular: "clusterrolebinding",
        kind: "ClusterRoleBinding",
        namespaced: false,
        create_on_update: true,
        names: NameRule::PathSegment,
        ..def("rbac.authorization.k8s.io", "v1", "clusterrolebindings")
    },
    ResourceDef {
        singular: "warehouse",
        kind: "Warehouse",
        custom: true,
        status_subresource: true,
        generation: true,
        ..def("kargo.akuity.io", "v1alpha1", "warehouses")
    },
    ResourceDef {
        singular: "customresourcedefinition",
        kind: "CustomResourceDefinition",
        namespaced: false,
        status_subresource: true,
        generation: true,
        short_names: &["crd", "crds"],
        ..def("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    },
    ResourceDef {
        singular: "selfsubjectaccessreview",
        kind: "SelfSubjectAccessReview",
        namespaced: false,
        stored: false,
        verbs: &["create"],
        ..def("authorization.k8s.io", "v1", "selfsubjectaccessreviews")
    },
    ResourceDef {
        singular: "selfsubjectreview",
        kind: "SelfSubjectReview",
        namespaced: false,
        stored: false,
        verbs: &["create"],
        ..def("authentication.k8s.io", "v1", "selfsubjectreviews")
    },
];

impl ResourceDef {
    /// `v1` or `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// Subresources served under this resource.
    pub fn subresources(&self) -> &'static [&'static str] {
        match self.plural {
            "namespaces" => &["status"],
            "serviceaccounts" => &["token"],
            _ if self.status_subresource => &["status"],
            _ => &[],
        }
    }
}

/// `resource.group`, or `resource` when the group is the core group.
pub(super) fn qualified(resource: &str, group: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

/// Looks a resource up by group, version and plural.
pub(super) fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceDef> {
    RESOURCES
        .iter()
        .find(|d| d.group == group && d.version == version && d.plural == plural)
}

/// Looks a stored resource up by plural alone (the test helpers' way of naming one).
pub(super) fn by_plural(plural: &str) -> Option<&'static ResourceDef> {
    RESOURCES.iter().find(|d| d.stored && d.plural == plural)
}

/// The store key of an object: `namespace/name`, or `name` when cluster-scoped.
pub(super) fn key(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

/// One version of one key; `None` records a deletion.
#[derive(Debug)]
struct Revision {
    rv: u64,
    obj: Option<Value>,
}

/// The apiserver compacts etcd every five minutes, at the revision it saw five minutes earlier.
const COMPACTION_INTERVAL: Duration = Duration::from_secs(300);

/// Why a read at a given revision cannot be served.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ReadError {
    /// The revision was compacted away.
    Compacted { compacted: u64 },
    /// The revision is in the future of this store.
    Future { current: u64 },
}

/// Versioned in-memory store of every object, keyed by (resource, key).
#[derive(Debug)]
pub(super) struct Store {
    rv: u64,
    compacted: u64,
    objects: HashMap<&'static str, BTreeMap<String, Vec<Revision>>>,
    last_compaction: Instant,
    rv_at_last_compaction: u64,
}

impl Store {
    pub fn new() -> Store {
        // Start well above zero: resourceVersion "0" means "any version" to clients.
        let rv = 100;
        Store {
            rv,
            compacted: rv,
            objects: HashMap::new(),
            last_compaction: Instant::now(),
            rv_at_last_compaction: rv,
        }
    }

    /// The current global resourceVersion.
    pub fn revision(&self) -> u64 {
        self.rv
    }

    /// The latest version of an object, if it exists.
    pub fn get(&self, resource: &str, key: &str) -> Option<&Value> {
        self.objects
            .get(resource)?
            .get(key)?
            .last()
            .and_then(|r| r.obj.as_ref())
    }

    /// Checks that a snapshot read at `rv` can be served.
    pub fn check_read(&self, rv: u64) -> Result<(), ReadError> {
        if rv < self.compacted {
            Err(ReadError::Compacted {
                compacted: self.compacted,
            })
        } else if rv > self.rv {
            Err(ReadError::Future { current: self.rv })
        } else {
            Ok(())
        }
    }

    /// Objects of `resource` as of revision `rv`, in key order, from `start` on, whose key
    /// starts with `prefix`. The caller has checked `rv` with [`Store::check_read`].
    pub fn scan<'a>(
        &'a self,
        resource: &str,
        prefix: &str,
        start: &str,
        rv: u64,
    ) -> impl Iterator<Item = (&'a String, &'a Value)> + 'a {
        let prefix = prefix.to_string();
        let from = if start > prefix.as_str() {
            start
        } else {
            &prefix
        }
        .to_string();
        self.objects
            .get(resource)
            .into_iter()
            .flat_map(move |m| m.range(from.clone()..))
            .take_while(move |(k, _)| k.starts_with(&prefix))
            .filter_map(move |(k, revs)| {
                let idx = revs.partition_point(|r| r.rv <= rv);
                let rev = revs.get(idx.checked_sub(1)?)?;
                rev.obj.as_ref().map(|o| (k, o))
            })
    }

    /// Stores a new version of an object, stamping `metadata.resourceVersion` with the next
    /// revision. Returns the stored object.
    pub fn put(&mut self, resource: &'static str, key: &str, mut obj: Value) -> Value {
        self.maybe_compact();
        self.rv += 1;
        let rv = self.rv;
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
        }
        self.objects
            .entry(resource)
            .or_default()
            .entry(key.to_string())
            .or_default()
            .push(Revision {
                rv,
                obj: Some(obj.clone()),
            });
        obj
    }

    /// Deletes an object. Returns its last version, stamped with the deletion's revision.
    pub fn remove(&mut self, resource: &'static str, key: &str) -> Option<Value> {
        let mut last = self.get(resource, key)?.clone();
        self.maybe_compact();
        self.rv += 1;
        let rv = self.rv;
        if let Some(meta) = last.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
        }
        if let Some(revs) = self.objects.get_mut(resource).and_then(|m| m.get_mut(key)) {
            revs.push(Revision { rv, obj: None });
        }
        Some(last)
    }

    /// Drops history older than `at` (clamped to the current revision): afterwards reads at an
    /// earlier revision, such as an old continue token, fail with [`ReadError::Compacted`].
    pub fn compact(&mut self, at: u64) {
        let at = at.min(self.rv);
        if at <= self.compacted {
            return;
        }
        for map in self.objects.values_mut() {
            map.retain(|_, revs| {
                let keep_from = revs.partition_point(|r| r.rv <= at).saturating_sub(1);
                revs.drain(..keep_from);
                !(revs.len() == 1 && revs[0].obj.is_none() && revs[0].rv <= at)
            });
        }
        self.compacted = at;
    }

    fn maybe_compact(&mut self) {
        if self.last_compaction.elapsed() >= COMPACTION_INTERVAL {
            let at = self.rv_at_last_compaction;
            self.compact(at);
            self.last_compaction = Instant::now();
            self.rv_at_last_compaction = self.rv;
        }
    }
}
