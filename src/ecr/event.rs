//! An EventBridge "ECR Image Action" event: read, checked, and sorted into a push to act on
//! or a reason to leave it alone.
//!
//! Pure. [`ImageAction::read`] takes the EventBridge envelope (the Lambda payload itself, or
//! an SQS body the rule put on the queue) with the fields quayhook reads; [`triage`] decides,
//! from the event and the configured scope alone, whether it is a successful push in scope
//! ([`Push`]) or why not ([`Skip`]). Nothing here quotes an event's content in an error.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::EcrConfig;

/// The envelope's `source` of every ECR event.
pub const SOURCE: &str = "aws.ecr";

/// The envelope's `detail-type` of an image push or delete.
pub const DETAIL_TYPE: &str = "ECR Image Action";

/// Whether `payload` is an EventBridge envelope of an ECR image action: `source` is
/// [`SOURCE`] and `detail-type` is [`DETAIL_TYPE`]. Says nothing about the rest.
pub fn is_image_action(payload: &Value) -> bool {
    payload.get("source").and_then(Value::as_str) == Some(SOURCE)
        && payload.get("detail-type").and_then(Value::as_str) == Some(DETAIL_TYPE)
}

/// The EventBridge envelope of an "ECR Image Action" event, with the fields quayhook reads
/// (others, such as `detail.manifest-media-type`, are ignored and not written back).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageAction {
    /// The envelope version (`"0"`).
    #[serde(default)]
    pub version: String,
    /// EventBridge's unique event id.
    pub id: String,
    /// [`DETAIL_TYPE`].
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    /// [`SOURCE`].
    pub source: String,
    /// The AWS account of the registry: 12 digits.
    pub account: String,
    /// When the action happened, RFC 3339.
    #[serde(default)]
    pub time: String,
    /// The region of the registry.
    pub region: String,
    /// The resources involved (ECR sends none for an image action).
    #[serde(default)]
    pub resources: Vec<String>,
    /// What happened.
    pub detail: Detail,
}

/// The `detail` of an image action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detail {
    /// `PUSH` or `DELETE`.
    #[serde(rename = "action-type")]
    pub action_type: String,
    /// `SUCCESS` or `FAILURE`.
    pub result: String,
    /// The repository's name within the registry, e.g. `team-a/api`.
    #[serde(rename = "repository-name")]
    pub repository_name: String,
    /// The tag pushed; absent for a push by digest only.
    #[serde(rename = "image-tag", default, skip_serializing_if = "Option::is_none")]
    pub image_tag: Option<String>,
    /// The manifest digest, `sha256:…`.
    #[serde(
        rename = "image-digest",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub image_digest: Option<String>,
}

/// Why a payload marked as an ECR image action is not one quayhook can read. Names the
/// field, never its value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// Occurs when `source` or `detail-type` is not an ECR image action's.
    #[error("not an ECR Image Action event")]
    NotImageAction,
    /// Occurs when a field quayhook reads is missing or has the wrong type.
    #[error("malformed ECR event: {reason}")]
    Malformed {
        /// Which field.
        reason: String,
    },
    /// Occurs when `account` is not a 12-digit AWS account id.
    #[error("malformed ECR event: account is not a 12-digit AWS account id")]
    Account,
    /// Occurs when `region` is not an AWS region name.
    #[error("malformed ECR event: region is not an AWS region name")]
    Region,
    /// Occurs when `detail.repository-name` is not an ECR repository name.
    #[error("malformed ECR event: repository-name is not an ECR repository name")]
    Repository,
}

impl ImageAction {
    /// Reads an envelope: [`is_image_action`], the fields above, then `account` (12 digits),
    /// `region` (lowercase letters, digits and `-`) and `detail.repository-name` (ECR's
    /// grammar: 2–256 lowercase letters, digits, `.`, `_`, `-` and `/`, starting with a letter
    /// or digit), which make up the repository URL.
    ///
    /// # Errors
    /// A [`ReadError`] naming the first problem.
    pub fn read(payload: Value) -> Result<ImageAction, ReadError> {
        if !is_image_action(&payload) {
            return Err(ReadError::NotImageAction);
        }
        let event: ImageAction =
            serde_json::from_value(payload).map_err(|e| ReadError::Malformed {
                reason: crate::cause::serde_reason(&e),
            })?;
        if event.account.len() != 12 || !event.account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ReadError::Account);
        }
        let region_ok = (1..=32).contains(&event.region.len())
            && event.region.starts_with(|c: char| c.is_ascii_lowercase())
            && event
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !region_ok {
            return Err(ReadError::Region);
        }
        let name = &event.detail.repository_name;
        let name_ok = (2..=256).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/".contains(&b));
        if !name_ok {
            return Err(ReadError::Repository);
        }
        Ok(event)
    }

    /// Reads an SQS message body: `None` when it is JSON but not an ECR image action (a
    /// [`crate::message::Message`], say), else what [`ImageAction::read`] makes of it.
    pub fn from_body(text: &str) -> Option<Result<ImageAction, ReadError>> {
        let Ok(value) = serde_json::from_str::<Value>(text) else {
            // Not JSON at all: the message decoder reports it.
            return None;
        };
        is_image_action(&value).then(|| ImageAction::read(value))
    }

    /// The envelope as JSON, with the fields read: what the webhook function queues for the
    /// worker, the same shape an EventBridge rule targeting the queue sends.
    pub fn encode(&self) -> String {
        // Plain strings: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The registry host, `{account}.dkr.ecr.{region}.amazonaws.com` (`.amazonaws.com.cn` in
    /// the China regions, whose names start with `cn-`).
    pub fn registry(&self) -> String {
        let domain = if self.region.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        format!("{}.dkr.ecr.{}.{domain}", self.account, self.region)
    }

    /// The repository URL a Warehouse subscribes to: `{registry}/{repository-name}`.
    pub fn repository_url(&self) -> String {
        format!("{}/{}", self.registry(), self.detail.repository_name)
    }

    /// The tag pushed, if any (an empty one counts as none).
    pub fn tag(&self) -> Option<&str> {
        self.detail.image_tag.as_deref().filter(|t| !t.is_empty())
    }
}

/// A successful push in scope: what the refresh needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Push {
    /// The repository URL, before normalization ([`ImageAction::repository_url`]).
    pub repository: String,
    /// Kargo's qualifiers: the pushed tag, or none for a push by digest only, which
    /// refreshes every subscriber (reference §5.8).
    pub tags: Vec<String>,
}

/// Why an event refreshes nothing, decided before any I/O.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Skip {
    /// Returned when `QUAYHOOK_ECR_PROJECTS` is not set: ECR events are refused.
    #[error("ECR events are refused: QUAYHOOK_ECR_PROJECTS is not set")]
    Refused,
    /// Returned for an action other than `PUSH` (a `DELETE`).
    #[error("not a push: action-type {0}")]
    NotAPush(String),
    /// Returned for a push whose `result` is not `SUCCESS`.
    #[error("the push did not succeed: result {0}")]
    Unsuccessful(String),
    /// Returned when the repository's name starts with none of
    /// `QUAYHOOK_ECR_REPOSITORY_PREFIXES`.
    #[error("repository outside QUAYHOOK_ECR_REPOSITORY_PREFIXES")]
    OutsidePrefixes,
}

/// What an event asks for under `scope` (`None`: ECR events are not configured).
///
/// In order: no scope refuses; an action other than `PUSH` and a result other than
/// `SUCCESS` are skipped (ECR also reports deletes and failed pushes); a repository outside
/// the prefixes is skipped. Otherwise the push, with its tag as the one qualifier.
///
/// # Errors
/// The [`Skip`] that applies.
pub fn triage(event: &ImageAction, scope: Option<&EcrConfig>) -> Result<Push, Skip> {
    let scope = scope.ok_or(Skip::Refused)?;
    let detail = &event.detail;
    if detail.action_type != "PUSH" {
        return Err(Skip::NotAPush(short(&detail.action_type)));
    }
    if detail.result != "SUCCESS" {
        return Err(Skip::Unsuccessful(short(&detail.result)));
    }
    if !scope.covers(&detail.repository_name) {
        return Err(Skip::OutsidePrefixes);
    }
    Ok(Push {
        repository: event.repository_url(),
        tags: event.tag().map(str::to_owned).into_iter().collect(),
    })
}

/// An enum-like value from the event, as a reason shows it: at most 32 characters, only
/// letters, digits, `_` and `-` (ECR sends `DELETE`, `FAILURE`).
fn short(value: &str) -> String {
    let kept: String = value
        .chars()
        .take(32)
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    if kept.is_empty() {
        "(other)".to_owned()
    } else {
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EcrProjects;
    use serde_json::json;

    fn envelope(detail: Value) -> Value {
        json!({
            "version": "0",
            "id": "13cde686-328b-6117-af20-0e5566167482",
            "detail-type": "ECR Image Action",
            "source": "aws.ecr",
            "account": "123456789012",
            "time": "2026-11-27T14:05:36Z",
            "region": "eu-west-1",
            "resources": [],
            "detail": detail
        })
    }

    fn push(tag: Option<&str>) -> Value {
        let mut detail = json!({
            "result": "SUCCESS",
            "repository-name": "team-a/api",
            "image-digest": "sha256:7f5b2640fe6fb4f46592dfd3410c4a79dac4f89e4782432e0378abcd1234",
            "action-type": "PUSH"
        });
        if let Some(tag) = tag {
            detail["image-tag"] = json!(tag);
        }
        envelope(detail)
    }

    fn scope(prefixes: &[&str]) -> EcrConfig {
        EcrConfig {
            projects: EcrProjects::All,
            repository_prefixes: prefixes.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    #[test]
    fn a_tagged_push_names_the_repository_url_and_its_tag() {
        let event = ImageAction::read(push(Some("v1.2.3"))).unwrap();
        assert_eq!(
            event.repository_url(),
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team-a/api"
        );
        assert_eq!(
            triage(&event, Some(&scope(&[]))),
            Ok(Push {
                repository: "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team-a/api".into(),
                tags: vec!["v1.2.3".into()],
            })
        );
    }

    #[test]
    fn a_push_by_digest_only_has_no_qualifier() {
        for tag in [None, Some("")] {
            let event = ImageAction::read(push(tag)).unwrap();
            assert_eq!(event.tag(), None);
            let push = triage(&event, Some(&scope(&[]))).unwrap();
            assert!(push.tags.is_empty(), "every subscriber is refreshed (§5.8)");
        }
    }

    #[test]
    fn china_regions_use_the_cn_domain() {
        let mut payload = push(Some("v1"));
        payload["region"] = json!("cn-north-1");
        let event = ImageAction::read(payload).unwrap();
        assert_eq!(
            event.repository_url(),
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/team-a/api"
        );
    }

    #[test]
    fn deletes_failed_pushes_and_other_repositories_are_skipped_unconfigured_refused() {
        let event = ImageAction::read(push(Some("v1"))).unwrap();
        assert_eq!(triage(&event, None), Err(Skip::Refused));
        assert_eq!(
            triage(&event, Some(&scope(&["team-b/", "team-a/web"]))),
            Err(Skip::OutsidePrefixes)
        );
        assert!(triage(&event, Some(&scope(&["team-b/", "team-a/"]))).is_ok());

        let mut delete = event.clone();
        delete.detail.action_type = "DELETE".into();
        assert_eq!(
            triage(&delete, Some(&scope(&[]))),
            Err(Skip::NotAPush("DELETE".into()))
        );
        let mut failed = event.clone();
        failed.detail.result = "FAILURE".into();
        let skip = triage(&failed, Some(&scope(&[]))).unwrap_err();
        assert_eq!(skip.to_string(), "the push did not succeed: result FAILURE");
        failed.detail.result = "<script>\n".repeat(10);
        let skip = triage(&failed, Some(&scope(&[]))).unwrap_err();
        assert_eq!(
            skip,
            Skip::Unsuccessful("scriptscriptscriptscri".into()),
            "at most 32 characters in, only plain ones out"
        );
    }

    #[test]
    fn unreadable_events_name_the_field_not_the_value() {
        let not_ecr = json!({"source": "aws.ecs", "detail-type": "ECR Image Action"});
        assert_eq!(ImageAction::read(not_ecr), Err(ReadError::NotImageAction));
        let mut no_name = push(Some("v1"));
        no_name["detail"]
            .as_object_mut()
            .unwrap()
            .remove("repository-name");
        assert_eq!(
            ImageAction::read(no_name).unwrap_err().to_string(),
            "malformed ECR event: missing field `repository-name`"
        );
        let mut typed = push(Some("v1"));
        typed["detail"]["image-tag"] = json!({"s3cret": 1});
        let err = ImageAction::read(typed).unwrap_err();
        assert!(!format!("{err} {err:?}").contains("s3cret"));
        for (field, value, want) in [
            ("account", json!("12345678901"), ReadError::Account),
            ("account", json!("12345678901x"), ReadError::Account),
            (
                "region",
                json!("eu-west-1.evil.example/"),
                ReadError::Region,
            ),
            ("region", json!(""), ReadError::Region),
        ] {
            let mut payload = push(Some("v1"));
            payload[field] = value;
            assert_eq!(ImageAction::read(payload), Err(want), "{field}");
        }
        for name in ["a", "Team/api", "team a", "/api", "api?x=1", "api@sha256"] {
            let mut payload = push(Some("v1"));
            payload["detail"]["repository-name"] = json!(name);
            assert_eq!(
                ImageAction::read(payload),
                Err(ReadError::Repository),
                "{name}"
            );
        }
    }

    #[test]
    fn an_event_round_trips_through_the_queue_body() {
        let mut payload = push(Some("v1"));
        payload["detail"]["manifest-media-type"] =
            json!("application/vnd.oci.image.manifest.v1+json");
        let event = ImageAction::read(payload).unwrap();
        let body = event.encode();
        assert!(
            !body.contains("manifest-media-type"),
            "only the fields read"
        );
        assert_eq!(ImageAction::from_body(&body), Some(Ok(event)));
        assert_eq!(ImageAction::from_body(r#"{"v":1,"project":"p"}"#), None);
        assert_eq!(ImageAction::from_body("not json"), None);
        assert_eq!(
            ImageAction::from_body(r#"{"source":"aws.ecr","detail-type":"ECR Image Action"}"#),
            Some(Err(ReadError::Malformed {
                reason: "missing field `id`".into()
            }))
        );
    }
}
