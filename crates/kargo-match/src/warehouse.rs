//! The Kargo `Warehouse` model: what quayhook needs of `spec.subscriptions`, parsed once from
//! the JSON the API server returns (reference §4.3), and the refresh annotation (§6).
//!
//! Pure: values in, values out. No kube types: the cluster adapter hands over the object as
//! `serde_json::Value` and this module decides what it means.
//!
//! `spec.subscriptions` has no schema in the CRD and no defaults, so every item is read the way
//! Kargo's `RepoSubscription.UnmarshalJSON` reads it: exactly one type key (`image`, `chart`,
//! `git`, or any other key, which makes a generic subscription) plus an optional `name`. A
//! Warehouse that does not decode is reported as [`WarehouseError`], never as a failure of the
//! whole list: one malformed Warehouse must not take the others down.

use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// The annotation Kargo's controllers watch to re-run discovery (`kargo.akuity.io/refresh`).
pub const REFRESH_ANNOTATION: &str = "kargo.akuity.io/refresh";

/// API group of the Warehouse custom resource.
pub const GROUP: &str = "kargo.akuity.io";
/// API version of the Warehouse custom resource.
pub const VERSION: &str = "v1alpha1";
/// Kind of the Warehouse custom resource.
pub const KIND: &str = "Warehouse";
/// Plural (URL path segment) of the Warehouse custom resource.
pub const PLURAL: &str = "warehouses";

/// Identity of one Warehouse: its namespace (the Kargo project) and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WarehouseKey {
    /// Namespace, which is the Kargo project.
    pub namespace: String,
    /// Name of the Warehouse in its namespace.
    pub name: String,
}

impl WarehouseKey {
    /// Builds a key from a namespace and a name.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for WarehouseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A Warehouse reduced to what routing and selection read: its key and subscriptions in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warehouse {
    /// Namespace and name.
    pub key: WarehouseKey,
    /// `spec.subscriptions`, in the order written (selection walks them in order).
    pub subscriptions: Vec<Subscription>,
}

/// One item of `spec.subscriptions`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subscription {
    /// A container image repository.
    Image(ImageSubscription),
    /// A Helm chart repository (HTTP or OCI).
    Chart(ChartSubscription),
    /// A Git repository; never matches a Quay URL, kept so indices stay faithful.
    Git {
        /// `repoURL` as written.
        repo_url: String,
    },
    /// Any other subscription type (Kargo's generic subscriptions); never indexed.
    Generic {
        /// The type key, e.g. `artifactory`.
        kind: String,
    },
}

/// An `image` subscription (Kargo `ImageSubscription`), fields as the API server returns them.
///
/// Absent fields take the values Kargo's code sees for a Warehouse that bypassed the defaulting
/// webhook: empty strategy (= SemVer) and `strictSemvers: false` (§4.3).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ImageSubscription {
    /// `repoURL`: the image repository.
    #[serde(rename = "repoURL", deserialize_with = "nullable")]
    pub repo_url: String,
    /// `imageSelectionStrategy`: `SemVer` (or empty), `Lexical`, `NewestBuild` or `Digest`.
    #[serde(deserialize_with = "nullable")]
    pub image_selection_strategy: String,
    /// `strictSemvers`: only tags that are strict semantic versions (a leading `v` allowed).
    #[serde(deserialize_with = "nullable")]
    pub strict_semvers: bool,
    /// `constraint`: a semver constraint (SemVer) or the tag to track (Digest).
    #[serde(deserialize_with = "nullable")]
    pub constraint: String,
    /// `allowTags`: deprecated single regex; any value makes the subscription invalid.
    #[serde(deserialize_with = "nullable")]
    pub allow_tags: String,
    /// `allowTagsRegexes`: a tag must match one of these (when any are given).
    #[serde(deserialize_with = "nullable")]
    pub allow_tags_regexes: Vec<String>,
    /// `ignoreTags`: deprecated list; any value makes the subscription invalid.
    #[serde(deserialize_with = "nullable")]
    pub ignore_tags: Vec<String>,
    /// `ignoreTagsRegexes`: a tag matching any of these is ignored.
    #[serde(deserialize_with = "nullable")]
    pub ignore_tags_regexes: Vec<String>,
    /// `platform`: `os/arch`; only checked for shape.
    #[serde(deserialize_with = "nullable")]
    pub platform: String,
}

/// A `chart` subscription (Kargo `ChartSubscription`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ChartSubscription {
    /// `repoURL`: `https://…` for a classic repository, `oci://…` for an OCI one.
    #[serde(rename = "repoURL", deserialize_with = "nullable")]
    pub repo_url: String,
    /// `name`: the chart's name in a classic repository.
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    /// `semverConstraint`: versions outside it are not of interest.
    #[serde(deserialize_with = "nullable")]
    pub semver_constraint: String,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct GitFields {
    #[serde(rename = "repoURL", deserialize_with = "nullable")]
    repo_url: String,
}

/// Why a Warehouse object could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WarehouseError {
    /// Returned when `metadata.name` or `metadata.namespace` is missing or not a string.
    #[error("object has no metadata.{0}")]
    MissingMetadata(&'static str),
    /// Returned when `spec.subscriptions` is present but not a list.
    #[error("spec.subscriptions is not a list")]
    SubscriptionsNotList,
    /// Returned when a subscription item is not an object or has zero or several type keys.
    #[error(
        "subscription {index} must have exactly one of image, chart, git or another type, found {found}"
    )]
    TypeKeys {
        /// Position in `spec.subscriptions`.
        index: usize,
        /// How many type keys the item had.
        found: usize,
    },
    /// Returned when a subscription's fields have the wrong JSON types.
    #[error("subscription {index} ({kind}) does not decode: {reason}")]
    Decode {
        /// Position in `spec.subscriptions`.
        index: usize,
        /// The type key.
        kind: String,
        /// serde's description of the mismatch (field names, never values from secrets).
        reason: String,
    },
}

impl Warehouse {
    /// Reads a Warehouse from the JSON object the API server returns.
    ///
    /// Unknown fields anywhere are ignored. A missing `spec` or `spec.subscriptions` gives a
    /// Warehouse with no subscriptions (it cannot match anything).
    ///
    /// # Errors
    /// [`WarehouseError`] when the metadata lacks a name or namespace or when a subscription item
    /// does not decode; the caller reports that Warehouse and carries on with the others.
    pub fn from_json(obj: &Value) -> Result<Warehouse, WarehouseError> {
        let meta = obj.get("metadata");
        let text = |field: &'static str| {
            meta.and_then(|m| m.get(field))
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or(WarehouseError::MissingMetadata(field))
        };
        let key = WarehouseKey::new(text("namespace")?, text("name")?);
        let subscriptions = match obj.get("spec").and_then(|s| s.get("subscriptions")) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(index, item)| Subscription::from_json(index, item))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(WarehouseError::SubscriptionsNotList),
        };
        Ok(Warehouse { key, subscriptions })
    }
}

impl Subscription {
    /// Reads item `index` of `spec.subscriptions` (Kargo `RepoSubscription.UnmarshalJSON`).
    fn from_json(index: usize, item: &Value) -> Result<Subscription, WarehouseError> {
        let Some(map) = item.as_object() else {
            return Err(WarehouseError::TypeKeys { index, found: 0 });
        };
        let types: Vec<_> = map.iter().filter(|(k, _)| k.as_str() != "name").collect();
        let [(kind, body)] = types[..] else {
            return Err(WarehouseError::TypeKeys {
                index,
                found: types.len(),
            });
        };
        let decode_err = |e: serde_json::Error| WarehouseError::Decode {
            index,
            kind: kind.clone(),
            reason: e.to_string(),
        };
        Ok(match kind.as_str() {
            "image" => Subscription::Image(decode(body).map_err(decode_err)?),
            "chart" => Subscription::Chart(decode(body).map_err(decode_err)?),
            "git" => Subscription::Git {
                repo_url: decode::<GitFields>(body).map_err(decode_err)?.repo_url,
            },
            other => Subscription::Generic {
                kind: other.to_owned(),
            },
        })
    }
}

/// Decodes a subscription body; `null` decodes as all defaults, like Go's `json.Unmarshal`.
fn decode<T: for<'de> Deserialize<'de> + Default>(body: &Value) -> Result<T, serde_json::Error> {
    match body {
        Value::Null => Ok(T::default()),
        other => T::deserialize(other),
    }
}

/// Go leaves a field at its zero value when the JSON holds `null`; serde would reject it.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The value Kargo writes into the refresh annotation: RFC 3339 in UTC, whole seconds
/// (`time.Now().Format(time.RFC3339)` in a UTC process), e.g. `2026-08-21T17:51:41Z`.
pub fn refresh_value(now: SystemTime) -> String {
    let secs = match now.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs_f64().ceil() as i64),
    };
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The JSON merge patch (RFC 7386) that sets the refresh annotation and nothing else.
pub fn refresh_patch(now: SystemTime) -> Value {
    let mut annotations = Map::new();
    annotations.insert(
        REFRESH_ANNOTATION.to_owned(),
        Value::String(refresh_value(now)),
    );
    serde_json::json!({ "metadata": { "annotations": annotations } })
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day); Howard Hinnant's
/// `civil_from_days`, exact for every `i64` day count a `SystemTime` can hold.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn wh(subs: Value) -> Value {
        json!({
            "apiVersion": "kargo.akuity.io/v1alpha1", "kind": "Warehouse",
            "metadata": {"namespace": "kargo-demo", "name": "w", "resourceVersion": "7"},
            "spec": {"interval": "5m0s", "subscriptions": subs},
            "status": {"lastHandledRefresh": "x"}
        })
    }

    #[test]
    fn image_subscription_with_absent_fields_takes_kargo_runtime_defaults() {
        let w = Warehouse::from_json(&wh(json!([{"image": {"repoURL": "quay.io/a/b"}}]))).unwrap();
        assert_eq!(w.key, WarehouseKey::new("kargo-demo", "w"));
        let Subscription::Image(img) = &w.subscriptions[0] else {
            panic!("not an image")
        };
        assert_eq!(img.repo_url, "quay.io/a/b");
        assert_eq!(img.image_selection_strategy, "");
        assert!(!img.strict_semvers, "absent strictSemvers is false (§4.3)");
    }

    #[test]
    fn every_image_field_is_read_and_unknown_fields_are_tolerated() {
        let w = Warehouse::from_json(&wh(json!([{"name": "app", "image": {
            "repoURL": "quay.io/a/b", "imageSelectionStrategy": "Lexical", "strictSemvers": true,
            "constraint": "^1.0.0", "allowTags": "x", "allowTagsRegexes": ["^v"],
            "ignoreTags": ["y"], "ignoreTagsRegexes": ["rc"], "platform": "linux/amd64",
            "discoveryLimit": 20, "cacheByTag": true, "futureField": {"a": 1}
        }}])))
        .unwrap();
        assert_eq!(
            w.subscriptions,
            vec![Subscription::Image(ImageSubscription {
                repo_url: "quay.io/a/b".into(),
                image_selection_strategy: "Lexical".into(),
                strict_semvers: true,
                constraint: "^1.0.0".into(),
                allow_tags: "x".into(),
                allow_tags_regexes: vec!["^v".into()],
                ignore_tags: vec!["y".into()],
                ignore_tags_regexes: vec!["rc".into()],
                platform: "linux/amd64".into(),
            })]
        );
    }

    #[test]
    fn chart_git_and_generic_subscriptions_are_recognised_in_order() {
        let w = Warehouse::from_json(&wh(json!([
            {"chart": {"repoURL": "oci://quay.io/a/c", "semverConstraint": "^1"}},
            {"git": {"repoURL": "https://github.com/a/b"}},
            {"artifactory": {"anything": true}, "name": "generic"},
        ])))
        .unwrap();
        assert_eq!(
            w.subscriptions,
            vec![
                Subscription::Chart(ChartSubscription {
                    repo_url: "oci://quay.io/a/c".into(),
                    name: String::new(),
                    semver_constraint: "^1".into(),
                }),
                Subscription::Git {
                    repo_url: "https://github.com/a/b".into()
                },
                Subscription::Generic {
                    kind: "artifactory".into()
                },
            ]
        );
    }

    #[test]
    fn nulls_decode_as_go_zero_values() {
        let w = Warehouse::from_json(&wh(json!([
            {"image": {"repoURL": "quay.io/a/b", "strictSemvers": null, "allowTagsRegexes": null}},
            {"chart": null},
        ])))
        .unwrap();
        assert!(matches!(&w.subscriptions[0], Subscription::Image(i) if !i.strict_semvers));
        assert_eq!(
            w.subscriptions[1],
            Subscription::Chart(ChartSubscription::default())
        );
    }

    #[test]
    fn missing_spec_or_subscriptions_gives_no_subscriptions() {
        let mut obj = wh(json!(null));
        assert!(Warehouse::from_json(&obj).unwrap().subscriptions.is_empty());
        obj.as_object_mut().unwrap().remove("spec");
        assert!(Warehouse::from_json(&obj).unwrap().subscriptions.is_empty());
    }

    #[test]
    fn items_with_zero_or_two_type_keys_are_rejected_like_kargo() {
        for (subs, found) in [
            (json!([{}]), 0),
            (json!([{"name": "only-a-name"}]), 0),
            (json!([{"image": {}, "chart": {}}]), 2),
            (
                json!([{"image": {}, "chart": {}, "git": {}, "name": "x"}]),
                3,
            ),
            (json!(["image"]), 0),
        ] {
            assert_eq!(
                Warehouse::from_json(&wh(subs.clone())),
                Err(WarehouseError::TypeKeys { index: 0, found }),
                "{subs}"
            );
        }
    }

    #[test]
    fn wrong_field_types_are_a_decode_error_naming_the_item() {
        let err = Warehouse::from_json(&wh(json!([
            {"image": {"repoURL": "a/b"}},
            {"image": {"repoURL": "a/b", "strictSemvers": "yes"}}
        ])))
        .unwrap_err();
        assert!(
            matches!(&err, WarehouseError::Decode { index: 1, kind, .. } if kind == "image"),
            "{err:?}"
        );
        assert_eq!(
            Warehouse::from_json(&wh(json!({"image": {}}))),
            Err(WarehouseError::SubscriptionsNotList)
        );
    }

    #[test]
    fn metadata_name_and_namespace_are_required() {
        assert_eq!(
            Warehouse::from_json(&json!({"metadata": {"name": "w"}})),
            Err(WarehouseError::MissingMetadata("namespace"))
        );
        assert_eq!(
            Warehouse::from_json(&json!({"metadata": {"namespace": "p"}})),
            Err(WarehouseError::MissingMetadata("name"))
        );
        assert_eq!(
            Warehouse::from_json(&json!([])),
            Err(WarehouseError::MissingMetadata("namespace"))
        );
    }

    #[test]
    fn refresh_value_is_rfc3339_utc_whole_seconds() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_787_334_701_999);
        assert_eq!(refresh_value(t), "2026-08-21T17:51:41Z");
        assert_eq!(
            refresh_value(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00Z"
        );
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(refresh_value(leap), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn refresh_patch_touches_only_the_annotation() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_787_334_701);
        assert_eq!(
            refresh_patch(t),
            json!({"metadata": {"annotations": {"kargo.akuity.io/refresh": "2026-08-21T17:51:41Z"}}})
        );
    }

    #[test]
    fn warehouse_key_displays_as_namespace_slash_name() {
        assert_eq!(WarehouseKey::new("p", "w").to_string(), "p/w");
    }
}
