//! The durable path's message: the work a delivery could not finish, as the worker reads it.
//!
//! Pure. A [`Message`] is versioned JSON (`"v": 1`), one SQS message body:
//!
//! ```json
//! {"v":1,"project":"kargo-demo","receiver":"quay","repositories":["quay.io/ns/app"],
//!  "dockerUrl":"quay.io/ns/app","tags":["v1"],"receivedAt":"2026-11-27T14:05:36.123456789Z",
//!  "pending":[{"namespace":"kargo-demo","name":"app"}],"cause":"cannot reach the API server"}
//! ```
//!
//! `pending` names the Warehouses still to refresh; `null` means no plan could be made (the
//! Warehouses could not be listed), so the worker plans again from `dockerUrl` and `tags`
//! exactly as the delivery would have. `project` `""` is a cluster-level receiver.
//!
//! # What a message never holds
//! The fields are the receiver's identity (project and name, which are not secret), what the
//! push named (repository, tags), Warehouse keys and a cause line. There is no field for the
//! URL token, a receiver secret, the request path or kubeconfig content, and decoding ignores
//! fields it does not know, so none can travel through the queue by accident of this type.
//!
//! # Versions
//! Additive changes keep `v` at 1: a field a reader does not know is ignored, and every field
//! but `v`, `project` and `receiver` has a default. A change old readers would misread bumps
//! `v`, and [`Message::decode`] rejects any version but its own with
//! [`MessageError::Version`] (the message then reaches the dead-letter queue after the
//! queue's `maxReceiveCount`, where it can be redriven to a worker that reads it).

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use kargo_match::token::ReceiverId;
use kargo_match::warehouse::{WarehouseKey, refresh_value};

/// The version this build writes and reads.
pub const VERSION: u64 = 1;

/// The largest body sent: SQS's original per-message limit (256 KiB), which every queue
/// accepts whatever its `MaximumMessageSize`. Longer `pending` lists are split over several
/// messages ([`Message::split`]).
pub const MAX_BYTES: usize = 256 * 1024;

/// A Warehouse still to refresh.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    /// Namespace (the Kargo project).
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl From<&WarehouseKey> for Pending {
    fn from(key: &WarehouseKey) -> Self {
        Pending {
            namespace: key.namespace.clone(),
            name: key.name.clone(),
        }
    }
}

impl From<&Pending> for WarehouseKey {
    fn from(p: &Pending) -> Self {
        WarehouseKey::new(p.namespace.clone(), p.name.clone())
    }
}

/// One queued delivery (see the module documentation for the format).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// The format version, [`VERSION`].
    pub v: u64,
    /// The receiver's project; `""` for a cluster-level receiver.
    pub project: String,
    /// The receiver's name.
    pub receiver: String,
    /// The normalized repository URLs the push named (for operators; the worker plans from
    /// `docker_url`).
    #[serde(default)]
    pub repositories: Vec<String>,
    /// The push's `docker_url`, as sent.
    #[serde(default)]
    pub docker_url: String,
    /// The tags considered (sorted, deduplicated, at most `QUAYHOOK_MAX_TAGS`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// When the delivery arrived, RFC 3339 UTC.
    #[serde(default)]
    pub received_at: String,
    /// The Warehouses still to refresh; `None` to plan again.
    #[serde(default)]
    pub pending: Option<Vec<Pending>>,
    /// Why the delivery could not finish (one line, no secret: see [`crate::cause::Chain`]).
    #[serde(default)]
    pub cause: String,
}

/// Why a message cannot be read or written. Carries no message content: serde's messages may
/// quote the input, so only positions and field names are kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// Occurs when the body is not JSON.
    #[error("message body is not JSON")]
    NotJson,
    /// Occurs when the body is JSON but has no integer version field `v`.
    #[error("not a quayhook message: no integer version field \"v\"")]
    Unversioned,
    /// Occurs when the message was written in a format version this build does not read.
    #[error("unsupported message version {found}: this build reads version {VERSION}")]
    Version {
        /// The version found.
        found: u64,
    },
    /// Occurs when a field of a version [`VERSION`] message is missing or has the wrong type.
    #[error("malformed message: {reason}")]
    Malformed {
        /// Which field, and where.
        reason: String,
    },
    /// Occurs when a message would exceed [`MAX_BYTES`] (a push with a huge `docker_url` or
    /// tags; one Warehouse key never does).
    #[error("message of {bytes} bytes exceeds the queue limit of {MAX_BYTES} bytes")]
    TooLarge {
        /// The encoded size.
        bytes: usize,
    },
}

impl Message {
    /// A message for `receiver`'s delivery of `docker_url`, received at `received`.
    ///
    /// `pending` are the Warehouses left to refresh (`None`: plan again); `cause` says why.
    pub fn new(
        receiver: &ReceiverId,
        docker_url: &str,
        repositories: Vec<String>,
        tags: Vec<String>,
        received: SystemTime,
        pending: Option<&[WarehouseKey]>,
        cause: String,
    ) -> Message {
        Message {
            v: VERSION,
            project: receiver.project.clone(),
            receiver: receiver.receiver.clone(),
            repositories,
            docker_url: docker_url.to_owned(),
            tags,
            received_at: refresh_value(received),
            pending: pending.map(|keys| keys.iter().map(Pending::from).collect()),
            cause,
        }
    }

    /// The receiver that queued it.
    pub fn receiver_id(&self) -> ReceiverId {
        ReceiverId {
            project: self.project.clone(),
            receiver: self.receiver.clone(),
        }
    }

    /// The Warehouses left to refresh, or `None` when the worker must plan again.
    pub fn pending_keys(&self) -> Option<Vec<WarehouseKey>> {
        self.pending
            .as_ref()
            .map(|p| p.iter().map(WarehouseKey::from).collect())
    }

    /// The JSON body.
    ///
    /// # Errors
    /// [`MessageError::TooLarge`] beyond [`MAX_BYTES`].
    pub fn encode(&self) -> Result<String, MessageError> {
        // Plain strings and lists: serializing cannot fail, but say so rather than panic.
        let text = serde_json::to_string(self).map_err(|_| MessageError::Malformed {
            reason: "cannot encode".into(),
        })?;
        if text.len() > MAX_BYTES {
            return Err(MessageError::TooLarge { bytes: text.len() });
        }
        Ok(text)
    }

    /// Reads a body written by [`Message::encode`] of this version (see "Versions" above).
    ///
    /// # Errors
    /// [`MessageError::NotJson`], [`MessageError::Unversioned`], [`MessageError::Version`] or
    /// [`MessageError::Malformed`], none of which quotes the body.
    pub fn decode(text: &str) -> Result<Message, MessageError> {
        let value: Value = serde_json::from_str(text).map_err(|_| MessageError::NotJson)?;
        let found = value
            .get("v")
            .and_then(Value::as_u64)
            .ok_or(MessageError::Unversioned)?;
        if found != VERSION {
            return Err(MessageError::Version { found });
        }
        serde_json::from_value(value).map_err(|e| MessageError::Malformed {
            reason: crate::cause::serde_reason(&e),
        })
    }

    /// This message as one or more messages that each encode within [`MAX_BYTES`]: the
    /// `pending` list is cut into consecutive runs, every part repeating the other fields. A
    /// message without `pending` stays whole.
    ///
    /// # Errors
    /// [`MessageError::TooLarge`] when the fields other than `pending`, with one Warehouse,
    /// already exceed the limit.
    pub fn split(self) -> Result<Vec<Message>, MessageError> {
        let Some(pending) = self.pending.clone() else {
            self.encode()?;
            return Ok(vec![self]);
        };
        let empty = Message {
            pending: Some(Vec::new()),
            ..self
        };
        let base = encoded_len(&empty);
        let mut parts = Vec::new();
        let mut run: Vec<Pending> = Vec::new();
        let mut size = base;
        for item in pending {
            // The item and the comma before it.
            let len = encoded_len(&item) + 1;
            if base + len > MAX_BYTES {
                return Err(MessageError::TooLarge { bytes: base + len });
            }
            if size + len > MAX_BYTES {
                parts.push(std::mem::take(&mut run));
                size = base;
            }
            size += len;
            run.push(item);
        }
        parts.push(run);
        Ok(parts
            .into_iter()
            .map(|run| Message {
                pending: Some(run),
                ..empty.clone()
            })
            .collect())
    }
}

fn encoded_len<T: Serialize>(value: &T) -> usize {
    serde_json::to_string(value).map_or(usize::MAX / 2, |t| t.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn receiver() -> ReceiverId {
        ReceiverId {
            project: "kargo-demo".into(),
            receiver: "quay".into(),
        }
    }

    fn sample(pending: Option<&[WarehouseKey]>) -> Message {
        Message::new(
            &receiver(),
            "quay.io/ns/app",
            vec!["quay.io/ns/app".into()],
            vec!["v1".into()],
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_788_336),
            pending,
            "cannot reach the API server".into(),
        )
    }

    #[test]
    fn a_message_round_trips_in_the_documented_format() {
        let keys = [WarehouseKey::new("kargo-demo", "w")];
        let message = sample(Some(&keys));
        let text = message.encode().unwrap();
        assert_eq!(
            text,
            r#"{"v":1,"project":"kargo-demo","receiver":"quay","repositories":["quay.io/ns/app"],"dockerUrl":"quay.io/ns/app","tags":["v1"],"receivedAt":"2026-11-27T14:05:36.000000000Z","pending":[{"namespace":"kargo-demo","name":"w"}],"cause":"cannot reach the API server"}"#
        );
        let back = Message::decode(&text).unwrap();
        assert_eq!(back, message);
        assert_eq!(back.pending_keys(), Some(keys.to_vec()));
        assert_eq!(back.receiver_id(), receiver());

        let replan = sample(None);
        let text = replan.encode().unwrap();
        assert!(text.contains(r#""pending":null"#), "{text}");
        assert_eq!(Message::decode(&text).unwrap().pending_keys(), None);
    }

    #[test]
    fn only_the_documented_fields_are_ever_written() {
        // The schema is the guarantee that no token, secret, path or kubeconfig travels: pin
        // it, so a new field is a deliberate change reviewed against that rule.
        let keys = [WarehouseKey::new("ns", "w")];
        for message in [sample(Some(&keys)), sample(None)] {
            let value: Value = serde_json::from_str(&message.encode().unwrap()).unwrap();
            let mut fields: Vec<&str> = value
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            fields.sort_unstable();
            assert_eq!(
                fields,
                [
                    "cause",
                    "dockerUrl",
                    "pending",
                    "project",
                    "receivedAt",
                    "receiver",
                    "repositories",
                    "tags",
                    "v"
                ]
            );
        }
    }

    #[test]
    fn other_versions_are_rejected_with_a_reason_and_unknown_fields_ignored() {
        let v2 = r#"{"v":2,"project":"p","receiver":"r","route":{"new":"shape"}}"#;
        let err = Message::decode(v2).unwrap_err();
        assert_eq!(err, MessageError::Version { found: 2 });
        assert_eq!(
            err.to_string(),
            "unsupported message version 2: this build reads version 1"
        );
        assert_eq!(
            Message::decode(r#"{"v":0,"project":"p","receiver":"r"}"#),
            Err(MessageError::Version { found: 0 })
        );
        for unversioned in [r#"{"project":"p"}"#, r#"{"v":"1"}"#, "[1]", "7"] {
            assert_eq!(
                Message::decode(unversioned),
                Err(MessageError::Unversioned),
                "{unversioned}"
            );
        }
        // A v1 writer that added a field, and one that left out the optional ones.
        let newer = Message::decode(
            r#"{"v":1,"project":"p","receiver":"r","pending":[],"priority":"high"}"#,
        )
        .unwrap();
        assert_eq!(newer.pending_keys(), Some(Vec::new()));
        assert_eq!(newer.docker_url, "");
    }

    #[test]
    fn malformed_bodies_are_rejected_without_quoting_them() {
        for (body, want) in [
            ("not json s3cret", MessageError::NotJson),
            (
                r#"{"v":1,"receiver":"s3cret"}"#,
                MessageError::Malformed {
                    reason: "missing field `project`".into(),
                },
            ),
            (
                r#"{"v":1,"project":7,"receiver":"r","cause":"s3cret"}"#,
                MessageError::Malformed {
                    reason: "a field has the wrong type".into(),
                },
            ),
            (
                r#"{"v":1,"project":"p","receiver":"r","tags":"s3cret"}"#,
                MessageError::Malformed {
                    reason: "a field has the wrong type".into(),
                },
            ),
        ] {
            let err = Message::decode(body).unwrap_err();
            assert_eq!(err, want, "{body}");
            assert!(!format!("{err} {err:?}").contains("s3cret"), "{body}");
        }
    }

    #[test]
    fn a_long_pending_list_is_split_into_messages_within_the_limit() {
        let keys: Vec<WarehouseKey> = (0..5000)
            .map(|i| WarehouseKey::new("kargo-demo", format!("{i:0>200}")))
            .collect();
        let parts = sample(Some(&keys)).split().unwrap();
        assert!(parts.len() > 1, "{} parts", parts.len());
        let mut rejoined = Vec::new();
        for part in &parts {
            let text = part.encode().expect("each part fits");
            assert!(text.len() <= MAX_BYTES);
            rejoined.extend(Message::decode(&text).unwrap().pending_keys().unwrap());
        }
        assert_eq!(rejoined, keys, "every Warehouse once, in order");

        let small = sample(Some(&keys[..2])).split().unwrap();
        assert_eq!(small.len(), 1);
        assert_eq!(sample(None).split().unwrap().len(), 1);
    }

    #[test]
    fn a_message_that_cannot_fit_is_too_large() {
        let mut huge = sample(None);
        huge.docker_url = "q".repeat(MAX_BYTES);
        assert!(matches!(
            huge.clone().split(),
            Err(MessageError::TooLarge { .. })
        ));
        assert!(matches!(huge.encode(), Err(MessageError::TooLarge { .. })));
        huge.pending = Some(vec![Pending {
            namespace: "n".into(),
            name: "w".into(),
        }]);
        assert!(matches!(huge.split(), Err(MessageError::TooLarge { .. })));
    }
}
