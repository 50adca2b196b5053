//! GET, CREATE, UPDATE, PATCH and DELETE of stored objects, with the registry rules a real API
//! server applies: server-set metadata, optimistic concurrency, `generation` bumps on spec
//! changes only, status subresources, finalizers, and the NamespaceLifecycle admission rules
//! (no content in a missing or Terminating namespace; a deleted namespace stays Terminating,
//! as on a bare kube-apiserver without controller-manager). No I/O here: the caller holds the
//! store lock and does the HTTP.

use serde_json::{Map, Value, json};

use super::patch::{self, JsonPatchError};
use super::status::ApiError;
use super::store::{RESOURCES, ResourceDef, Store, key};
use super::strategy::{
    check_metadata, check_shape, check_type, defaults_on_create, fold_string_data, name_problem,
    namespace_admits, same_ignoring_rv, spec_part,
};
use super::{new_uid, now_rfc3339, random_suffix};

/// The object (or collection) a request addresses.
#[derive(Debug, Clone, Copy)]
pub(super) struct Target<'a> {
    pub def: &'static ResourceDef,
    pub namespace: Option<&'a str>,
    /// Empty for a collection.
    pub name: &'a str,
    /// Empty, or `status`.
    pub subresource: &'a str,
}

impl Target<'_> {
    fn key(&self) -> String {
        key(self.namespace, self.name)
    }

    fn not_found(&self) -> ApiError {
        ApiError::not_found(self.def.group, self.def.plural, self.name)
    }

    fn current<'s>(&self, store: &'s Store) -> Result<&'s Value, ApiError> {
        store
            .get(self.def.plural, &self.key())
            .ok_or_else(|| self.not_found())
    }
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj["metadata"][field].as_str().unwrap_or("")
}

fn meta_mut(obj: &mut Value) -> Result<&mut Map<String, Value>, ApiError> {
    let Some(o) = obj.as_object_mut() else {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    };
    let meta = o
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    meta.as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata must be a JSON object"))
}

/// GET of an object (or of its `status` subresource, the same object).
pub(super) fn get(store: &Store, t: Target) -> Result<Value, ApiError> {
    t.current(store).cloned()
}

/// POST to a collection. Returns the created object (201).
pub(super) fn create(
    store: &mut Store,
    t: Target,
    mut obj: Value,
    dry_run: bool,
) -> Result<Value, ApiError> {
    let def = t.def;
    check_type(def, &mut obj)?;
    check_shape(def, &obj)?;
    let meta = meta_mut(&mut obj)?;
    check_metadata(meta)?;
    if def.namespaced {
        let ns = t.namespace.unwrap_or("");
        match meta.get("namespace").and_then(Value::as_str) {
            None | Some("") => {
                meta.insert("namespace".into(), ns.into());
            }
            Some(n) if n == ns => {}
            Some(_) => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
    } else {
        meta.remove("namespace");
    }
    let mut name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if name.is_empty()
        && let Some(prefix) = meta.get("generateName").and_then(Value::as_str)
        && !prefix.is_empty()
    {
        name = format!("{prefix}{}", random_suffix());
        meta.insert("name".into(), name.clone().into());
    }
    if name.is_empty() {
        return Err(ApiError::invalid(
            def.group,
            def.kind,
            "",
            &[(
                "metadata.name",
                "FieldValueRequired",
                "Required value: name or generateName is required".into(),
            )],
        ));
    }
    if let Some(problem) = name_problem(def.names, &name) {
        return Err(ApiError::invalid(
            def.group,
            def.kind,
            &name,
            &[(
                "metadata.name",
                "FieldValueInvalid",
                format!("Invalid value: \"{name}\": {problem}"),
            )],
        ));
    }
    if meta
        .get("resourceVersion")
        .and_then(Value::as_str)
        .is_some_and(|v| !v.is_empty())
    {
        return Err(ApiError::internal(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "selfLink",
        "managedFields",
    ] {
        meta.remove(field);
    }
    meta.insert("uid".into(), new_uid().into());
    meta.insert("creationTimestamp".into(), now_rfc3339().into());
    if def.generation {
        meta.insert("generation".into(), 1.into());
    }
    let target = Target { name: &name, ..t };
    if def.namespaced {
        namespace_admits(store, def, t.namespace.unwrap_or(""), &name)?;
    }
    if store.get(def.plural, &target.key()).is_some() {
        return Err(ApiError::already_exists(def.group, def.plural, &name));
    }
    defaults_on_create(def, &mut obj);
    fold_string_data(def, &mut obj);
    if dry_run {
        return Ok(obj);
    }
    Ok(store.put(def.plural, &target.key(), obj))
}

/// Checks that a body for an existing object names the object of the URL.
fn check_identity(t: Target, obj: &Value) -> Result<(), ApiError> {
    let name = meta_str(obj, "name");
    if name != t.name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({name}) does not match the name on the URL ({})",
            t.name
        )));
    }
    if t.def.namespaced {
        let ns = meta_str(obj, "namespace");
        if !ns.is_empty() && Some(ns) != t.namespace {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    Ok(())
}

/// Writes `new` over `old` with the update strategy of the resource (or of its status).
fn commit_update(
    store: &mut Store,
    t: Target,
    old: &Value,
    mut new: Value,
    dry_run: bool,
) -> Result<Value, ApiError> {
    let def = t.def;
    check_shape(def, &new)?;
    if t.subresource == "status" {
        // A status write changes status and nothing else.
        let status = new.get("status").cloned();
        new = old.clone();
        match (status, new.as_object_mut()) {
            (Some(s), Some(o)) => {
                o.insert("status".into(), s);
            }
            (None, Some(o)) => {
                o.remove("status");
            }
            _ => {}
        }
    } else {
        let meta = meta_mut(&mut new)?;
        check_metadata(meta)?;
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            match old["metadata"].get(field) {
                Some(v) => meta.insert(field.into(), v.clone()),
                None => meta.remove(field),
            };
        }
        if def.namespaced {
            meta.insert("namespace".into(), t.namespace.unwrap_or("").into());
        }
        meta.remove("managedFields");
        if let Some(o) = new.as_object_mut() {
            if def.status_subresource {
                match old.get("status") {
                    Some(s) => o.insert("status".into(), s.clone()),
                    None => o.remove("status"),
                };
            }
            if def.plural == "namespaces" {
                let fin = old["spec"]["finalizers"].clone();
                let spec = o.entry("spec").or_insert_with(|| json!({}));
                if spec.is_object() {
                    spec["finalizers"] = fin;
                }
            }
        }
        fold_string_data(def, &mut new);
        if def.generation && spec_part(def, old) != spec_part(def, &new) {
            let g = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            new["metadata"]["generation"] = g.into();
        }
    }
    if same_ignoring_rv(old, &new) {
        // etcd is not written when nothing changed, so the resourceVersion stays.
        return Ok(old.clone());
    }
    let finalized = new["metadata"].get("deletionTimestamp").is_some()
        && new["metadata"]["finalizers"]
            .as_array()
            .is_none_or(Vec::is_empty)
        && def.plural != "namespaces";
    if dry_run {
        return Ok(new);
    }
    let k = t.key();
    if finalized {
        store.put(def.plural, &k, new);
        return store.remove(def.plural, &k).ok_or_else(|| t.not_found());
    }
    Ok(store.put(def.plural, &k, new))
}

/// PUT of a whole object. Returns the HTTP status (200, or 201 when it created) and object.
pub(super) fn update(
    store: &mut Store,
    t: Target,
    mut obj: Value,
    dry_run: bool,
) -> Result<(u16, Value), ApiError> {
    check_type(t.def, &mut obj)?;
    check_identity(t, &obj)?;
    let Some(old) = store.get(t.def.plural, &t.key()).cloned() else {
        if t.def.create_on_update && t.subresource.is_empty() {
            if let Some(m) = obj["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
            return create(store, t, obj, dry_run).map(|o| (201, o));
        }
        return Err(t.not_found());
    };
    let rv = meta_str(&obj, "resourceVersion");
    if rv.is_empty() && t.def.custom {
        return Err(ApiError::invalid(
            t.def.group,
            t.def.kind,
            t.name,
            &[(
                "metadata.resourceVersion",
                "FieldValueInvalid",
                "Invalid value: 0x0: must be specified for an update".into(),
            )],
        ));
    }
    if !rv.is_empty() && rv != meta_str(&old, "resourceVersion") {
        return Err(ApiError::stale(t.def.group, t.def.plural, t.name));
    }
    let uid = meta_str(&obj, "uid");
    if !uid.is_empty() && uid != meta_str(&old, "uid") {
        return Err(ApiError::conflict(
            t.def.group,
            t.def.plural,
            t.name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                meta_str(&old, "uid")
            ),
        ));
    }
    commit_update(store, t, &old, obj, dry_run).map(|o| (200, o))
}

/// The patch formats the server applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PatchType {
    Merge,
    Json,
}

impl PatchType {
    /// From the request's `Content-Type`; anything else is a 415.
    pub fn from_content_type(ct: &str) -> Result<PatchType, ApiError> {
        let base = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match base.as_str() {
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/json-patch+json" => Ok(PatchType::Json),
            _ => Err(ApiError::unsupported_media_type()),
        }
    }
}

/// PATCH of an object: applies the patch to the current object, then updates.
pub(super) fn patch(
    store: &mut Store,
    t: Target,
    kind: PatchType,
    body: &[u8],
    dry_run: bool,
) -> Result<Value, ApiError> {
    let old = t.current(store)?.clone();
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    let mut new = old.clone();
    match kind {
        PatchType::Merge => patch::merge(&mut new, &doc),
        PatchType::Json => patch::json(&mut new, &doc).map_err(|e| match e {
            JsonPatchError::Malformed(m) => ApiError::bad_request(m),
            JsonPatchError::Failed(m) => ApiError::unprocessable(m),
        })?,
    }
    if !new.is_object() || !new["metadata"].is_object() {
        return Err(ApiError::bad_request(
            "the patched object is not a valid object",
        ));
    }
    if new["apiVersion"] != old["apiVersion"] || new["kind"] != old["kind"] {
        check_type(t.def, &mut new)?;
    }
    check_identity(t, &new)?;
    let rv = meta_str(&new, "resourceVersion");
    if !rv.is_empty() && rv != meta_str(&old, "resourceVersion") {
        return Err(ApiError::stale(t.def.group, t.def.plural, t.name));
    }
    commit_update(store, t, &old, new, dry_run)
}

/// DELETE of an object. Returns the body: the object (deleted, or marked for deletion while
/// finalizers remain), or a `Status` of success where the real registry returns one.
pub(super) fn delete(
    store: &mut Store,
    t: Target,
    options: &Value,
    dry_run: bool,
) -> Result<Value, ApiError> {
    let def = t.def;
    let old = t.current(store)?.clone();
    let pre = &options["preconditions"];
    if !pre.is_null() && !pre.is_object() {
        return Err(ApiError::bad_request(
            "DeleteOptions.preconditions must be a JSON object",
        ));
    }
    for (field, label) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
        if let Some(want) = pre[field].as_str()
            && want != meta_str(&old, field)
        {
            return Err(ApiError::conflict(
                def.group,
                def.plural,
                t.name,
                &format!(
                    "Precondition failed: {label} in precondition: {want}, {label} in object meta: {}",
                    meta_str(&old, field)
                ),
            ));
        }
    }
    let deleting = old["metadata"].get("deletionTimestamp").is_some();
    let has_finalizers = old["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    let k = t.key();
    if def.plural == "namespaces" {
        if deleting {
            return Err(ApiError::conflict(
                "",
                "namespaces",
                t.name,
                "The system is ensuring all content is removed from this namespace.  Upon completion, this namespace will automatically be purged by the system.",
            ));
        }
        let spec_finalizers = old["spec"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if spec_finalizers || has_finalizers {
            // Only the namespace controller (controller-manager) empties and removes it.
            let mut new = old.clone();
            new["metadata"]["deletionTimestamp"] = now_rfc3339().into();
            new["metadata"]["deletionGracePeriodSeconds"] = 0.into();
            if !new["status"].is_object() {
                new["status"] = json!({});
            }
            new["status"]["phase"] = "Terminating".into();
            return Ok(if dry_run {
                new
            } else {
                store.put(def.plural, &k, new)
            });
        }
    } else if has_finalizers {
        if deleting {
            return Ok(old);
        }
        let mut new = old.clone();
        new["metadata"]["deletionTimestamp"] = now_rfc3339().into();
        new["metadata"]["deletionGracePeriodSeconds"] = 0.into();
        if let Some(g) = old["metadata"]["generation"].as_i64() {
            new["metadata"]["generation"] = (g + 1).into();
        }
        return Ok(if dry_run {
            new
        } else {
            store.put(def.plural, &k, new)
        });
    }
    let gone = if dry_run {
        old.clone()
    } else {
        store.remove(def.plural, &k).ok_or_else(|| t.not_found())?
    };
    if def.return_deleted {
        return Ok(gone);
    }
    let mut details = json!({"name": t.name, "kind": def.plural, "uid": meta_str(&old, "uid")});
    if !def.group.is_empty() {
        details["group"] = def.group.into();
    }
    Ok(
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}),
    )
}

/// Stores `obj` directly, as the test helpers do: create or replace, no admission and no
/// authorization, but the same server-set metadata. A namespaced object whose namespace is
/// missing gets its Namespace created first.
pub(super) fn apply(store: &mut Store, mut obj: Value) -> Result<Value, String> {
    if !obj.is_object() || !obj["metadata"].is_object() {
        return Err("apply: the object must be a JSON object with metadata".into());
    }
    let api_version = obj["apiVersion"].as_str().unwrap_or("").to_string();
    let kind = obj["kind"].as_str().unwrap_or("").to_string();
    let def = RESOURCES
        .iter()
        .find(|d| d.stored && d.api_version() == api_version && d.kind == kind)
        .ok_or_else(|| format!("apply: no resource serves {api_version} {kind}"))?;
    let meta = obj["metadata"]
        .as_object_mut()
        .ok_or_else(|| "apply: the object has no metadata".to_string())?;
    let name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if name.is_empty() {
        return Err("apply: metadata.name is required".into());
    }
    let namespace = if def.namespaced {
        let ns = meta
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string();
        meta.insert("namespace".into(), ns.clone().into());
        Some(ns)
    } else {
        meta.remove("namespace");
        None
    };
    if let Some(ns) = &namespace
        && store.get("namespaces", ns).is_none()
    {
        apply(
            store,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )?;
    }
    let k = key(namespace.as_deref(), &name);
    let old = store.get(def.plural, &k).cloned();
    let meta = obj["metadata"].as_object_mut().ok_or("apply: metadata")?;
    meta.remove("resourceVersion");
    let keep = |field: &str, fallback: Value, meta: &mut Map<String, Value>| {
        if meta.get(field).is_none() {
            let v = old
                .as_ref()
                .and_then(|o| o["metadata"].get(field).cloned())
                .unwrap_or(fallback);
            meta.insert(field.into(), v);
        }
    };
    keep("uid", new_uid().into(), meta);
    keep("creationTimestamp", now_rfc3339().into(), meta);
    if def.generation {
        let g = match &old {
            Some(o) if spec_part(def, o) != spec_part(def, &obj) => {
                o["metadata"]["generation"].as_i64().unwrap_or(0) + 1
            }
            Some(o) => o["metadata"]["generation"].as_i64().unwrap_or(1),
            None => 1,
        };
        obj["metadata"]["generation"] = g.into();
    }
    if def.plural == "namespaces" {
        if !obj["status"]["phase"].is_string() {
            obj["status"] = json!({"phase": "Active"});
        }
        if !obj["spec"].is_object() {
            obj["spec"] = json!({});
        }
        if !obj["spec"]["finalizers"].is_array() {
            obj["spec"]["finalizers"] = json!(["kubernetes"]);
        }
    }
    fold_string_data(def, &mut obj);
    Ok(store.put(def.plural, &k, obj))
}
