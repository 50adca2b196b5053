//! The Kargo `Warehouse` model: what quayhook needs of `spec.subscriptions`, decoded once from
//! the JSON the API server returns (reference §4.3), and the refresh annotation (§6).
//!
//! Pure: no kube types. The boundary is `serde`: the cluster adapter deserializes each page of
//! a Warehouse list straight into [`ListedWarehouse`]s, and a [`Warehouse`] deserializes from
//! one object with the same rules.
//!
//! Decoding reads only what selection needs and skips the rest unread (with
//! [`serde::de::IgnoredAny`]): `metadata.name` and `metadata.namespace`, and `spec.subscriptions`;
//! `status`, `metadata.managedFields` and every other field are never materialized, whatever
//! their shape. A Warehouse's status (discovered artifacts) can be far larger than its
//! subscriptions, and a cluster-wide list holds thousands of them at once.
//!
//! `spec.subscriptions` has no schema in the CRD and no defaults, so every item is read the way
//! Kargo's `RepoSubscription.UnmarshalJSON` reads it: exactly one type key (`image`, `chart`,
//! `git`, or any other key, which makes a generic subscription) plus an optional `name`. The
//! body of an `image`, `chart` or `git` key is buffered as a small `serde_json::Value` and then
//! decoded, so a type mismatch inside it is a [`WarehouseError`] rather than a failure of the
//! stream. A Warehouse that does not decode becomes [`ListedWarehouse::Unreadable`], never a
//! failure of the whole list: one malformed Warehouse must not take the others down. This is
//! what kube's `DeserializeGuard` does for a typed list, without its buffering of the whole
//! object. Only JSON that is not syntactically valid fails the list.

use std::fmt;
use std::time::SystemTime;

use jiff::Timestamp;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, EnumAccess, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
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
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
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
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
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

/// One item of a Warehouse list: the decoded [`Warehouse`], or why the object is unreadable.
///
/// Its `Deserialize` never fails because of what one object contains, only when the input is
/// not syntactically valid JSON, so a list page decodes as `Vec<ListedWarehouse>` whatever its
/// items hold. Only `metadata.name`, `metadata.namespace` and `spec.subscriptions` are read;
/// everything else is skipped without being materialized (see the module docs).
///
/// ```
/// use kargo_match::warehouse::{ListedWarehouse, WarehouseError};
///
/// let page = r#"[
///   {"metadata": {"namespace": "p", "name": "ok", "managedFields": [{"manager": "kubectl"}]},
///    "spec": {"subscriptions": [{"image": {"repoURL": "quay.io/a/b"}}]},
///    "status": {"discoveredArtifacts": {"images": []}}},
///   {"metadata": {"namespace": "p", "name": "bad"}, "spec": {"subscriptions": {"image": {}}}}
/// ]"#;
/// let items: Vec<ListedWarehouse> = serde_json::from_str(page)?;
/// assert!(matches!(&items[0], ListedWarehouse::Readable(w) if w.key.to_string() == "p/ok"));
/// assert_eq!(
///     items[1],
///     ListedWarehouse::Unreadable {
///         namespace: Some("p".into()),
///         name: Some("bad".into()),
///         error: WarehouseError::SubscriptionsNotList,
///     }
/// );
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListedWarehouse {
    /// The object decoded.
    Readable(Warehouse),
    /// The object is not a Warehouse quayhook (or Kargo) can read; it is reported and skipped.
    Unreadable {
        /// `metadata.namespace`, when it is a string.
        namespace: Option<String>,
        /// `metadata.name`, when it is a string.
        name: Option<String>,
        /// Why the object could not be read.
        error: WarehouseError,
    },
}

impl ListedWarehouse {
    /// The Warehouse, or the reason it could not be read (dropping the names the object had).
    ///
    /// # Errors
    /// The [`WarehouseError`] of a [`ListedWarehouse::Unreadable`] item.
    pub fn into_result(self) -> Result<Warehouse, WarehouseError> {
        match self {
            ListedWarehouse::Readable(warehouse) => Ok(warehouse),
            ListedWarehouse::Unreadable { error, .. } => Err(error),
        }
    }
}

impl<'de> Deserialize<'de> for ListedWarehouse {
    /// Decodes one listed object with Kargo's rules; see [`ListedWarehouse`].
    ///
    /// # Errors
    /// Only the deserializer's own errors (for JSON text: a syntax error), never the shape of
    /// the object.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Fields {
            namespace,
            name,
            subscriptions,
        } = Lenient(ObjectShape).deserialize(deserializer)?;
        Ok(match (namespace, name) {
            (Some(namespace), Some(name)) => match subscriptions.into_result() {
                Ok(subscriptions) => ListedWarehouse::Readable(Warehouse {
                    key: WarehouseKey { namespace, name },
                    subscriptions,
                }),
                Err(error) => ListedWarehouse::Unreadable {
                    namespace: Some(namespace),
                    name: Some(name),
                    error,
                },
            },
            (namespace, name) => ListedWarehouse::Unreadable {
                error: WarehouseError::MissingMetadata(if namespace.is_none() {
                    "namespace"
                } else {
                    "name"
                }),
                namespace,
                name,
            },
        })
    }
}

impl<'de> Deserialize<'de> for Warehouse {
    /// Decodes one Warehouse object with Kargo's rules; unknown fields anywhere are ignored,
    /// and a missing `spec` or `spec.subscriptions` gives a Warehouse with no subscriptions.
    ///
    /// # Errors
    /// A custom error carrying the [`WarehouseError`]'s text when the object is unreadable;
    /// deserialize [`ListedWarehouse`] instead to get the typed error.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        ListedWarehouse::deserialize(deserializer)?
            .into_result()
            .map_err(de::Error::custom)
    }
}

// What follows reads a Warehouse object leniently: every part is a `Shape` that turns whatever
// JSON it meets into a value (a wrong shape is data, reported as a `WarehouseError` later), and
// anything not needed is skipped with `IgnoredAny`. A deserializer error could not be recovered
// from mid-stream and would fail the whole page, so none is ever raised here.

/// How one part of a Warehouse object is read from any JSON value.
trait Shape<'de>: Sized {
    /// What this part reads into.
    type Value;
    /// What serde calls the part in a syntax error.
    const EXPECTING: &'static str;
    /// The value for a shape this part does not expect (numbers, booleans, …).
    fn other(self) -> Self::Value;
    /// The value for `null`.
    fn null(self) -> Self::Value {
        self.other()
    }
    /// The value for a string.
    fn text(self, _text: &str) -> Self::Value {
        self.other()
    }
    /// Reads an object; by default skips it.
    fn map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_map(map)?;
        Ok(self.other())
    }
    /// Reads an array; by default skips it.
    fn seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_seq(seq)?;
        Ok(self.other())
    }
}

/// Reads a [`Shape`] from any JSON value: the seed and the visitor in one.
struct Lenient<S>(S);

impl<'de, S: Shape<'de>> DeserializeSeed<'de> for Lenient<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, S: Shape<'de>> Visitor<'de> for Lenient<S> {
    type Value = S::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(S::EXPECTING)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<S::Value, E> {
        Ok(self.0.other())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<S::Value, E> {
        Ok(self.0.other())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<S::Value, E> {
        Ok(self.0.other())
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<S::Value, E> {
        Ok(self.0.other())
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<S::Value, E> {
        Ok(self.0.other())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<S::Value, E> {
        Ok(self.0.other())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<S::Value, E> {
        Ok(self.0.text(v))
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<S::Value, E> {
        Ok(self.0.other())
    }
    fn visit_none<E: de::Error>(self) -> Result<S::Value, E> {
        Ok(self.0.null())
    }
    fn visit_unit<E: de::Error>(self) -> Result<S::Value, E> {
        Ok(self.0.null())
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<S::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<S::Value, A::Error> {
        self.0.map(map)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<S::Value, A::Error> {
        self.0.seq(seq)
    }
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<S::Value, A::Error> {
        IgnoredAny.visit_enum(data)?;
        Ok(self.0.other())
    }
}

/// An object key: its position among the wanted names, `None` for any other key.
struct Field(&'static [&'static str]);

impl Shape<'_> for Field {
    type Value = Option<usize>;
    const EXPECTING: &'static str = "a field name";
    fn other(self) -> Option<usize> {
        None
    }
    fn text(self, text: &str) -> Option<usize> {
        self.0.iter().position(|wanted| *wanted == text)
    }
}

/// A string field: `Some` only when the value is a string.
struct Text;

impl Shape<'_> for Text {
    type Value = Option<String>;
    const EXPECTING: &'static str = "a string";
    fn other(self) -> Option<String> {
        None
    }
    fn text(self, text: &str) -> Option<String> {
        Some(text.to_owned())
    }
}

/// What is read of one Warehouse object.
#[derive(Default)]
struct Fields {
    namespace: Option<String>,
    name: Option<String>,
    subscriptions: Subscriptions,
}

/// `spec.subscriptions` as found.
#[derive(Default)]
enum Subscriptions {
    /// Missing or `null` (or no `spec` object): no subscriptions.
    #[default]
    Absent,
    /// Present but not a list.
    NotList,
    /// A list: its items, or the first item's error.
    Items(Result<Vec<Subscription>, WarehouseError>),
}

impl Subscriptions {
    fn into_result(self) -> Result<Vec<Subscription>, WarehouseError> {
        match self {
            Subscriptions::Absent => Ok(Vec::new()),
            Subscriptions::NotList => Err(WarehouseError::SubscriptionsNotList),
            Subscriptions::Items(items) => items,
        }
    }
}

/// The whole object: `metadata` and `spec` are read, every other field is skipped.
struct ObjectShape;

impl<'de> Shape<'de> for ObjectShape {
    type Value = Fields;
    const EXPECTING: &'static str = "a Warehouse object";
    fn other(self) -> Fields {
        Fields::default()
    }
    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let mut fields = Fields::default();
        while let Some(key) = map.next_key_seed(Lenient(Field(&["metadata", "spec"])))? {
            match key {
                Some(0) => {
                    (fields.namespace, fields.name) = map.next_value_seed(Lenient(MetaShape))?;
                }
                Some(_) => fields.subscriptions = map.next_value_seed(Lenient(SpecShape))?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(fields)
    }
}

/// `metadata`: `namespace` and `name`; `managedFields`, labels and the rest are skipped.
struct MetaShape;

impl<'de> Shape<'de> for MetaShape {
    type Value = (Option<String>, Option<String>);
    const EXPECTING: &'static str = "object metadata";
    fn other(self) -> Self::Value {
        (None, None)
    }
    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut namespace, mut name) = (None, None);
        while let Some(key) = map.next_key_seed(Lenient(Field(&["namespace", "name"])))? {
            match key {
                Some(0) => namespace = map.next_value_seed(Lenient(Text))?,
                Some(_) => name = map.next_value_seed(Lenient(Text))?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok((namespace, name))
    }
}

/// `spec`: only `subscriptions`; a `spec` that is not an object has none.
struct SpecShape;

impl<'de> Shape<'de> for SpecShape {
    type Value = Subscriptions;
    const EXPECTING: &'static str = "a Warehouse spec";
    fn other(self) -> Subscriptions {
        Subscriptions::Absent
    }
    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<Subscriptions, A::Error> {
        let mut subscriptions = Subscriptions::Absent;
        while let Some(key) = map.next_key_seed(Lenient(Field(&["subscriptions"])))? {
            match key {
                Some(_) => subscriptions = map.next_value_seed(Lenient(SubscriptionsShape))?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(subscriptions)
    }
}

/// `spec.subscriptions`: a list, read item by item; after the first bad item the rest is skipped.
struct SubscriptionsShape;

impl<'de> Shape<'de> for SubscriptionsShape {
    type Value = Subscriptions;
    const EXPECTING: &'static str = "a list of subscriptions";
    fn other(self) -> Subscriptions {
        Subscriptions::NotList
    }
    fn null(self) -> Subscriptions {
        Subscriptions::Absent
    }
    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Subscriptions, A::Error> {
        let mut items = Vec::new();
        loop {
            let index = items.len();
            match seq.next_element_seed(Lenient(ItemShape { index }))? {
                Some(Ok(item)) => items.push(item),
                Some(Err(error)) => {
                    IgnoredAny.visit_seq(seq)?;
                    return Ok(Subscriptions::Items(Err(error)));
                }
                None => return Ok(Subscriptions::Items(Ok(items))),
            }
        }
    }
}

/// Item `index` of `spec.subscriptions` (Kargo `RepoSubscription.UnmarshalJSON`).
struct ItemShape {
    index: usize,
}

impl<'de> Shape<'de> for ItemShape {
    type Value = Result<Subscription, WarehouseError>;
    const EXPECTING: &'static str = "a subscription";
    fn other(self) -> Self::Value {
        Err(WarehouseError::TypeKeys {
            index: self.index,
            found: 0,
        })
    }
    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        // Distinct type keys in order; a repeated key counts once and its last body wins, as
        // when the item is first decoded into a JSON object (Go's map, serde_json's `Value`).
        let mut kinds: Vec<String> = Vec::new();
        let mut body = Value::Null;
        while let Some(key) = map.next_key::<String>()? {
            if key == "name" {
                map.next_value::<IgnoredAny>()?;
            } else if kinds.first().is_none_or(|first| *first == key) {
                // Only typed bodies are kept; a generic subscription's body is never read.
                body = if matches!(key.as_str(), "image" | "chart" | "git") {
                    map.next_value::<Value>()?
                } else {
                    map.next_value::<IgnoredAny>()?;
                    Value::Null
                };
                if kinds.is_empty() {
                    kinds.push(key);
                }
            } else {
                map.next_value::<IgnoredAny>()?;
                if !kinds.contains(&key) {
                    kinds.push(key);
                }
            }
        }
        let index = self.index;
        Ok(match <[String; 1]>::try_from(kinds) {
            Ok([kind]) => Subscription::decode(index, kind, body),
            Err(kinds) => Err(WarehouseError::TypeKeys {
                index,
                found: kinds.len(),
            }),
        })
    }
}

impl Subscription {
    /// Decodes the body of item `index`, whose one type key is `kind`.
    fn decode(index: usize, kind: String, body: Value) -> Result<Subscription, WarehouseError> {
        fn body_of<T: DeserializeOwned + Default>(body: Value) -> Result<T, serde_json::Error> {
            // `null` decodes as all defaults, like Go's `json.Unmarshal`.
            match body {
                Value::Null => Ok(T::default()),
                other => T::deserialize(other),
            }
        }
        let decode_err = |kind: &str, e: serde_json::Error| WarehouseError::Decode {
            index,
            kind: kind.to_owned(),
            reason: e.to_string(),
        };
        Ok(match kind.as_str() {
            "image" => Subscription::Image(body_of(body).map_err(|e| decode_err("image", e))?),
            "chart" => Subscription::Chart(body_of(body).map_err(|e| decode_err("chart", e))?),
            "git" => Subscription::Git {
                repo_url: body_of::<GitFields>(body)
                    .map_err(|e| decode_err("git", e))?
                    .repo_url,
            },
            _ => Subscription::Generic { kind },
        })
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

/// The refresh annotation's value: RFC 3339 in UTC with nanoseconds, e.g.
/// `2026-08-21T17:51:41.123456789Z`.
///
/// Kargo's controller re-runs discovery only when the value changes, and Kargo documents it
/// as a token, "unique or at least unlikely to repeat". Kargo's own receiver writes whole
/// seconds (`time.Now().Format(time.RFC3339)`), so a second push within the same second
/// writes the same value and is not discovered until the next poll. quayhook writes the
/// nanoseconds (always nine digits, so values sort as times), which is still RFC 3339 and a
/// new value for every refresh, including a retried one. A time outside years -9999..=9999
/// (no real clock) is clamped to that range rather than failing.
pub fn refresh_value(now: SystemTime) -> String {
    let ts = Timestamp::try_from(now).unwrap_or(if now < SystemTime::UNIX_EPOCH {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    });
    ts.strftime("%Y-%m-%dT%H:%M:%S.%NZ").to_string()
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

    /// Decodes one object both from JSON text (the streaming path the cluster adapter takes)
    /// and from a `Value` (fixtures), checking that the two agree.
    fn listed(obj: &Value) -> ListedWarehouse {
        let from_text: ListedWarehouse =
            serde_json::from_str(&obj.to_string()).expect("valid JSON always decodes");
        let from_value: ListedWarehouse =
            serde_json::from_value(obj.clone()).expect("a Value always decodes");
        assert_eq!(from_text, from_value, "{obj}");
        from_text
    }

    fn decode(obj: &Value) -> Result<Warehouse, WarehouseError> {
        listed(obj).into_result()
    }

    #[test]
    fn image_subscription_with_absent_fields_takes_kargo_runtime_defaults() {
        let w = decode(&wh(json!([{"image": {"repoURL": "quay.io/a/b"}}]))).unwrap();
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
        let w = decode(&wh(json!([{"name": "app", "image": {
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
        let w = decode(&wh(json!([
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
        let w = decode(&wh(json!([
            {"image": {"repoURL": "quay.io/a/b", "strictSemvers": null, "allowTagsRegexes": null}},
            {"chart": null},
            {"git": null},
        ])))
        .unwrap();
        assert!(matches!(&w.subscriptions[0], Subscription::Image(i) if !i.strict_semvers));
        assert_eq!(
            w.subscriptions[1],
            Subscription::Chart(ChartSubscription::default())
        );
        assert_eq!(
            w.subscriptions[2],
            Subscription::Git {
                repo_url: String::new()
            }
        );
    }

    #[test]
    fn missing_spec_or_subscriptions_gives_no_subscriptions() {
        let mut obj = wh(json!(null));
        assert!(decode(&obj).unwrap().subscriptions.is_empty());
        obj["spec"] = json!({"interval": "5m0s"});
        assert!(decode(&obj).unwrap().subscriptions.is_empty());
        obj["spec"] = json!("not an object");
        assert!(decode(&obj).unwrap().subscriptions.is_empty());
        obj.as_object_mut().unwrap().remove("spec");
        assert!(decode(&obj).unwrap().subscriptions.is_empty());
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
            (json!([{"artifactory": {}, "image": {"repoURL": 1}}]), 2),
            (json!(["image"]), 0),
            (json!([null]), 0),
            (json!([[{"image": {}}]]), 0),
        ] {
            assert_eq!(
                decode(&wh(subs.clone())),
                Err(WarehouseError::TypeKeys { index: 0, found }),
                "{subs}"
            );
        }
    }

    #[test]
    fn a_repeated_type_key_counts_once_and_its_last_body_wins() {
        let text = r#"{"metadata": {"namespace": "p", "name": "w"}, "spec": {"subscriptions": [
            {"image": {"repoURL": "quay.io/a/old"}, "name": "n", "image": {"repoURL": "quay.io/a/new"}}
        ]}}"#;
        let w = serde_json::from_str::<Warehouse>(text).unwrap();
        assert!(
            matches!(&w.subscriptions[..], [Subscription::Image(i)] if i.repo_url == "quay.io/a/new")
        );
    }

    #[test]
    fn wrong_field_types_are_a_decode_error_naming_the_item() {
        let err = decode(&wh(json!([
            {"image": {"repoURL": "a/b"}},
            {"image": {"repoURL": "a/b", "strictSemvers": "yes"}},
            {"chart": {}, "git": {}}
        ])))
        .unwrap_err();
        assert!(
            matches!(&err, WarehouseError::Decode { index: 1, kind, .. } if kind == "image"),
            "the first bad item is reported: {err:?}"
        );
        assert!(matches!(
            decode(&wh(json!([{"git": {"repoURL": 7}}]))),
            Err(WarehouseError::Decode { index: 0, ref kind, .. }) if kind == "git"
        ));
        for not_a_list in [json!({"image": {}}), json!("image"), json!(3), json!(true)] {
            assert_eq!(
                decode(&wh(not_a_list)),
                Err(WarehouseError::SubscriptionsNotList)
            );
        }
    }

    #[test]
    fn metadata_name_and_namespace_are_required() {
        for (obj, missing) in [
            (json!({"metadata": {"name": "w"}}), "namespace"),
            (json!({"metadata": {"namespace": "p"}}), "name"),
            (json!({"metadata": {"namespace": "p", "name": 7}}), "name"),
            (json!({"metadata": null}), "namespace"),
            (json!({"metadata": ["p", "w"]}), "namespace"),
            (json!({}), "namespace"),
            (json!([]), "namespace"),
            (json!(1), "namespace"),
            (json!(null), "namespace"),
        ] {
            assert_eq!(
                decode(&obj),
                Err(WarehouseError::MissingMetadata(missing)),
                "{obj}"
            );
        }
    }

    #[test]
    fn an_unreadable_warehouse_keeps_the_names_it_had() {
        assert_eq!(
            listed(&json!({"metadata": {"name": "w"}, "spec": {"subscriptions": 1}})),
            ListedWarehouse::Unreadable {
                namespace: None,
                name: Some("w".into()),
                error: WarehouseError::MissingMetadata("namespace"),
            }
        );
        assert_eq!(
            listed(&wh(json!([{}]))),
            ListedWarehouse::Unreadable {
                namespace: Some("kargo-demo".into()),
                name: Some("w".into()),
                error: WarehouseError::TypeKeys { index: 0, found: 0 },
            }
        );
    }

    #[test]
    fn status_managed_fields_and_other_fields_are_skipped_whatever_their_shape() {
        // Each of these would fail a typed decode of the field; none is read.
        for (field, junk) in [
            ("status", json!([1, {"x": null}, "y"])),
            ("status", json!("broken")),
            ("apiVersion", json!({"v": 1})),
            ("kind", json!(null)),
        ] {
            let mut obj = wh(json!([{"image": {"repoURL": "quay.io/a/b"}}]));
            obj[field] = junk;
            assert!(decode(&obj).is_ok(), "{field}");
        }
        for (field, junk) in [
            ("managedFields", json!("not a list")),
            ("managedFields", json!([{"fieldsV1": 3}, 4])),
            ("labels", json!(5)),
            ("annotations", json!([["a"]])),
            ("resourceVersion", json!({"deep": {"deeper": [1e300]}})),
        ] {
            let mut obj = wh(json!([{"image": {"repoURL": "quay.io/a/b"}}]));
            obj["metadata"][field] = junk;
            assert!(decode(&obj).is_ok(), "metadata.{field}");
        }
        let mut obj = wh(json!([{"image": {"repoURL": "quay.io/a/b"}}]));
        obj["spec"]["interval"] = json!([]);
        obj["spec"]["freightCreationCriteria"] = json!(0);
        assert!(decode(&obj).is_ok(), "other spec fields");
    }

    #[test]
    fn a_bad_warehouse_in_a_list_is_unreadable_and_its_neighbours_decode() {
        let page = json!([
            wh(json!([{"image": {"repoURL": "quay.io/a/b"}}])),
            {"metadata": {"namespace": "p", "name": "bad"},
             "spec": {"subscriptions": [{"image": {"strictSemvers": []}}]},
             "status": {"huge": [[[]]]}},
            7,
            {"metadata": {"namespace": "p", "name": "ok"}, "spec": {"subscriptions": []}},
        ])
        .to_string();
        let items: Vec<ListedWarehouse> = serde_json::from_str(&page).unwrap();
        assert_eq!(items.len(), 4);
        assert!(matches!(&items[0], ListedWarehouse::Readable(w) if w.key.name == "w"));
        assert!(matches!(
            &items[1],
            ListedWarehouse::Unreadable { name: Some(n), error: WarehouseError::Decode { index: 0, .. }, .. }
                if n == "bad"
        ));
        assert_eq!(
            items[2],
            ListedWarehouse::Unreadable {
                namespace: None,
                name: None,
                error: WarehouseError::MissingMetadata("namespace"),
            }
        );
        assert!(matches!(&items[3], ListedWarehouse::Readable(w) if w.key.name == "ok"));
    }

    #[test]
    fn only_broken_json_fails_a_list() {
        for text in [
            r#"[{"metadata": {"namespace": "p", "name": "w"}}"#,
            r#"[{"metadata": {"namespace": "p", "name": "w"}, "status": {]}]"#,
            r#"[{"metadata": {"namespace": "p", "name": "w"}, "spec": {"subscriptions": [{"image": }]}}]"#,
        ] {
            assert!(
                serde_json::from_str::<Vec<ListedWarehouse>>(text).is_err(),
                "{text}"
            );
        }
    }

    #[test]
    fn a_warehouse_deserializes_strictly_with_the_same_rules() {
        let ok: Warehouse =
            serde_json::from_value(wh(json!([{"image": {"repoURL": "quay.io/a/b"}}]))).unwrap();
        assert_eq!(ok.key, WarehouseKey::new("kargo-demo", "w"));
        let err = serde_json::from_value::<Warehouse>(wh(json!({}))).unwrap_err();
        assert_eq!(err.to_string(), "spec.subscriptions is not a list");
    }

    #[test]
    fn refresh_value_is_rfc3339_utc_with_nanoseconds() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_787_334_701_999);
        assert_eq!(refresh_value(t), "2026-08-21T17:51:41.999000000Z");
        assert_eq!(
            refresh_value(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000000000Z"
        );
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(refresh_value(leap), "2000-02-29T00:00:00.000000000Z");
        let before = SystemTime::UNIX_EPOCH - Duration::from_millis(500);
        assert_eq!(refresh_value(before), "1969-12-31T23:59:59.500000000Z");
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 40);
        assert!(
            refresh_value(far).starts_with("9999-12-"),
            "clamped to the latest instant jiff holds"
        );
        for value in [refresh_value(t), refresh_value(leap)] {
            assert!(
                value.parse::<jiff::Timestamp>().is_ok(),
                "{value} parses as RFC 3339"
            );
        }
    }

    /// Deliberate difference from Kargo (whole seconds): two refreshes within one second write
    /// two values, so Kargo's controller runs discovery for both.
    #[test]
    fn difference_two_refreshes_within_one_second_write_different_values() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_787_334_701);
        let a = refresh_value(t + Duration::from_millis(100));
        let b = refresh_value(t + Duration::from_millis(101));
        let c = refresh_value(t + Duration::from_nanos(100_000_001));
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert!(a < b, "values sort as times");
    }

    #[test]
    fn refresh_patch_touches_only_the_annotation() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_787_334_701);
        assert_eq!(
            refresh_patch(t),
            json!({"metadata": {"annotations": {"kargo.akuity.io/refresh": "2026-08-21T17:51:41.000000000Z"}}})
        );
    }

    #[test]
    fn warehouse_key_displays_as_namespace_slash_name() {
        assert_eq!(WarehouseKey::new("p", "w").to_string(), "p/w");
    }
}
