//! Receiver tokens: the hard-to-guess last segment of a receiver's URL (`kargo-quay-receiver.md`
//! §1.1), and their verification.
//!
//! This module owns the hash (`hex(sha256(project + receiver + secret))`), the path and URL
//! Kargo's `buildWebhookPath`/`getDetails` print for a receiver, [`TokenSet`] (constant-time
//! lookup of a presented token among every accepted secret) and [`SecretString`], the redacting
//! wrapper secrets travel in. It is pure: no I/O, no clock, no environment.

use std::fmt;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

/// A string that never prints itself, for receiver secrets.
///
/// `Debug` shows `[redacted]`; there is no `Display`. Read the value with [`expose`]
/// (`SecretString::expose`) only where it is hashed. Deserializes from a plain JSON string.
///
/// [`expose`]: SecretString::expose
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret value, byte for byte (no trimming: a trailing newline is part of it).
    pub fn new(s: impl Into<String>) -> Self {
        SecretString(s.into())
    }

    /// Returns the secret value. Keep the result out of logs and errors.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for SecretString {
    fn from(s: String) -> Self {
        SecretString(s)
    }
}

fn digest(project: &str, receiver: &str, secret: &SecretString) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(project.as_bytes());
    hasher.update(receiver.as_bytes());
    hasher.update(secret.expose().as_bytes());
    hasher.finalize().into()
}

/// The token of a receiver: `hex(sha256(project + receiver + secret))`, 64 lower-case hex
/// characters.
///
/// The three strings are concatenated without separators, as Kargo does; `project` is `""` for
/// a cluster-level (ClusterConfig) receiver.
///
/// ```
/// use kargo_match::token::{receiver_token, SecretString};
/// let token = receiver_token("kargo-demo", "q-wh-receiver", &SecretString::new("mysecret"));
/// assert_eq!(token, "3e6315f59f25bc201ec77ebb7818c057c4406a4b58d930f27d651b6af36395a9");
/// ```
pub fn receiver_token(project: &str, receiver: &str, secret: &SecretString) -> String {
    hex::encode(digest(project, receiver, secret))
}

/// The request path of a Quay receiver: `base_path`, `quay` and `token` joined and cleaned.
///
/// Kargo's `buildWebhookPath` with `url.JoinPath`: an empty base becomes `/`; the elements are
/// joined with `/` and cleaned as Go's `path.Join` does (doubled `/` collapsed, `.` dropped,
/// `..` resolved, no trailing `/`). A base that does not start with `/` gives a relative result
/// (Go resolves it under a temporary `/` and removes that again).
///
/// The base is treated as path text: Go also re-parses it as a URL and re-escapes it, which only
/// matters for bases holding `%`, `?`, `#` or characters Go escapes; Kargo's own paths for such
/// bases can never equal a decoded request path, so they are left out.
///
/// ```
/// use kargo_match::token::receiver_path;
/// assert_eq!(receiver_path("", "ab12"), "/quay/ab12");
/// assert_eq!(receiver_path("/a//b/", "ab12"), "/a/b/quay/ab12");
/// ```
pub fn receiver_path(base_path: &str, token: &str) -> String {
    webhook_path(base_path, "quay", token)
}

/// `buildWebhookPath` for any receiver type (Kargo's examples in §1.1 use `github`).
pub(crate) fn webhook_path(base_path: &str, receiver_type: &str, token: &str) -> String {
    let base = if base_path.is_empty() { "/" } else { base_path };
    let mut joined = if base.starts_with('/') {
        path_join(&[base, receiver_type, token])
    } else {
        let rooted = format!("/{base}");
        let joined = path_join(&[&rooted, receiver_type, token]);
        joined.strip_prefix('/').unwrap_or(&joined).to_owned()
    };
    // url.JoinPath keeps one trailing slash when the last element has one.
    if token.ends_with('/') && !joined.ends_with('/') {
        joined.push('/');
    }
    joined
}

/// Go's `path.Join`: non-empty elements joined by `/`, then [`crate::path::clean`]; `""` if all are empty.
fn path_join(elems: &[&str]) -> String {
    let parts: Vec<&str> = elems.iter().copied().filter(|e| !e.is_empty()).collect();
    if parts.is_empty() {
        return String::new();
    }
    crate::path::clean(&parts.join("/"))
}

/// Why a base URL cannot carry receiver URLs.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum BaseUrlError {
    /// Returned when the base URL does not start with `scheme:` (`[A-Za-z][A-Za-z0-9+.-]*`).
    #[error("base url {url:?} has no scheme")]
    MissingScheme {
        /// The base URL as given.
        url: String,
    },
    /// Returned when the scheme is not followed by `//` and a non-empty host.
    #[error("base url {url:?} has no host")]
    MissingHost {
        /// The base URL as given.
        url: String,
    },
    /// Returned when the base URL holds an ASCII control character, or whitespace before its
    /// path.
    #[error("base url {url:?} contains a control or whitespace character")]
    InvalidCharacter {
        /// The base URL as given.
        url: String,
    },
    /// Returned when the host is followed by a port that is not all digits.
    #[error("base url {url:?} has an invalid port")]
    InvalidPort {
        /// The base URL as given.
        url: String,
    },
}

/// The full URL of a Quay receiver, as Kargo's `getDetails` prints it.
///
/// Parses `base_url` as `scheme://authority/path?query#fragment`, replaces the path with
/// [`receiver_path`]`(path, token)` and prints it again: the scheme lower-cased, authority,
/// query (kept with its `?` when present) and non-empty fragment as written.
///
/// # Errors
/// Unlike Go, which would print a relative "URL" for `webhooks.example.com`, a base URL must be
/// absolute: [`BaseUrlError::MissingScheme`], [`BaseUrlError::MissingHost`],
/// [`BaseUrlError::InvalidCharacter`] or [`BaseUrlError::InvalidPort`] otherwise.
///
/// ```
/// use kargo_match::token::receiver_url;
/// assert_eq!(
///     receiver_url("https://hooks.example.com/kargo/", "ab12").unwrap(),
///     "https://hooks.example.com/kargo/quay/ab12"
/// );
/// assert!(receiver_url("hooks.example.com", "ab12").is_err());
/// ```
pub fn receiver_url(base_url: &str, token: &str) -> Result<String, BaseUrlError> {
    let url = || base_url.to_owned();
    if base_url.bytes().any(|b| b < b' ' || b == 0x7f) {
        return Err(BaseUrlError::InvalidCharacter { url: url() });
    }
    let (before_fragment, fragment) = match base_url.split_once('#') {
        Some((before, fragment)) => (before, fragment),
        None => (base_url, ""),
    };
    let (before_query, query) = match before_fragment.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (before_fragment, None),
    };
    let Some((scheme, rest)) = before_query.split_once(':') else {
        return Err(BaseUrlError::MissingScheme { url: url() });
    };
    let mut scheme_chars = scheme.chars();
    let scheme_ok = scheme_chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme_chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return Err(BaseUrlError::MissingScheme { url: url() });
    }
    let Some(after_slashes) = rest.strip_prefix("//") else {
        return Err(BaseUrlError::MissingHost { url: url() });
    };
    let (authority, path) = match after_slashes.find('/') {
        Some(i) => after_slashes.split_at(i),
        None => (after_slashes, ""),
    };
    if authority.chars().any(char::is_whitespace) {
        return Err(BaseUrlError::InvalidCharacter { url: url() });
    }
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let (host, port) = split_port(host_port);
    if host.is_empty() {
        return Err(BaseUrlError::MissingHost { url: url() });
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BaseUrlError::InvalidPort { url: url() });
    }
    let mut out = format!(
        "{}://{authority}{}",
        scheme.to_ascii_lowercase(),
        receiver_path(path, token)
    );
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    if !fragment.is_empty() {
        out.push('#');
        out.push_str(fragment);
    }
    Ok(out)
}

/// Splits `host[:port]`, where an IPv6 host is bracketed.
fn split_port(host_port: &str) -> (&str, &str) {
    let port_start = match host_port.rfind(']') {
        Some(close) => host_port[close..].find(':').map(|i| close + i),
        None => host_port.find(':'),
    };
    match port_start {
        Some(i) => (&host_port[..i], &host_port[i + 1..]),
        None => (host_port, ""),
    }
}

/// Length of a generated receiver secret, as Kargo's documented recipe produces
/// (`openssl rand -base64 48 | tr -d '=+/' | head -c 32`).
pub const GENERATED_SECRET_LEN: usize = 32;

/// Turns random bytes into a receiver secret the way Kargo's documentation recipe does:
/// standard base64 with `=`, `+` and `/` removed, cut to [`GENERATED_SECRET_LEN`] characters.
///
/// Returns `None` when `random` is too short to give that many characters (48 bytes always
/// suffice unless the encoding is almost all `+` and `/`, which a caller retries).
pub fn secret_from_random(random: &[u8]) -> Option<SecretString> {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(random);
    let out: String = encoded
        .chars()
        .filter(|c| !matches!(c, '=' | '+' | '/'))
        .take(GENERATED_SECRET_LEN)
        .collect();
    (out.len() == GENERATED_SECRET_LEN).then(|| SecretString::new(out))
}

/// One (project, receiver) identity a token may belong to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReceiverId {
    /// The project (namespace) of a ProjectConfig receiver; `""` for a ClusterConfig receiver.
    pub project: String,
    /// The receiver's name, `spec.webhookReceivers[].name`.
    pub receiver: String,
}

/// The receiver a presented token belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Match {
    /// The identity whose digest matched.
    pub id: ReceiverId,
    /// Whether the matching secret is a previous (rotated-out) one still in its grace period.
    pub previous: bool,
}

struct Entry {
    id: ReceiverId,
    previous: bool,
    digest: [u8; 32],
}

/// Precomputed digests of every accepted secret (current and previous), verified in constant time.
///
/// Only the 32-byte digests are kept, never the secrets or a presented token. `Debug` prints
/// the number of entries and nothing else.
#[derive(Default)]
pub struct TokenSet {
    entries: Vec<Entry>,
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSet")
            .field("len", &self.entries.len())
            .finish_non_exhaustive()
    }
}

/// Decodes exactly 64 lower-case hex characters (Kargo compares paths as strings, so upper-case
/// hex is a different path).
fn decode_token(presented: &str) -> Option<[u8; 32]> {
    let bytes = presented.as_bytes();
    if bytes.len() != 64 || !bytes.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(bytes, &mut out).ok()?;
    Some(out)
}

impl TokenSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a receiver's accepted secret; `previous` marks a rotation grace secret.
    ///
    /// The digest is computed here, so the secret is not retained. When two identities hash to
    /// the same token (the same concatenation `project + receiver + secret`), the one inserted
    /// first wins in [`verify`](TokenSet::verify).
    pub fn insert(&mut self, id: ReceiverId, secret: &SecretString, previous: bool) {
        let digest = digest(&id.project, &id.receiver, secret);
        self.entries.push(Entry {
            id,
            previous,
            digest,
        });
    }

    /// The number of accepted (identity, secret) pairs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no secret has been added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Returns the matching receiver and whether the previous (rotated-out) secret matched.
    ///
    /// The presented token is compared against **every** stored digest with
    /// `subtle::ConstantTimeEq`, without an early exit, and the first match is selected in
    /// constant time. A token that is not exactly 64 lower-case hex characters matches nothing
    /// but still walks the whole set.
    ///
    /// ```
    /// use kargo_match::token::{receiver_token, ReceiverId, SecretString, TokenSet};
    /// let id = ReceiverId { project: "demo".into(), receiver: "quay".into() };
    /// let secret = SecretString::new("s3cret");
    /// let mut set = TokenSet::new();
    /// set.insert(id.clone(), &secret, false);
    /// let hit = set.verify(&receiver_token("demo", "quay", &secret)).unwrap();
    /// assert_eq!((hit.id, hit.previous), (id, false));
    /// assert!(set.verify("not-a-token").is_none());
    /// ```
    pub fn verify(&self, presented: &str) -> Option<Match> {
        let decoded = decode_token(presented);
        let valid = Choice::from(u8::from(decoded.is_some()));
        let candidate = decoded.unwrap_or([0u8; 32]);
        let mut found = Choice::from(0);
        let mut index = 0u64;
        for (i, entry) in self.entries.iter().enumerate() {
            let equal = entry.digest[..].ct_eq(&candidate[..]) & valid;
            index.conditional_assign(&(i as u64), equal & !found);
            found |= equal;
        }
        if !bool::from(found) {
            return None;
        }
        let entry = usize::try_from(index)
            .ok()
            .and_then(|i| self.entries.get(i))?;
        Some(Match {
            id: entry.id.clone(),
            previous: entry.previous,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(project: &str, receiver: &str) -> ReceiverId {
        ReceiverId {
            project: project.to_owned(),
            receiver: receiver.to_owned(),
        }
    }

    const GITHUB_HASH: &str = "7c30bcc410f6649098ace28fc5cd12bec9325ae438fe312a8c8da0dd4e0b2cd9";
    const QUAY_HASH: &str = "3e6315f59f25bc201ec77ebb7818c057c4406a4b58d930f27d651b6af36395a9";
    const CLUSTER_HASH: &str = "d199753faeaea2549d7cb185cbdab5d37f4cc9f58c678fe92fd890186b33f15a";

    #[test]
    fn worked_examples_of_the_spec_give_kargos_paths_and_urls() {
        // Parity: §1.1 worked examples (computed with Kargo's buildWebhookPath/getDetails;
        // Kargo's TestGetDetails asserts the prefixes).
        let cases = [
            (
                "http://webhooks.kargo.example.com",
                "fake-project",
                "github",
                "fake-receiver",
                "fake-secret",
                format!("/github/{GITHUB_HASH}"),
            ),
            (
                "http://webhooks.kargo.example.com/",
                "fake-project",
                "github",
                "fake-receiver",
                "fake-secret",
                format!("/github/{GITHUB_HASH}"),
            ),
            (
                "https://kargo.example.com/webhook",
                "fake-project",
                "github",
                "fake-receiver",
                "fake-secret",
                format!("/webhook/github/{GITHUB_HASH}"),
            ),
            (
                "https://kargo.example.com/webhook/",
                "fake-project",
                "github",
                "fake-receiver",
                "fake-secret",
                format!("/webhook/github/{GITHUB_HASH}"),
            ),
            (
                "https://webhooks.kargo.example.com",
                "kargo-demo",
                "quay",
                "q-wh-receiver",
                "mysecret",
                format!("/quay/{QUAY_HASH}"),
            ),
            (
                "https://webhooks.kargo.example.com/a//b/",
                "kargo-demo",
                "quay",
                "q-wh-receiver",
                "mysecret",
                format!("/a/b/quay/{QUAY_HASH}"),
            ),
            (
                "https://webhooks.kargo.example.com",
                "",
                "quay",
                "q-wh-receiver",
                "mysecret",
                format!("/quay/{CLUSTER_HASH}"),
            ),
        ];
        for (base, project, kind, receiver, secret, want_path) in cases {
            let token = receiver_token(project, receiver, &SecretString::new(secret));
            let base_path = base
                .splitn(4, '/')
                .nth(3)
                .map(|p| format!("/{p}"))
                .unwrap_or_default();
            assert_eq!(webhook_path(&base_path, kind, &token), want_path, "{base}");
            if kind == "quay" {
                let host = base
                    .trim_end_matches('/')
                    .splitn(4, '/')
                    .take(3)
                    .collect::<Vec<_>>()
                    .join("/");
                assert_eq!(
                    receiver_url(base, &token).as_deref(),
                    Ok(format!("{host}{want_path}").as_str()),
                    "{base}"
                );
            }
        }
    }

    #[test]
    fn receiver_path_cleans_like_go_path_join() {
        let cases = [
            ("", "/quay/t"),
            ("/", "/quay/t"),
            ("/a//b/", "/a/b/quay/t"),
            ("/webhook/", "/webhook/quay/t"),
            ("/a/./b", "/a/b/quay/t"),
            ("/a/../b", "/b/quay/t"),
            ("/../../x", "/x/quay/t"),
            ("/a/..", "/quay/t"),
            ("a/b", "a/b/quay/t"),
            ("../a", "a/quay/t"),
        ];
        for (base, want) in cases {
            assert_eq!(receiver_path(base, "t"), want, "{base:?}");
        }
        assert_eq!(receiver_path("/x", "t/"), "/x/quay/t/");
    }

    #[test]
    fn receiver_url_replaces_only_the_path() {
        let cases = [
            ("https://h.example.com", "https://h.example.com/quay/t"),
            ("https://h.example.com/", "https://h.example.com/quay/t"),
            (
                "https://h.example.com/hooks/",
                "https://h.example.com/hooks/quay/t",
            ),
            (
                "HTTPS://h.example.com:8443/x?team=a#top",
                "https://h.example.com:8443/x/quay/t?team=a#top",
            ),
            (
                "https://h.example.com?x=1",
                "https://h.example.com/quay/t?x=1",
            ),
            ("https://h.example.com/?", "https://h.example.com/quay/t?"),
            ("https://h.example.com/#", "https://h.example.com/quay/t"),
            ("https://user@[::1]:80/p", "https://user@[::1]:80/p/quay/t"),
        ];
        for (base, want) in cases {
            assert_eq!(receiver_url(base, "t").as_deref(), Ok(want), "{base}");
        }
    }

    #[test]
    fn receiver_url_rejects_relative_or_broken_bases() {
        let cases = [
            ("h.example.com/x", "scheme"),
            ("1http://h", "scheme"),
            ("://h", "scheme"),
            ("https:h.example.com", "host"),
            ("https://", "host"),
            ("https:///x", "host"),
            ("https://user@:80/x", "host"),
            ("https://h:abc/", "port"),
            ("https://h .com/", "char"),
            ("https://h.com/\n", "char"),
        ];
        for (base, kind) in cases {
            let got = match receiver_url(base, "t") {
                Err(BaseUrlError::MissingScheme { .. }) => "scheme",
                Err(BaseUrlError::MissingHost { .. }) => "host",
                Err(BaseUrlError::InvalidPort { .. }) => "port",
                Err(BaseUrlError::InvalidCharacter { .. }) => "char",
                Ok(_) => "ok",
            };
            assert_eq!(got, kind, "{base}");
        }
    }

    #[test]
    fn verify_finds_the_right_receiver() {
        let mut set = TokenSet::new();
        set.insert(id("p1", "r1"), &SecretString::new("s1"), false);
        set.insert(id("p2", "r2"), &SecretString::new("s2"), false);
        set.insert(id("p2", "r2"), &SecretString::new("s2-old"), true);
        assert_eq!(set.len(), 3);
        let hit = set.verify(&receiver_token("p2", "r2", &SecretString::new("s2")));
        assert_eq!(
            hit,
            Some(Match {
                id: id("p2", "r2"),
                previous: false
            })
        );
        let hit = set.verify(&receiver_token("p2", "r2", &SecretString::new("s2-old")));
        assert_eq!(
            hit,
            Some(Match {
                id: id("p2", "r2"),
                previous: true
            })
        );
        let hit = set.verify(&receiver_token("p1", "r1", &SecretString::new("s1")));
        assert_eq!(
            hit,
            Some(Match {
                id: id("p1", "r1"),
                previous: false
            })
        );
    }

    #[test]
    fn verify_keeps_projects_apart() {
        let mut set = TokenSet::new();
        set.insert(id("team-a", "quay"), &SecretString::new("same"), false);
        assert_eq!(
            set.verify(&receiver_token(
                "team-b",
                "quay",
                &SecretString::new("same")
            )),
            None
        );
        assert_eq!(
            set.verify(&receiver_token("", "quay", &SecretString::new("same"))),
            None
        );
    }

    #[test]
    fn verify_rejects_malformed_tokens() {
        let mut set = TokenSet::new();
        set.insert(
            id("kargo-demo", "q-wh-receiver"),
            &SecretString::new("mysecret"),
            false,
        );
        assert!(set.verify(QUAY_HASH).is_some());
        let rejected = [
            QUAY_HASH.to_uppercase(),
            QUAY_HASH[..63].to_owned(),
            format!("{QUAY_HASH}0"),
            format!("{QUAY_HASH}/"),
            String::new(),
            format!("{}g", &QUAY_HASH[..63]),
        ];
        for token in rejected {
            assert_eq!(set.verify(&token), None, "{token}");
        }
    }

    #[test]
    fn verify_on_an_empty_set_matches_nothing() {
        let set = TokenSet::new();
        assert!(set.is_empty());
        assert_eq!(set.verify(QUAY_HASH), None);
    }

    #[test]
    fn identical_hash_inputs_resolve_to_the_first_inserted() {
        let mut set = TokenSet::new();
        set.insert(id("ab", "c"), &SecretString::new("s"), false);
        set.insert(id("a", "bc"), &SecretString::new("s"), false);
        let hit = set.verify(&receiver_token("a", "bc", &SecretString::new("s")));
        assert_eq!(hit.map(|m| m.id), Some(id("ab", "c")));
    }

    #[test]
    fn debug_output_holds_no_secret_or_digest() {
        let secret = SecretString::new("hunter2-secret");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        let mut set = TokenSet::new();
        set.insert(
            id("kargo-demo", "q-wh-receiver"),
            &SecretString::new("mysecret"),
            false,
        );
        let shown = format!("{set:?} {set:#?}");
        assert!(
            !shown.contains("mysecret") && !shown.contains(&QUAY_HASH[..16]),
            "{shown}"
        );
        assert!(
            !shown.contains("[61") && !shown.contains("62,"),
            "no digest bytes: {shown}"
        );
    }

    #[test]
    fn secret_string_deserializes_from_a_plain_string() {
        let secret: SecretString = serde_json::from_str("\"abc\\n\"").expect("json string");
        assert_eq!(secret.expose(), "abc\n");
        assert_eq!(SecretString::from("abc\n".to_owned()), secret);
    }

    fn triple() -> impl Strategy<Value = (String, String, String)> {
        ("[a-z0-9-]{0,6}", "[a-z0-9-]{1,6}", "[ -~]{0,8}")
    }

    proptest! {
        #[test]
        fn verify_returns_exactly_the_owner_of_a_token(
            triples in prop::collection::vec(triple(), 1..8),
            pick in any::<prop::sample::Index>(),
            other in "[0-9a-f]{64}",
        ) {
            let mut seen = std::collections::HashSet::new();
            let triples: Vec<_> = triples
                .into_iter()
                .filter(|(p, r, s)| seen.insert(format!("{p}{r}{s}")))
                .collect();
            let mut set = TokenSet::new();
            for (p, r, s) in &triples {
                set.insert(id(p, r), &SecretString::new(s.as_str()), false);
            }
            let (p, r, s) = pick.get(&triples);
            let token = receiver_token(p, r, &SecretString::new(s.as_str()));
            prop_assert_eq!(set.verify(&token), Some(Match { id: id(p, r), previous: false }));
            let owned = triples.iter().any(|(p, r, s)| receiver_token(p, r, &SecretString::new(s.as_str())) == other);
            prop_assume!(!owned);
            prop_assert_eq!(set.verify(&other), None);
        }
    }

    #[test]
    fn generated_secrets_follow_kargos_recipe() {
        let random: Vec<u8> = (0u8..48)
            .map(|i| i.wrapping_mul(37).wrapping_add(11))
            .collect();
        let secret = secret_from_random(&random).unwrap();
        assert_eq!(secret.expose().len(), GENERATED_SECRET_LEN);
        assert!(secret.expose().bytes().all(|c| c.is_ascii_alphanumeric()));
        assert!(
            secret_from_random(&[0xff; 48]).is_none(),
            "all `/` gives too few characters"
        );
        assert!(secret_from_random(&[1, 2, 3]).is_none());
    }
}
