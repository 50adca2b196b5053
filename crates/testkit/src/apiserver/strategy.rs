//! The per-resource rules of the registry strategies and admission, as a real API server
//! applies them on writes: type checks, name and metadata validation, server-set defaults,
//! what counts as a spec change, and NamespaceLifecycle. No I/O here.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

use super::now_rfc3339;
use super::status::ApiError;
use super::store::{NameRule, ResourceDef, Store};

/// Defaults `apiVersion`/`kind` from the path and rejects a body of another type.
pub(super) fn check_type(def: &ResourceDef, obj: &mut Value) -> Result<(), ApiError> {
    let Some(o) = obj.as_object_mut() else {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    };
    let gv = def.api_version();
    match o.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            o.insert("apiVersion".into(), gv.clone().into());
        }
        Some(v) if v == gv => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({gv})"
            )));
        }
    }
    match o.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            o.insert("kind".into(), def.kind.into());
        }
        Some(k) if k == def.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({}) for {gv}",
                def.kind
            )));
        }
    }
    Ok(())
}

fn valid_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub(super) fn name_problem(rule: NameRule, name: &str) -> Option<String> {
    match rule {
        NameRule::Label if !valid_label(name) => Some(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')".into(),
        ),
        NameRule::Subdomain if name.len() > 253 || !name.split('.').all(valid_label) => Some(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".into(),
        ),
        NameRule::PathSegment if name == "." || name == ".." => {
            Some(format!("may not be '{name}'"))
        }
        NameRule::PathSegment if name.contains('/') || name.contains('%') => {
            Some("may not contain '/' or '%'".into())
        }
        _ => None,
    }
}

/// `spec` and `status` must be objects where present: a CRD's structural schema (422) or a
/// built-in type's decoder (400) would refuse anything else.
pub(super) fn check_shape(def: &ResourceDef, obj: &Value) -> Result<(), ApiError> {
    for field in ["spec", "status"] {
        let Some(v) = obj.get(field).filter(|v| !v.is_null() && !v.is_object()) else {
            continue;
        };
        let got = match v {
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Bool(_) => "boolean",
            _ => "number",
        };
        if def.custom {
            let name = obj["metadata"]["name"].as_str().unwrap_or("");
            return Err(ApiError::invalid(
                def.group,
                def.kind,
                name,
                &[(
                    field,
                    "FieldValueTypeInvalid",
                    format!(
                        "Invalid value: \"{got}\": {field} in body must be of type object: \"{got}\""
                    ),
                )],
            ));
        }
        return Err(ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: json: cannot unmarshal {got} into Go struct field {}.{field}",
            def.kind, def.version, def.kind, def.kind
        )));
    }
    Ok(())
}

/// Labels and annotations must be string maps, finalizers a string list, as the typed
/// decoder of a real server insists.
pub(super) fn check_metadata(meta: &Map<String, Value>) -> Result<(), ApiError> {
    for field in ["labels", "annotations"] {
        match meta.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) if m.values().all(Value::is_string) => {}
            Some(_) => {
                return Err(ApiError::bad_request(format!(
                    "metadata.{field}: must be a map of string to string"
                )));
            }
        }
    }
    match meta.get("finalizers") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => Ok(()),
        Some(_) => Err(ApiError::bad_request(
            "metadata.finalizers: must be a list of strings",
        )),
    }
}

/// Secrets: `stringData` is write-only and lands base64-encoded in `data`.
pub(super) fn fold_string_data(def: &ResourceDef, obj: &mut Value) {
    if def.plural != "secrets" {
        return;
    }
    let Some(o) = obj.as_object_mut() else { return };
    if let Some(Value::Object(sd)) = o.remove("stringData") {
        let data = o.entry("data").or_insert_with(|| json!({}));
        if !data.is_object() {
            *data = json!({});
        }
        for (k, v) in sd {
            if let Some(v) = v.as_str() {
                data[k] = STANDARD.encode(v).into();
            }
        }
    }
    o.entry("type").or_insert_with(|| "Opaque".into());
}

/// What a real server sets on a new object of this resource.
pub(super) fn defaults_on_create(def: &ResourceDef, obj: &mut Value) {
    match def.plural {
        "namespaces" => {
            obj["status"] = json!({"phase": "Active"});
            let spec = &mut obj["spec"];
            if !spec.is_object() {
                *spec = json!({});
            }
            if !spec["finalizers"].is_array() {
                spec["finalizers"] = json!(["kubernetes"]);
            }
        }
        "customresourcedefinitions" => {
            // The apiextensions controllers run inside kube-apiserver, so even a bare one
            // accepts names and marks the CRD Established.
            let versions = obj["spec"]["versions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let stored: Vec<Value> = versions
                .iter()
                .filter(|v| v["storage"] == json!(true))
                .map(|v| v["name"].clone())
                .collect();
            let now = now_rfc3339();
            let cond = |t: &str, reason: &str| json!({"type": t, "status": "True", "lastTransitionTime": now, "reason": reason, "message": ""});
            obj["status"] = json!({
                "acceptedNames": obj["spec"]["names"].clone(),
                "storedVersions": stored,
                "conditions": [cond("NamesAccepted", "NoConflicts"), cond("Established", "InitialNamesAccepted")],
            });
        }
        _ if def.status_subresource => {
            if let Some(o) = obj.as_object_mut() {
                o.remove("status");
            }
        }
        _ => {}
    }
}

/// The content whose change bumps `metadata.generation`.
pub(super) fn spec_part(def: &ResourceDef, obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("metadata");
        if def.status_subresource {
            o.remove("status");
        }
    }
    v
}

pub(super) fn same_ignoring_rv(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        v
    };
    strip(a) == strip(b)
}

pub(super) fn namespace_admits(
    store: &Store,
    def: &ResourceDef,
    ns: &str,
    name: &str,
) -> Result<(), ApiError> {
    let Some(namespace) = store.get("namespaces", ns) else {
        return Err(ApiError::not_found("", "namespaces", ns));
    };
    if namespace["metadata"].get("deletionTimestamp").is_some()
        || namespace["status"]["phase"] == json!("Terminating")
    {
        let mut e = ApiError::forbidden(
            def.group,
            def.plural,
            name,
            &format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ),
        );
        if let Some(d) = e.details.as_mut() {
            d["causes"] = json!([{
                "reason": "NamespaceTerminating",
                "message": format!("namespace {ns} is being terminated"),
                "field": "metadata.namespace",
            }]);
        }
        return Err(e);
    }
    Ok(())
}
