//! JSON merge patch (RFC 7386), as the API server applies it; shared by the local API server
//! and the in-memory cluster of [`crate::fakes`]. No I/O.

use serde_json::{Map, Value};

/// Applies an RFC 7386 merge patch: objects merge recursively, `null` deletes a member, and
/// anything else (arrays included) replaces the target.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(members) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in members {
            if v.is_null() {
                t.remove(k);
            } else {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge(&mut doc, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(doc, json!({"a": "z", "c": {"d": "e"}}));
        merge(&mut doc, &json!({"a": {"x": 1}}));
        assert_eq!(doc["a"], json!({"x": 1}));
        merge(&mut doc, &json!(["replaced"]));
        assert_eq!(doc, json!(["replaced"]));
    }
}
