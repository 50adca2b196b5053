//! The answer to a delivery that reached the refresh step, and the bounds on what it echoes.
//!
//! Pure. An [`Outcome`] keeps every Warehouse the push touched, so its counts (Kargo's
//! `refreshed N warehouse(s)`, the log event's fields) are exact. What goes back to the client
//! and into the log is its [`Outcome::echo`]: each list keeps its first [`ECHO_ITEMS`]
//! entries, each Warehouse its first [`ECHO_ITEMS`] reasons, and each string taken from the
//! push or the cluster is cut at [`ECHO_CHARS`] bytes with a marker, so one push with
//! thousands of tags or a 2 MB `docker_url` answers in a few kilobytes (API Gateway and Lambda
//! cap a response at 6 MB). What was left out is counted under `omitted`.
//!
//! [`Outcome::completion`] says what the delivery amounts to, and so its status in
//! [`crate::handler::respond`]: done (200), queued for the worker (202), or partly failed (500).

use std::borrow::Cow;

use serde::Serialize;

use kargo_match::index::{Invalid, Selected, Skipped};
use kargo_match::warehouse::WarehouseKey;

/// Entries of each list (Warehouses, tags, repositories, reasons) echoed in full.
pub const ECHO_ITEMS: usize = 20;

/// Bytes of any one echoed string; longer ones are cut with a `…[+N bytes]` marker.
pub const ECHO_CHARS: usize = 256;

/// A string as echoed: at most [`ECHO_CHARS`] bytes (cut on a character boundary), with a
/// marker saying how much was cut.
pub fn clip(text: &str) -> Cow<'_, str> {
    if text.len() <= ECHO_CHARS {
        return Cow::Borrowed(text);
    }
    let mut end = ECHO_CHARS;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…[+{} bytes]", &text[..end], text.len() - end))
}

/// The receiver that accepted the token (its identity is not secret).
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct ReceiverOut {
    /// The Kargo project; `""` for a cluster-level receiver.
    pub project: String,
    /// The receiver's name.
    pub name: String,
    /// Whether the token matched the previous (rotated-out) secret.
    #[serde(rename = "previousSecret", skip_serializing_if = "std::ops::Not::not")]
    pub previous_secret: bool,
}

/// One Warehouse in an answer, with what happened to it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WarehouseOut {
    /// Namespace (project).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The tag that selected it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Why it was left alone (first [`ECHO_ITEMS`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// How many further reasons were left out.
    #[serde(skip_serializing_if = "is_zero")]
    pub reasons_omitted: usize,
    /// What failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn no_receiver(receiver: &&ReceiverOut) -> bool {
    receiver.name.is_empty()
}

impl WarehouseOut {
    fn new(key: &WarehouseKey) -> Self {
        Self {
            namespace: clip(&key.namespace).into_owned(),
            name: clip(&key.name).into_owned(),
            tag: None,
            reasons: Vec::new(),
            reasons_omitted: 0,
            error: None,
        }
    }

    /// A Warehouse selected by the plan (`tag` is the one that matched).
    pub fn selected(selected: &Selected) -> Self {
        let mut out = Self::new(&selected.key);
        out.tag = selected.tag.as_deref().map(|t| clip(t).into_owned());
        out
    }

    /// A selected Warehouse whose refresh failed with `error`.
    pub fn failed(selected: &Selected, error: &str) -> Self {
        let mut out = Self::selected(selected);
        out.error = Some(clip(error).into_owned());
        out
    }

    /// A subscribed Warehouse no pushed tag interests, with the first reasons.
    pub fn skipped(skipped: &Skipped) -> Self {
        let mut out = Self::new(&skipped.key);
        out.reasons = skipped
            .reasons
            .iter()
            .take(ECHO_ITEMS)
            .map(|r| clip(&r.to_string()).into_owned())
            .collect();
        out.reasons_omitted = skipped.reasons.len().saturating_sub(ECHO_ITEMS);
        out
    }

    /// A subscribed Warehouse whose subscription is misconfigured.
    pub fn invalid(invalid: &Invalid) -> Self {
        let mut out = Self::new(&invalid.key);
        out.error = Some(clip(&invalid.error.to_string()).into_owned());
        out
    }
}

/// What a delivery amounts to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion {
    /// Every selected Warehouse was refreshed (or is gone).
    Done,
    /// What the cluster could not take is queued for the worker; nothing failed for good.
    Queued,
    /// Some Warehouse's refresh failed and was not queued.
    PartlyFailed,
}

/// The result of a delivery that reached the refresh step: every Warehouse it touched.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Set when the payload is Quay's "Test Notification".
    pub test_notification: bool,
    /// The receiver that accepted the token.
    pub receiver: ReceiverOut,
    /// The normalized repository URLs looked up.
    pub repositories: Vec<String>,
    /// The tags considered (sorted, deduplicated, at most `QUAYHOOK_MAX_TAGS`).
    pub tags: Vec<String>,
    /// Distinct pushed tags beyond `QUAYHOOK_MAX_TAGS`, not considered.
    pub tags_not_considered: usize,
    /// Warehouses refreshed.
    pub refreshed: Vec<WarehouseOut>,
    /// Warehouses whose refresh failed.
    pub failed: Vec<WarehouseOut>,
    /// Warehouses deleted since the index was built.
    pub gone: Vec<WarehouseOut>,
    /// Subscribed Warehouses left alone, with why.
    pub skipped: Vec<WarehouseOut>,
    /// Subscribed Warehouses whose subscription is misconfigured.
    pub invalid: Vec<WarehouseOut>,
    /// Warehouses whose refresh failed for a transient reason and is queued for the worker.
    pub queued: Vec<WarehouseOut>,
    /// Set when the push itself is queued: no plan could be made (the Warehouses could not be
    /// listed), so the worker plans it.
    pub queued_push: bool,
    /// Why work was queued (one line).
    pub cause: Option<String>,
}

/// The bounded view of an [`Outcome`] that is serialized into the answer and the log.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Echo<'a> {
    /// Kargo's message, `refreshed N warehouse(s)` (kept verbatim for compatibility).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msg: Option<String>,
    /// Kargo's error on partial failure, `failed to refresh F of N warehouses`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Quay's "Test Notification".
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub test_notification: bool,
    /// The receiver that accepted the token; absent for an ECR event ([`crate::ecr`]), which
    /// has none (a Quay receiver always has a name).
    #[serde(skip_serializing_if = "no_receiver")]
    pub receiver: &'a ReceiverOut,
    /// Repository URLs looked up (clipped).
    pub repositories: Vec<Cow<'a, str>>,
    /// Tags considered (clipped).
    pub tags: Vec<Cow<'a, str>>,
    /// Tags beyond `QUAYHOOK_MAX_TAGS`, not considered.
    #[serde(skip_serializing_if = "is_zero")]
    pub tags_not_considered: usize,
    /// Warehouses refreshed.
    pub refreshed: &'a [WarehouseOut],
    /// Warehouses whose refresh failed.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub failed: &'a [WarehouseOut],
    /// Warehouses deleted since the index was built.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub gone: &'a [WarehouseOut],
    /// Subscribed Warehouses left alone.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub skipped: &'a [WarehouseOut],
    /// Subscribed Warehouses whose subscription is misconfigured.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub invalid: &'a [WarehouseOut],
    /// Warehouses queued for the worker; present (possibly empty, for a queued push) whenever
    /// something was queued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queued: Option<&'a [WarehouseOut]>,
    /// Why work was queued (clipped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<Cow<'a, str>>,
    /// How many entries each cut list left out.
    #[serde(skip_serializing_if = "Omitted::is_empty")]
    pub omitted: Omitted,
}

/// Entries left out of an [`Echo`], per list; zero counts are not serialized.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Omitted {
    /// Repository URLs.
    #[serde(skip_serializing_if = "is_zero")]
    pub repositories: usize,
    /// Tags (considered, but not echoed).
    #[serde(skip_serializing_if = "is_zero")]
    pub tags: usize,
    /// Refreshed Warehouses.
    #[serde(skip_serializing_if = "is_zero")]
    pub refreshed: usize,
    /// Failed Warehouses.
    #[serde(skip_serializing_if = "is_zero")]
    pub failed: usize,
    /// Gone Warehouses.
    #[serde(skip_serializing_if = "is_zero")]
    pub gone: usize,
    /// Skipped Warehouses.
    #[serde(skip_serializing_if = "is_zero")]
    pub skipped: usize,
    /// Invalid Warehouses.
    #[serde(skip_serializing_if = "is_zero")]
    pub invalid: usize,
    /// Queued Warehouses.
    #[serde(skip_serializing_if = "is_zero")]
    pub queued: usize,
}

impl Omitted {
    fn is_empty(&self) -> bool {
        *self == Omitted::default()
    }
}

fn head<T>(items: &[T]) -> (&[T], usize) {
    let kept = items.len().min(ECHO_ITEMS);
    (&items[..kept], items.len() - kept)
}

fn clipped(items: &[String]) -> (Vec<Cow<'_, str>>, usize) {
    let (kept, left) = head(items);
    (kept.iter().map(|s| clip(s)).collect(), left)
}

impl Outcome {
    /// Records selected Warehouses whose refresh failed, with why, keeping `failed` sorted by
    /// namespace and name.
    pub fn fail_all<E: std::error::Error + 'static>(&mut self, failures: &[(&Selected, E)]) {
        for (selected, e) in failures {
            let cause = crate::cause::Chain(e).to_string();
            self.failed.push(WarehouseOut::failed(selected, &cause));
        }
        self.failed
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    }

    /// Whether no Warehouse's refresh failed for good (queued ones may still be pending).
    pub fn succeeded(&self) -> bool {
        self.failed.is_empty()
    }

    /// Whether any work was queued for the worker.
    pub fn is_queued(&self) -> bool {
        self.queued_push || !self.queued.is_empty()
    }

    /// What the delivery amounts to: a failure that was not queued outweighs queued work.
    pub fn completion(&self) -> Completion {
        if !self.failed.is_empty() {
            Completion::PartlyFailed
        } else if self.is_queued() {
            Completion::Queued
        } else {
            Completion::Done
        }
    }

    /// The bounded view for the answer and the log; counts in the messages are exact.
    ///
    /// `msg` is Kargo's `refreshed N warehouse(s)`, or `queued refresh of N warehouse(s)` /
    /// `queued the push for a retry` when work was queued; `error` is Kargo's
    /// `failed to refresh F of N warehouses`, counting the queued ones among the attempted.
    pub fn echo(&self) -> Echo<'_> {
        let queued_msg = if self.queued_push {
            Some("queued the push for a retry".to_owned())
        } else if !self.queued.is_empty() {
            Some(format!(
                "queued refresh of {} warehouse(s)",
                self.queued.len()
            ))
        } else {
            None
        };
        let (msg, error) = if self.failed.is_empty() {
            let msg = queued_msg
                .unwrap_or_else(|| format!("refreshed {} warehouse(s)", self.refreshed.len()));
            (Some(msg), None)
        } else {
            let attempted = self.refreshed.len() + self.failed.len() + self.queued.len();
            (
                queued_msg,
                Some(format!(
                    "failed to refresh {} of {attempted} warehouses",
                    self.failed.len()
                )),
            )
        };
        let (repositories, repositories_left) = clipped(&self.repositories);
        let (tags, tags_left) = clipped(&self.tags);
        let (refreshed, refreshed_left) = head(&self.refreshed);
        let (failed, failed_left) = head(&self.failed);
        let (gone, gone_left) = head(&self.gone);
        let (skipped, skipped_left) = head(&self.skipped);
        let (invalid, invalid_left) = head(&self.invalid);
        let (queued, queued_left) = head(&self.queued);
        Echo {
            msg,
            error,
            test_notification: self.test_notification,
            receiver: &self.receiver,
            repositories,
            tags,
            tags_not_considered: self.tags_not_considered,
            refreshed,
            failed,
            gone,
            skipped,
            invalid,
            queued: self.is_queued().then_some(queued),
            cause: self.cause.as_deref().map(clip),
            omitted: Omitted {
                repositories: repositories_left,
                tags: tags_left,
                refreshed: refreshed_left,
                failed: failed_left,
                gone: gone_left,
                skipped: skipped_left,
                invalid: invalid_left,
                queued: queued_left,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kargo_match::select::Mismatch;

    fn key(i: usize) -> WarehouseKey {
        WarehouseKey::new("ns", format!("w{i}"))
    }

    #[test]
    fn long_strings_are_cut_on_a_character_boundary_with_a_marker() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(200); // 400 bytes
        let cut = clip(&long);
        assert!(cut.starts_with(&"é".repeat(128)));
        assert!(cut.ends_with("…[+144 bytes]"), "{cut}");
        let two_mb = "q".repeat(2 << 20);
        assert!(clip(&two_mb).len() < ECHO_CHARS + 32);
    }

    #[test]
    fn lists_keep_their_first_entries_and_count_the_rest_while_counts_stay_exact() {
        let outcome = Outcome {
            tags: (0..5000).map(|i| format!("t{i}")).collect(),
            tags_not_considered: 95_000,
            repositories: vec!["x".repeat(2 << 20)],
            refreshed: (0..1000)
                .map(|i| {
                    WarehouseOut::selected(&Selected {
                        key: key(i),
                        tag: None,
                    })
                })
                .collect(),
            ..Outcome::default()
        };
        let echo = outcome.echo();
        assert_eq!(echo.msg.as_deref(), Some("refreshed 1000 warehouse(s)"));
        assert_eq!(echo.refreshed.len(), ECHO_ITEMS);
        assert_eq!(echo.tags.len(), ECHO_ITEMS);
        assert_eq!(echo.omitted.refreshed, 1000 - ECHO_ITEMS);
        assert_eq!(echo.omitted.tags, 5000 - ECHO_ITEMS);
        let body = serde_json::to_string(&echo).unwrap();
        assert!(body.len() < 16 * 1024, "{} bytes", body.len());
        assert!(body.contains("\"tagsNotConsidered\":95000"));
        assert!(body.contains("\"omitted\":{"));
    }

    #[test]
    fn reasons_are_capped_per_warehouse() {
        let skipped = Skipped {
            key: key(0),
            reasons: (0..300)
                .map(|i| Mismatch::OtherTag {
                    tag: format!("t{i}"),
                    tracked: "latest".into(),
                })
                .collect(),
        };
        let out = WarehouseOut::skipped(&skipped);
        assert_eq!(out.reasons.len(), ECHO_ITEMS);
        assert_eq!(out.reasons_omitted, 300 - ECHO_ITEMS);
    }

    #[test]
    fn queued_work_is_202_material_with_a_bounded_list_and_its_cause() {
        let selected = |i| {
            WarehouseOut::selected(&Selected {
                key: key(i),
                tag: Some("v1".into()),
            })
        };
        let outcome = Outcome {
            refreshed: vec![selected(0)],
            queued: (1..=30).map(selected).collect(),
            cause: Some(format!("cannot reach the API server {}", "x".repeat(600))),
            ..Outcome::default()
        };
        assert_eq!(outcome.completion(), Completion::Queued);
        let body = serde_json::to_value(outcome.echo()).unwrap();
        assert_eq!(body["msg"], "queued refresh of 30 warehouse(s)");
        assert_eq!(body["queued"].as_array().unwrap().len(), ECHO_ITEMS);
        assert_eq!(body["omitted"]["queued"], 30 - ECHO_ITEMS);
        assert_eq!(body["refreshed"][0]["name"], "w0");
        assert!(body["cause"].as_str().unwrap().len() < ECHO_CHARS + 32);
        assert!(body.get("error").is_none());

        let push = Outcome {
            queued_push: true,
            cause: Some("cannot list".into()),
            tags: vec!["v1".into()],
            ..Outcome::default()
        };
        let body = serde_json::to_value(push.echo()).unwrap();
        assert_eq!(body["msg"], "queued the push for a retry");
        assert_eq!(body["queued"], serde_json::json!([]));
        assert_eq!(body["tags"], serde_json::json!(["v1"]));

        let mixed = Outcome {
            failed: vec![WarehouseOut::failed(
                &Selected {
                    key: key(9),
                    tag: None,
                },
                "forbidden (403)",
            )],
            queued: vec![selected(1)],
            ..Outcome::default()
        };
        assert_eq!(mixed.completion(), Completion::PartlyFailed);
        let body = serde_json::to_value(mixed.echo()).unwrap();
        assert_eq!(body["error"], "failed to refresh 1 of 2 warehouses");
        assert_eq!(body["msg"], "queued refresh of 1 warehouse(s)");
        assert_eq!(Outcome::default().completion(), Completion::Done);
    }

    #[test]
    fn nothing_is_omitted_from_a_small_outcome() {
        let outcome = Outcome {
            tags: vec!["v1".into()],
            ..Outcome::default()
        };
        let body = serde_json::to_value(outcome.echo()).unwrap();
        assert!(body.get("omitted").is_none());
        assert!(body.get("tagsNotConsidered").is_none());
        assert!(body.get("queued").is_none());
        assert!(body.get("cause").is_none());
    }
}
