//! The two patch formats the server applies: JSON merge patch (RFC 7386) and JSON patch
//! (RFC 6902). No I/O here.

use serde_json::Value;

pub(super) use crate::merge_patch::merge;

/// Why a JSON patch did not apply.
#[derive(Debug)]
pub(super) enum JsonPatchError {
    /// The patch document itself is malformed (400).
    Malformed(String),
    /// A well-formed operation failed against the object (422).
    Failed(String),
}

fn pointer(path: &str) -> Result<Vec<String>, JsonPatchError> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(JsonPatchError::Malformed(format!(
            "invalid JSON pointer {path:?}"
        )));
    };
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn failed(op: &str, path: &str) -> JsonPatchError {
    JsonPatchError::Failed(format!(
        "the server rejected our request due to an error in our request: {op} operation does not apply: doc is missing path: {path:?}"
    ))
}

fn parent<'a>(doc: &'a mut Value, tokens: &[String]) -> Option<&'a mut Value> {
    let mut cur = doc;
    for t in tokens {
        cur = match cur {
            Value::Object(m) => m.get_mut(t)?,
            Value::Array(a) => a.get_mut(t.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn get(doc: &Value, tokens: &[String]) -> Option<Value> {
    let mut cur = doc;
    for t in tokens {
        cur = match cur {
            Value::Object(m) => m.get(t)?,
            Value::Array(a) => a.get(t.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur.clone())
}

fn remove(doc: &mut Value, tokens: &[String]) -> Option<Value> {
    let (last, init) = tokens.split_last()?;
    match parent(doc, init)? {
        Value::Object(m) => m.remove(last),
        Value::Array(a) => {
            let i = last.parse::<usize>().ok()?;
            (i < a.len()).then(|| a.remove(i))
        }
        _ => None,
    }
}

fn add(doc: &mut Value, tokens: &[String], value: Value, replace: bool) -> Option<()> {
    let Some((last, init)) = tokens.split_last() else {
        *doc = value;
        return Some(());
    };
    match parent(doc, init)? {
        Value::Object(m) => {
            if replace && !m.contains_key(last) {
                return None;
            }
            m.insert(last.clone(), value);
        }
        Value::Array(a) if last == "-" && !replace => a.push(value),
        Value::Array(a) => {
            let i = last.parse::<usize>().ok()?;
            if replace {
                *a.get_mut(i)? = value;
            } else if i <= a.len() {
                a.insert(i, value);
            } else {
                return None;
            }
        }
        _ => return None,
    }
    Some(())
}

/// Applies an RFC 6902 JSON patch (add, remove, replace, move, copy, test).
pub(super) fn json(doc: &mut Value, ops: &Value) -> Result<(), JsonPatchError> {
    let Some(ops) = ops.as_array() else {
        return Err(JsonPatchError::Malformed(
            "json: cannot unmarshal object into Go value of type jsonpatch.Patch".into(),
        ));
    };
    for op in ops {
        let name = op.get("op").and_then(Value::as_str).unwrap_or("");
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| JsonPatchError::Malformed(format!("missing path in {op}")))?;
        let tokens = pointer(path)?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| JsonPatchError::Malformed(format!("missing value in {op}")))
        };
        let from = || -> Result<Vec<String>, JsonPatchError> {
            pointer(
                op.get("from")
                    .and_then(Value::as_str)
                    .ok_or_else(|| JsonPatchError::Malformed(format!("missing from in {op}")))?,
            )
        };
        match name {
            "add" => add(doc, &tokens, value()?, false).ok_or_else(|| failed(name, path))?,
            "replace" => add(doc, &tokens, value()?, true).ok_or_else(|| failed(name, path))?,
            "remove" => {
                remove(doc, &tokens).ok_or_else(|| failed(name, path))?;
            }
            "test" => {
                if get(doc, &tokens) != Some(value()?) {
                    return Err(JsonPatchError::Failed(format!(
                        "the server rejected our request due to an error in our request: testing value {path:?} failed: test failed"
                    )));
                }
            }
            "move" => {
                let v = remove(doc, &from()?).ok_or_else(|| failed(name, path))?;
                add(doc, &tokens, v, false).ok_or_else(|| failed(name, path))?;
            }
            "copy" => {
                let v = get(doc, &from()?).ok_or_else(|| failed(name, path))?;
                add(doc, &tokens, v, false).ok_or_else(|| failed(name, path))?;
            }
            other => {
                return Err(JsonPatchError::Malformed(format!(
                    "Unexpected kind: {other}"
                )));
            }
        }
    }
    Ok(())
}
