//! Underlying errors kept as causes, and their rendering for logs and answers.
//!
//! Pure. A [`Cause`] is what the error enums of the shell hold under `#[source]`: the SDK's, kube's
//! or the OS's error, shared behind an `Arc` so the enums stay `Clone` (the caches hand the
//! same error to every waiting request). [`Chain`] prints an error with its sources, the way
//! operators need them in one log field or one response line, without flattening them to
//! strings where the error is made.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

/// An underlying error, kept whole as the `#[source]` of one of ours.
///
/// `Display` is the inner error's own message; `source()` continues with the inner error's
/// source, so a [`Chain`] prints every layer once.
#[derive(Clone)]
pub struct Cause(Arc<dyn Error + Send + Sync + 'static>);

impl Cause {
    /// Wraps an error (or a message, for fakes and tests).
    pub fn new(error: impl Into<Box<dyn Error + Send + Sync + 'static>>) -> Self {
        Cause(Arc::from(error.into()))
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Error for Cause {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.0.source()
    }
}

/// Two causes are equal when they read the same (for tests of the error enums).
impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.to_string() == other.0.to_string()
    }
}

impl Eq for Cause {}

/// An error and its sources on one line, `outer: inner: innermost`, skipping a source whose
/// message the previous one already contains (many libraries repeat their cause).
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last = self.0.to_string();
        f.write_str(&last)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            let next = s.to_string();
            if !last.contains(&next) {
                write!(f, ": {next}")?;
            }
            last = next;
            source = s.source();
        }
        Ok(())
    }
}

/// serde_json's error reduced to what names a field, never a value: a syntax error gives its
/// position, `unknown field` and `missing field` are kept (they name a field), and any other
/// data error (`invalid type: integer `7``, which may quote a value) says only that a field has
/// the wrong type. Positions are given when the input was text (serde_json reports line 0 for
/// a `Value`).
pub fn serde_reason(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let at = if e.line() > 0 {
        format!(" (line {}, column {})", e.line(), e.column())
    } else {
        String::new()
    };
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => format!("not valid JSON{at}"),
        Category::Data => {
            let text = e.to_string();
            if text.starts_with("unknown field") || text.starts_with("missing field") {
                let field = text.split(", expected").next().unwrap_or(&text);
                field.split(" at line").next().unwrap_or(field).to_owned()
            } else {
                format!("a field has the wrong type{at}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Cause);

    #[derive(Debug, thiserror::Error)]
    #[error("middle")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn a_chain_prints_every_layer_once() {
        let io = std::io::Error::other("innermost");
        let err = Outer(Cause::new(Middle(io)));
        assert_eq!(Chain(&err).to_string(), "outer: middle: innermost");
    }

    #[test]
    fn a_source_repeated_in_its_parent_is_not_printed_twice() {
        let err = Outer(Cause::new("outer already says it"));
        assert_eq!(Chain(&err).to_string(), "outer: outer already says it");
        #[derive(Debug, thiserror::Error)]
        #[error("wrapper: {0}")]
        struct Wrapper(#[source] std::io::Error);
        let w = Wrapper(std::io::Error::other("disk"));
        assert_eq!(Chain(&w).to_string(), "wrapper: disk");
    }

    #[test]
    fn serde_reasons_name_fields_never_values() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct S {
            a: String,
        }
        let text = |t: &str| serde_reason(&serde_json::from_str::<S>(t).unwrap_err());
        let value =
            |v: serde_json::Value| serde_reason(&serde_json::from_value::<S>(v).unwrap_err());
        assert_eq!(text("{"), "not valid JSON (line 1, column 1)");
        assert_eq!(
            text(r#"{"a":7}"#),
            "a field has the wrong type (line 1, column 6)"
        );
        assert_eq!(text("{}"), "missing field `a`");
        assert_eq!(text(r#"{"a":"x","secret":1}"#), "unknown field `secret`");
        assert_eq!(
            value(serde_json::json!({"a": 7})),
            "a field has the wrong type"
        );
        assert_eq!(value(serde_json::json!({})), "missing field `a`");
        assert!(!text(r#"{"a":1234567}"#).contains("1234567"));
    }

    #[test]
    fn causes_are_cloneable_and_compare_by_message() {
        let a = Cause::new("x");
        assert_eq!(a.clone(), a);
        assert_eq!(Cause::new("x"), Cause::new("x"));
        assert_ne!(Cause::new("x"), Cause::new("y"));
    }
}
