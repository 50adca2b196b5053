//! Repository-URL normalisation, as Kargo's `pkg/urls` does it (`kargo-quay-receiver.md` §3).
//!
//! This module owns [`RepoUrl`], the only way to build one, and the rules that make one:
//! Kargo's `SanitizeURL` ([`sanitize`]), `NormalizeImage` ([`normalize_image`]) and
//! `NormalizeChart` ([`normalize_chart`]); go-containerregistry's weak reference parser
//! ([`parse_image_reference`]); and oras-go's reference check for OCI chart subscriptions
//! ([`check_oci_reference`], §5.5). It is pure: no I/O, no clock, no environment.
//!
//! Go's standard library is part of the behaviour, so the pieces of it that can change a result
//! are reproduced here: `strings.ToLower` (simple case mapping), `unicode.IsPrint`,
//! `strings.TrimSpace`, `net/url.Parse` (Go 1.26, colons strict only for `http`/`https`) and
//! `net/netip.ParseAddr`.

use std::borrow::Borrow;
use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

/// A normalized repository URL: the key Warehouses are indexed and looked up by.
///
/// Only this module constructs one, through [`normalize_image`] and [`normalize_chart`], so a
/// `RepoUrl` always went through Kargo's normalization. It borrows as `str`, so a
/// `HashMap<RepoUrl, _>` can be queried with a plain `&str`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RepoUrl(String);

impl RepoUrl {
    /// Returns the normalized URL text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for RepoUrl {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for RepoUrl {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// The error of a reference that does not parse; every variant names the offending input.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ReferenceError {
    /// Returned when an image reference parses neither as a tag reference nor as a digest
    /// reference (go-containerregistry `name.ParseReference`); `reason` says what the more
    /// plausible form (digest if the input has an `@`, else tag) failed on.
    #[error("could not parse image reference {input:?}: {reason}")]
    Image {
        /// The reference as given.
        input: String,
        /// Which element failed.
        reason: &'static str,
    },
    /// Returned when an OCI reference has no `/` between registry and repository.
    #[error("invalid oci reference {input:?}: missing registry or repository")]
    OciMissingRepository {
        /// The reference as given.
        input: String,
    },
    /// Returned when the registry of an OCI reference is not a URL authority equal to itself.
    #[error("invalid oci reference {input:?}: invalid registry {registry:?}")]
    OciRegistry {
        /// The reference as given.
        input: String,
        /// The registry part.
        registry: String,
    },
    /// Returned when the repository of an OCI reference fails the distribution grammar
    /// (lower-case components joined by `/`, no leading, trailing or doubled separators).
    #[error("invalid oci reference {input:?}: invalid repository {repository:?}")]
    OciRepository {
        /// The reference as given.
        input: String,
        /// The repository part.
        repository: String,
    },
    /// Returned when the tag of an OCI reference fails `^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`.
    #[error("invalid oci reference {input:?}: invalid tag {tag:?}")]
    OciTag {
        /// The reference as given.
        input: String,
        /// The tag part.
        tag: String,
    },
    /// Returned when the digest of an OCI reference is not `sha256`/`sha384`/`sha512` followed
    /// by the right number of lower-case hex digits (opencontainers/go-digest `Parse`).
    #[error("invalid oci reference {input:?}: invalid digest {digest:?}")]
    OciDigest {
        /// The reference as given.
        input: String,
        /// The digest part.
        digest: String,
    },
}

/// Matches every rune Go's `unicode.IsPrint` rejects: anything outside the general categories
/// L, M, N, P and S, except the ASCII space.
static NON_PRINTABLE: LazyLock<Regex> = LazyLock::new(|| {
    // Invariant: the pattern is a constant that compiles (covered by every sanitize test).
    Regex::new(r"[^\p{L}\p{M}\p{N}\p{P}\p{S} ]").expect("constant pattern compiles")
});

/// Kargo's `SanitizeURL`: drops every rune Go's `unicode.IsPrint` rejects, then trims.
///
/// Go's `IsPrint` is true for letters, marks, numbers, punctuation and symbols (general
/// categories L, M, N, P, S) and for the ASCII space, so this removes, anywhere in the string:
/// controls (Cc: tab, newline…), formats (Cf: BOM U+FEFF, ZWSP U+200B, soft hyphen, bidi marks…),
/// every separator but U+0020 (Zs such as NBSP, Zl U+2028, Zp U+2029), private use (Co),
/// and unassigned code points (Cn). Surrogates (Cs) cannot occur in a Rust string. Then it trims
/// Unicode `White_Space` at both ends (`strings.TrimSpace`); after the removal only U+0020 is
/// left to trim. Internal ASCII spaces stay.
///
/// The categories come from the `regex` crate's Unicode tables (Unicode 16.0). Go's tables
/// may be of another Unicode version, so code points assigned or re-categorised between the two
/// versions can be judged differently; no other divergence is known.
///
/// ```
/// use kargo_match::urls::sanitize;
/// assert_eq!(sanitize("\u{feff} https://example.com/\u{200b}repo \n"), "https://example.com/repo");
/// assert_eq!(sanitize("https://example.com/ myrepo"), "https://example.com/ myrepo");
/// ```
pub fn sanitize(s: &str) -> String {
    // Printable ASCII (U+0020..=U+007E) is all L, N, P, S or the space: nothing to remove,
    // and the space is the only white space left to trim. The common case, without the regex.
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return s.trim_matches(' ').to_owned();
    }
    NON_PRINTABLE
        .replace_all(s, "")
        .trim_matches(char::is_whitespace)
        .to_owned()
}

/// Go's `strings.ToLower`, which maps rune by rune with the *simple* case mapping.
///
/// Rust's `char::to_lowercase` uses the full mapping, which differs only for U+0130 (capital I
/// with dot above: Go gives `i`, the full mapping `i` + U+0307). Rust's `str::to_lowercase` would
/// also apply the final-sigma rule, which Go does not.
fn go_to_lower(s: &str) -> String {
    if s.is_ascii() {
        // Both mappings agree on ASCII.
        return s.to_ascii_lowercase();
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\u{130}' {
            out.push('i');
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

const DOCKER_HUB: &str = "index.docker.io";

/// Kargo's `NormalizeImage`: the key an image subscription's `repoURL` is indexed by.
///
/// Lower-cases (Go's simple mapping) and [`sanitize`]s the input, then parses it with
/// [`parse_image_reference`]. On success the result is `registry/repository`, except on Docker
/// Hub (`index.docker.io`, or `registry-1.docker.io` kept as written) where it is the repository
/// with one leading `library/` removed; tags and digests are dropped. If parsing fails the
/// **original** input is returned, neither lower-cased nor sanitized (Kargo's fallback).
///
/// There is no `oci://` handling (`oci:` parses as a registry) and `https://…` stays as it is.
///
/// ```
/// use kargo_match::urls::normalize_image;
/// assert_eq!(normalize_image("docker.io/library/busybox:1.36").as_str(), "busybox");
/// assert_eq!(normalize_image(" Quay.io/NS/Repo ").as_str(), "quay.io/ns/repo");
/// assert_eq!(normalize_image("invalid url").as_str(), "invalid url");
/// ```
pub fn normalize_image(s: &str) -> RepoUrl {
    let cleaned = sanitize(&go_to_lower(s));
    match parse_image_reference(&cleaned) {
        Err(_) => RepoUrl(s.to_owned()),
        Ok(reference) => {
            let registry = reference.registry();
            let repository = reference.repository();
            if registry == DOCKER_HUB || registry == "registry-1.docker.io" {
                let repository = repository.strip_prefix("library/").unwrap_or(repository);
                RepoUrl(repository.to_owned())
            } else {
                RepoUrl(format!("{registry}/{repository}"))
            }
        }
    }
}

/// Kargo's `NormalizeChart`: the key a chart subscription's `repoURL` is indexed by.
///
/// [`sanitize`]s the input; if the result does not parse as a URL under Go's `net/url.Parse`
/// the **original** input is returned. Otherwise it lower-cases it, removes one leading `oci://`
/// and applies [`normalize_image`] to that, whose fallback then returns the lower-cased,
/// sanitized, prefix-stripped string.
///
/// `url.Parse` rejects, on sanitized input: a leading `:` (missing scheme); no scheme and a `:`
/// in the first path segment (`127.0.0.1:5000/x`, `my_reg:5000/x`); a bad `%` escape in the
/// path, fragment or userinfo (`%zz`, a trailing `%`), but not in the query or an opaque part;
/// and, when an authority follows `//`: userinfo with characters outside RFC 3986, a `[` that
/// is not first, a bracketed host that is not an IPv6 address, a port that is not digits (after
/// the first `:` for `http`/`https`, after the last one otherwise), an ASCII host character
/// other than letters, digits and `-._~!$&'()*+,;=:[]<>"` (so a space, `{`, `|` or `\`), or a
/// `%` escape of an ASCII byte in the host other than `%25`. Non-ASCII host bytes pass.
///
/// ```
/// use kargo_match::urls::normalize_chart;
/// assert_eq!(normalize_chart("OCI://registry-1.docker.io/example/repo").as_str(), "example/repo");
/// assert_eq!(normalize_chart("oci://ghcr.io/acme/charts/app").as_str(), "ghcr.io/acme/charts/app");
/// assert_eq!(normalize_chart("https://example.com/%zz").as_str(), "https://example.com/%zz");
/// ```
pub fn normalize_chart(s: &str) -> RepoUrl {
    let sanitized = sanitize(s);
    if gourl::parse(&sanitized).is_err() {
        return RepoUrl(s.to_owned());
    }
    let lowered = go_to_lower(&sanitized);
    normalize_image(lowered.strip_prefix("oci://").unwrap_or(&lowered))
}

/// An image reference as go-containerregistry's `name.ParseReference` reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageReference {
    registry: String,
    repository: String,
    identifier: Option<String>,
}

impl ImageReference {
    /// The registry: `index.docker.io` when none was given or `docker.io` was, else as written
    /// (host and optional port).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository (`RepositoryStr`): as written, with `library/` prepended for a
    /// single-component repository on `index.docker.io`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag or digest as written; `None` for a tag reference without a tag.
    pub fn identifier(&self) -> Option<&str> {
        self.identifier.as_deref()
    }
}

/// go-containerregistry v0.21.7 `name.ParseReference(s, name.WeakValidation)`.
///
/// Tries the tag form, then the digest form:
/// * **Tag form**: the text after the last `:` is a tag if it holds no `/`; a non-empty tag must
///   be 1–128 characters of `[A-Za-z0-9_.-]` (an empty one, as in `busybox:`, is ignored).
/// * **Repository**: split at the first `/`; the first part is a registry if it is `localhost`
///   or holds a `.` or `:`. The repository must be 2–255 characters of `[a-z0-9_./-]`;
///   the registry must survive Go's `url.Parse("//" + registry)` with `Host` equal to itself.
///   `docker.io` and the empty registry become `index.docker.io`, where a single-component
///   repository gains `library/` (and must still be at most 255 characters).
/// * **Digest form**: exactly one `@`; after it 71 characters of `[sh:0-9a-f]` (the library
///   checks only that set and that length, so `sha256:` + 64 hex passes); before it a reference
///   re-parsed through its canonical name.
///
/// # Errors
/// [`ReferenceError::Image`] when neither form parses.
///
/// ```
/// use kargo_match::urls::parse_image_reference;
/// let r = parse_image_reference("busybox:1.36").unwrap();
/// assert_eq!((r.registry(), r.repository(), r.identifier()), ("index.docker.io", "library/busybox", Some("1.36")));
/// assert!(parse_image_reference("quay.io/a").is_err());
/// ```
pub fn parse_image_reference(s: &str) -> Result<ImageReference, ReferenceError> {
    let tag_reason = match new_tag(s) {
        Ok((repo, tag)) => return Ok(ImageReference::new(&repo, tag)),
        Err(reason) => reason,
    };
    let digest_reason = match new_digest(s) {
        Ok((repo, digest)) => return Ok(ImageReference::new(&repo, Some(digest))),
        Err(reason) => reason,
    };
    Err(ReferenceError::Image {
        input: s.to_owned(),
        reason: if s.contains('@') {
            digest_reason
        } else {
            tag_reason
        },
    })
}

impl ImageReference {
    fn new(repo: &Repository, identifier: Option<String>) -> Self {
        ImageReference {
            registry: repo.registry.clone(),
            repository: repo.repository_str(),
            identifier,
        }
    }
}

/// A parsed go-containerregistry `Repository` (registry already defaulted and rewritten).
struct Repository {
    registry: String,
    repository: String,
}

impl Repository {
    fn has_implicit_namespace(&self) -> bool {
        !self.repository.contains('/') && self.registry == DOCKER_HUB
    }

    fn repository_str(&self) -> String {
        if self.has_implicit_namespace() {
            format!("library/{}", self.repository)
        } else {
            self.repository.clone()
        }
    }

    fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository_str())
    }
}

fn check_element(element: &str, allowed: fn(char) -> bool, min: usize, max: usize) -> bool {
    let n = element.chars().count();
    (min..=max).contains(&n) && element.chars().all(allowed)
}

fn is_tag_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

fn is_repository_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.' | '/')
}

fn is_digest_char(c: char) -> bool {
    matches!(c, 's' | 'h' | ':' | '0'..='9' | 'a'..='f')
}

fn check_repository(repository: &str) -> Result<(), &'static str> {
    if check_element(repository, is_repository_char, 2, 255) {
        Ok(())
    } else {
        Err("repository must be 2-255 characters of [a-z0-9_./-]")
    }
}

fn new_registry(name: &str) -> Result<String, &'static str> {
    let authority_ok = gourl::parse(&format!("//{name}")).is_ok_and(|u| u.host == name.as_bytes());
    if !authority_ok {
        return Err("registry must be a valid RFC 3986 URI authority");
    }
    Ok(if name.is_empty() || name == "docker.io" {
        DOCKER_HUB.to_owned()
    } else {
        name.to_owned()
    })
}

fn new_repository(name: &str) -> Result<Repository, &'static str> {
    if name.is_empty() {
        return Err("a repository name must be specified");
    }
    let (registry, repository) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first, rest)
        }
        _ => ("", name),
    };
    check_repository(repository)?;
    let repo = Repository {
        registry: new_registry(registry)?,
        repository: repository.to_owned(),
    };
    if repo.has_implicit_namespace() {
        check_repository(&repo.repository_str())?;
    }
    Ok(repo)
}

fn new_tag(name: &str) -> Result<(Repository, Option<String>), &'static str> {
    let (base, tag) = match name.rsplit_once(':') {
        Some((base, tag)) if !tag.contains('/') => (base, tag),
        _ => (name, ""),
    };
    if !tag.is_empty() && !check_element(tag, is_tag_char, 1, 128) {
        return Err("tag must be 1-128 characters of [A-Za-z0-9_.-]");
    }
    let repo = new_repository(base)?;
    Ok((repo, (!tag.is_empty()).then(|| tag.to_owned())))
}

fn new_digest(name: &str) -> Result<(Repository, String), &'static str> {
    let mut parts = name.split('@');
    let (Some(base), Some(digest), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err("a digest must contain exactly one '@' separator");
    };
    if !check_element(digest, is_digest_char, 71, 71) {
        return Err("digest must be 71 characters of [sh:0-9a-f]");
    }
    let base = match new_tag(base) {
        Ok((repo, _)) => repo.name(),
        Err(_) => base.to_owned(),
    };
    Ok((new_repository(&base)?, digest.to_owned()))
}

static OCI_REPOSITORY: LazyLock<Regex> = LazyLock::new(|| {
    // Invariant: constant pattern (oras-go registry/reference.go), covered by the oras tests.
    Regex::new(
        r"^[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*)*$",
    )
    .expect("constant pattern compiles")
});

static OCI_TAG: LazyLock<Regex> = LazyLock::new(|| {
    // Invariant: constant pattern; Go's `\w` is ASCII-only, hence the explicit class.
    Regex::new(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$").expect("constant pattern compiles")
});

/// oras-go v2 `registry.ParseReference`, which Kargo's OCI chart selector runs on a chart
/// subscription's `repoURL` with `oci://` removed (§5.5). The input must not carry `oci://`.
///
/// The input is `registry/path`, split at the first `/`. In the path, an `@` starts a digest
/// (a `:` before it ends the repository; that tag is ignored), else a `:` starts a tag. The
/// registry must satisfy `url.ParseRequestURI("dummy://" + registry).Host == registry` (the
/// empty registry passes, as in oras-go); the repository must match the distribution grammar
/// (lower case, so upper case or a trailing `/` fail); a tag must match
/// `^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`; a digest must be `sha256:`, `sha384:` or `sha512:`
/// followed by 64, 96 or 128 lower-case hex digits.
///
/// # Errors
/// The `Oci*` variants of [`ReferenceError`], naming the part that failed.
///
/// ```
/// use kargo_match::urls::check_oci_reference;
/// assert!(check_oci_reference("ghcr.io/acme/charts/app:1.2.3").is_ok());
/// assert!(check_oci_reference("ghcr.io/Acme/app").is_err());
/// assert!(check_oci_reference("app").is_err());
/// ```
pub fn check_oci_reference(s: &str) -> Result<(), ReferenceError> {
    let Some((registry, path)) = s.split_once('/') else {
        return Err(ReferenceError::OciMissingRepository {
            input: s.to_owned(),
        });
    };
    let (repository, reference, is_tag) = if let Some((before, digest)) = path.split_once('@') {
        let repository = before.split_once(':').map_or(before, |(repo, _)| repo);
        (repository, digest, false)
    } else if let Some((repository, tag)) = path.split_once(':') {
        (repository, tag, true)
    } else {
        (path, "", false)
    };
    let registry_ok = gourl::parse_request_uri(&format!("dummy://{registry}"))
        .is_ok_and(|u| u.host == registry.as_bytes());
    if !registry_ok {
        return Err(ReferenceError::OciRegistry {
            input: s.to_owned(),
            registry: registry.to_owned(),
        });
    }
    if !OCI_REPOSITORY.is_match(repository) {
        return Err(ReferenceError::OciRepository {
            input: s.to_owned(),
            repository: repository.to_owned(),
        });
    }
    if reference.is_empty() {
        return Ok(());
    }
    if is_tag {
        if !OCI_TAG.is_match(reference) {
            return Err(ReferenceError::OciTag {
                input: s.to_owned(),
                tag: reference.to_owned(),
            });
        }
    } else if !valid_oci_digest(reference) {
        return Err(ReferenceError::OciDigest {
            input: s.to_owned(),
            digest: reference.to_owned(),
        });
    }
    Ok(())
}

/// opencontainers/go-digest `Parse`: the algorithms a Go binary linking crypto/sha256 and
/// crypto/sha512 has available, each with its lower-case hex length.
fn valid_oci_digest(digest: &str) -> bool {
    let Some((algorithm, encoded)) = digest.split_once(':') else {
        return false;
    };
    let hex_len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return false,
    };
    encoded.len() == hex_len
        && encoded
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

mod gourl;
mod netip;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn image(s: &str) -> String {
        normalize_image(s).0
    }

    fn chart(s: &str) -> String {
        normalize_chart(s).0
    }

    #[test]
    fn normalize_image_matches_kargo_test_normalize_image() {
        // Parity: Kargo pkg/urls TestNormalizeImage (§3.4).
        let cases = [
            ("index.docker.io/library/busybox", "busybox"),
            ("index.docker.io/busybox", "busybox"),
            ("registry-1.docker.io/library/busybox", "busybox"),
            ("registry-1.docker.io/busybox", "busybox"),
            ("docker.io/library/busybox", "busybox"),
            ("docker.io/busybox", "busybox"),
            ("library/busybox", "busybox"),
            ("busybox", "busybox"),
            ("index.docker.io/example/repo", "example/repo"),
            ("docker.io/example/repo", "example/repo"),
            ("example/repo", "example/repo"),
            ("ghcr.io/example/repo", "ghcr.io/example/repo"),
            ("quay.io/example/repo", "quay.io/example/repo"),
            ("invalid url", "invalid url"),
        ];
        for (input, want) in cases {
            assert_eq!(image(input), want, "input {input:?}");
        }
    }

    #[test]
    fn normalize_chart_matches_kargo_test_normalize_chart() {
        // Parity: Kargo pkg/urls TestNormalizeChart (§3.5).
        let cases = [
            ("empty string", "", ""),
            ("single word", "repo", "repo"),
            ("leading and trailing whitespace", "  repo  ", "repo"),
            ("mixed case", "REpo", "repo"),
            ("oci prefix", "oci://repo", "repo"),
            ("oci prefix with whitespace", "  oci://repo  ", "repo"),
            ("oci prefix with mixed case", "OCI://Repo", "repo"),
            (
                "docker.io with oci",
                "oci://docker.io/example/repo",
                "example/repo",
            ),
            (
                "docker.io without oci",
                "docker.io/example/repo",
                "example/repo",
            ),
            (
                "index.docker.io with oci",
                "oci://index.docker.io/example/repo",
                "example/repo",
            ),
            (
                "index.docker.io without oci",
                "index.docker.io/example/repo",
                "example/repo",
            ),
            (
                "registry-1 with oci",
                "oci://registry-1.docker.io/example/repo",
                "example/repo",
            ),
            (
                "registry-1 without oci",
                "registry-1.docker.io/example/repo",
                "example/repo",
            ),
        ];
        for (name, input, want) in cases {
            assert_eq!(chart(input), want, "{name}");
        }
    }

    #[test]
    fn sanitize_matches_kargo_test_sanitize_url() {
        // Parity: Kargo pkg/urls TestSanitizeURL.
        let cases = [
            ("  https://example.com/repo  ", "https://example.com/repo"),
            (
                "\n\thttps://example.com/repo\t\n",
                "https://example.com/repo",
            ),
            (
                "\u{feff}https://example.com/repo",
                "https://example.com/repo",
            ),
            (
                "https://example.com/\u{200b}repo",
                "https://example.com/repo",
            ),
            (
                "https://example.com/repo\u{feff}",
                "https://example.com/repo",
            ),
            (
                "\u{feff} https://example.com/\u{200b}repo \u{feff}",
                "https://example.com/repo",
            ),
            (
                "\u{feff} \n https://example.com/\trepo \u{200b} \n ",
                "https://example.com/repo",
            ),
            ("https://example.com/repo", "https://example.com/repo"),
            ("ftp://example.com/resource", "ftp://example.com/resource"),
            ("   ", ""),
            ("", ""),
            ("https://example.com/ myrepo", "https://example.com/ myrepo"),
            (
                "https://example.com/\u{200b}myrepo",
                "https://example.com/myrepo",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(sanitize(input), want, "input {input:?}");
        }
    }

    #[test]
    fn sanitize_drops_every_non_printable_class() {
        let cases = [
            ("a\u{a0}b", "ab"),             // NBSP (Zs)
            ("a\u{3000}b", "ab"),           // ideographic space (Zs)
            ("a\u{2028}b\u{2029}c", "abc"), // line and paragraph separators
            ("a\u{ad}b", "ab"),             // soft hyphen (Cf)
            ("a\u{202e}b", "ab"),           // bidi override (Cf)
            ("a\u{e000}b", "ab"),           // private use (Co)
            ("a\u{10ffff}b", "ab"),         // noncharacter, unassigned (Cn)
            ("a\u{7f}\u{85}b", "ab"),       // controls (Cc)
            ("é€✓\u{301}", "é€✓\u{301}"),   // letters, symbols, marks stay
            ("\u{3000} a b \u{a0}", "a b"), // inner ASCII space kept after trimming
        ];
        for (input, want) in cases {
            assert_eq!(sanitize(input), want, "input {input:?}");
        }
    }

    #[test]
    fn warehouse_index_values_match_kargo_test_warehouses_by_repo_url() {
        // Parity: Kargo pkg/indexer TestWarehousesByRepoURL (§4.1).
        assert_eq!(
            image("https://registry.hub.docker.com/u/svendowideit/testhook/"),
            "https://registry.hub.docker.com/u/svendowideit/testhook/"
        );
        assert_eq!(
            chart("https://example.com/charts/alpine-0.1.2"),
            "https://example.com/charts/alpine-0.1.2"
        );
    }

    #[test]
    fn normalize_image_edge_cases() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let long_tag = "t".repeat(128);
        let too_long_tag = format!("quay.io/ns/repo:{}", "t".repeat(129));
        let cases: Vec<(String, &str)> = vec![
            (format!("quay.io/ns/repo:{long_tag}"), "quay.io/ns/repo"),
            (too_long_tag.clone(), too_long_tag.as_str()),
            (format!("quay.io/ns/repo@{digest}"), "quay.io/ns/repo"),
            (format!("quay.io/ns/repo:v1@{digest}"), "quay.io/ns/repo"),
            (format!("busybox@{digest}"), "busybox"),
            ("localhost:5000/x".into(), "localhost:5000/x"),
            ("localhost/xy".into(), "localhost/xy"),
            (
                "registry.example.com:8443/team/app:1.0".into(),
                "registry.example.com:8443/team/app",
            ),
            ("https://quay.io/ns/repo".into(), "https://quay.io/ns/repo"),
            ("oci://quay.io/x/y".into(), "oci://quay.io/x/y"),
            ("QUAY.IO/NS/Repo".into(), "quay.io/ns/repo"),
            ("quay.io/ns/repo/".into(), "quay.io/ns/repo/"),
            ("\u{3000}quay.io/ns/repo\u{a0}".into(), "quay.io/ns/repo"),
            ("\u{feff}quay.io/ns/repo".into(), "quay.io/ns/repo"),
            ("quay.io/ns/\u{200b}repo".into(), "quay.io/ns/repo"),
            ("busybox:".into(), "busybox"),
            ("quay.io/a".into(), "quay.io/a"), // 1-char repository: raw fallback
            ("Quay.io/a".into(), "Quay.io/a"), // fallback keeps the original case
            ("a".into(), "a"),
            ("quay.io/ns/repo:bad!tag".into(), "quay.io/ns/repo:bad!tag"),
            ("\u{130}mage".into(), "image"), // Go's simple lower-casing of U+0130
            ("doc\u{212a}er.io/x/yy".into(), "x/yy"), // Kelvin sign lower-cases to k
        ];
        for (input, want) in cases {
            assert_eq!(image(&input), want, "input {input:?}");
        }
    }

    #[test]
    fn normalize_chart_edge_cases() {
        let cases = [
            ("oci://quay.io/NS/Repo:1.0", "quay.io/ns/repo"),
            ("oci://oci://quay.io/x/yy", "oci://quay.io/x/yy"),
            ("  OCI://ghcr.io/acme/app \u{feff}", "ghcr.io/acme/app"),
            ("https://example.com/%zz", "https://example.com/%zz"), // bad escape: original
            ("Example.com/%", "Example.com/%"),
            ("127.0.0.1:5000/Repo", "127.0.0.1:5000/Repo"), // colon in first segment: original
            ("oci://127.0.0.1:5000/Repo", "127.0.0.1:5000/repo"),
            ("http://Host:abc/x", "http://Host:abc/x"), // bad port: original
            ("http://[::1]:5000/x", "http://[::1]:5000/x"),
            ("http://[1.2.3.4]/x", "http://[1.2.3.4]/x"), // IPv4 in brackets: original
            (":Foo", ":Foo"),                             // missing scheme: original
            ("oci://quay.io/a", "quay.io/a"),             // image fallback: lower, stripped
            ("OCI://Quay.io/a", "quay.io/a"),
            ("oci://host/a?%zz", "host/a?%zz"), // the query is not checked; the image parse fails
        ];
        for (input, want) in cases {
            assert_eq!(chart(input), want, "input {input:?}");
        }
    }

    #[test]
    fn parse_image_reference_reads_registry_repository_and_identifier() {
        let digest = format!("sha256:{}", "0123456789abcdef".repeat(4));
        let cases: Vec<(String, &str, &str, Option<String>)> = vec![
            ("busybox".into(), "index.docker.io", "library/busybox", None),
            (
                "docker.io/busybox:1".into(),
                "index.docker.io",
                "library/busybox",
                Some("1".into()),
            ),
            (
                "registry-1.docker.io/busybox".into(),
                "registry-1.docker.io",
                "busybox",
                None,
            ),
            ("localhost:5000/xy".into(), "localhost:5000", "xy", None),
            (
                "gcr.io/a/b:latest".into(),
                "gcr.io",
                "a/b",
                Some("latest".into()),
            ),
            (
                format!("gcr.io/a/b@{digest}"),
                "gcr.io",
                "a/b",
                Some(digest.clone()),
            ),
            (
                format!("ubuntu:22.04@{digest}"),
                "index.docker.io",
                "library/ubuntu",
                Some(digest.clone()),
            ),
            ("https://x.y/z".into(), "https:", "/x.y/z", None),
            ("[::1]:5000/foo".into(), "[::1]:5000", "foo", None),
        ];
        for (input, registry, repository, identifier) in cases {
            let r = parse_image_reference(&input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.registry(), registry, "{input}");
            assert_eq!(r.repository(), repository, "{input}");
            assert_eq!(r.identifier(), identifier.as_deref(), "{input}");
        }
    }

    #[test]
    fn parse_image_reference_rejects_what_go_containerregistry_rejects() {
        // Rows derived from go-containerregistry pkg/name ref_test.go / tag_test.go /
        // digest_test.go / repository_test.go / registry_test.go bad-name cases.
        let too_long_repo = format!("gcr.io/{}", "a".repeat(256));
        let implicit_too_long = "a".repeat(250);
        let cases = [
            "",
            "a",
            "gcr.io/a",
            "UPPER/case",
            "gcr.io/foo:bar:baz!",
            too_long_repo.as_str(),
            implicit_too_long.as_str(),
            "gcr.io/foo@sha256:abc",
            "gcr.io/foo@sha256:abc@sha256:def",
            "gcr.io/foo bar",
            "a b.io/foo",
            "gcr.io#x/foo",
            "user@gcr.io/foo",
            "gcr.io:abc/foo",
            "[1.2.3.4]/foo",
            "x[::1]/foo",
        ];
        for input in cases {
            let err = parse_image_reference(input).expect_err(input);
            assert!(
                matches!(&err, ReferenceError::Image { input: got, .. } if got == input),
                "{input}"
            );
        }
    }

    #[test]
    fn digest_check_is_charset_and_length_only_as_in_go_containerregistry() {
        // checkDigest accepts any 71 characters of "sh:0123456789abcdef".
        let odd = format!("gcr.io/foo@{}", "s".repeat(71));
        assert!(parse_image_reference(&odd).is_ok());
        let upper = format!("gcr.io/foo@sha256:{}", "A".repeat(64));
        assert!(parse_image_reference(&upper).is_err());
    }

    #[test]
    fn registry_check_follows_go_url_parse() {
        let ok = [
            "gcr.io",
            "localhost:5000",
            "https:",
            "a:b:5000",
            "[::1]",
            "[fe80::1]:80",
            "é.com",
            "",
        ];
        for registry in ok {
            assert!(new_registry(registry).is_ok(), "{registry:?}");
        }
        let bad = [
            "a b",
            "a%41",
            "a%25",
            "[::1",
            "[1.2.3.4]",
            "x[::1]",
            "a:b",
            "a|b",
            "a@b",
            "a?b",
            "a#b",
        ];
        for registry in bad {
            assert!(new_registry(registry).is_err(), "{registry:?}");
        }
    }

    #[test]
    fn check_oci_reference_matches_oras_parse_reference() {
        // Rows derived from oras-go registry/reference_test.go (ParseReference valid/invalid).
        let digest = format!("sha256:{}", "9d".repeat(32));
        let valid = [
            "localhost/hello-world".to_owned(),
            "localhost:5000/hello-world:v1".to_owned(),
            "registry.example.com/hello-world".to_owned(),
            "registry.example.com/library/hello-world:v2".to_owned(),
            format!("registry.example.com/hello-world@{digest}"),
            format!("registry.example.com/hello-world:v2@{digest}"),
            format!("registry.example.com/hello-world:@{digest}"),
            "127.0.0.1:5000/a__b/c--d/e.f".to_owned(),
            "registry.example.com/a---b".to_owned(), // any run of dashes
            "[::1]:5000/hello".to_owned(),
            "/hello".to_owned(),
            format!("ghcr.io/x/y@sha512:{}", "ab".repeat(64)),
            "registry.example.com/hello:".to_owned(), // empty reference: form D
            "registry.example.com/hello@".to_owned(),
        ];
        for input in &valid {
            assert_eq!(check_oci_reference(input), Ok(()), "{input}");
        }
        let invalid = [
            ("localhost", "missing"),
            ("localhost:5000", "missing"),
            ("registry.example.com/Hello", "repository"),
            ("registry.example.com/hello/", "repository"),
            ("registry.example.com/", "repository"),
            ("registry.example.com/a//b", "repository"),
            ("registry.example.com/-a", "repository"),
            ("registry.example.com/hello:-v1", "tag"),
            ("registry.example.com/hello@sha256:xyz", "digest"),
            (
                "registry.example.com/hello@md5:d41d8cd98f00b204e9800998ecf8427e",
                "digest",
            ),
            ("in valid/hello", "registry"),
            ("host:port/hello", "registry"),
            ("user@host/hello", "registry"),
        ];
        for (input, part) in invalid {
            let err = check_oci_reference(input).expect_err(input);
            let got = match err {
                ReferenceError::OciMissingRepository { .. } => "missing",
                ReferenceError::OciRegistry { .. } => "registry",
                ReferenceError::OciRepository { .. } => "repository",
                ReferenceError::OciTag { .. } => "tag",
                ReferenceError::OciDigest { .. } => "digest",
                ReferenceError::Image { .. } => "image",
            };
            assert_eq!(got, part, "{input}");
        }
        let long_tag = format!("r.io/a:{}", "t".repeat(128));
        assert_eq!(check_oci_reference(&long_tag), Ok(()));
        let too_long_tag = format!("r.io/a:{}", "t".repeat(129));
        assert!(check_oci_reference(&too_long_tag).is_err());
    }

    #[test]
    fn errors_name_the_offending_input() {
        let err = parse_image_reference("gcr.io/a").expect_err("1-char repository");
        assert!(err.to_string().contains("\"gcr.io/a\""), "{err}");
        let err = check_oci_reference("r.io/UP").expect_err("upper case");
        assert!(err.to_string().contains("\"r.io/UP\""), "{err}");
    }

    #[test]
    fn go_url_parse_accepts_and_rejects_like_go() {
        let ok = [
            "",
            "*",
            "repo",
            "a:b",
            "https://example.com/charts",
            "oci://a:b:80/x",
            "mailto:%zz",
            "/a:b",
            "./a:b",
            "x?%zz",
            "http://user:p%40ss@host/",
            "http://[fe80::1%25en0]:8080/",
            "http://[::ffff:1.2.3.4]/",
            "//host/x",
            "///x:y",
        ];
        for raw in ok {
            assert!(gourl::parse(raw).is_ok(), "{raw:?}");
        }
        let bad = [
            ":foo",
            "1a:b/c",
            "http://a:b:80/",
            "http://host:abc/",
            "http://[::1/",
            "http://x[::1]/",
            "http://[1.2.3.4]/",
            "http://[fe80::1%25]/",
            "http://h/%zz",
            "http://h/#%zz",
            "http://ho st/",
            "http://h{/",
            "http://us er@h/",
            "http://h%41/",
            "http://[::1%41]/",
            "http://[1:2:3:4:5:6:7:8:9]/",
            "http://[1::2::3]/",
            "a\tb",
        ];
        for raw in bad {
            assert!(gourl::parse(raw).is_err(), "{raw:?}");
        }
    }

    #[test]
    fn netip_parse_addr_follows_go() {
        let cases: [(&str, Option<bool>); 16] = [
            ("1.2.3.4", Some(true)),
            ("01.2.3.4", None),
            ("1.2.3", None),
            ("1.2.3.256", None),
            ("::", Some(false)),
            ("::1", Some(false)),
            ("1::", Some(false)),
            ("1:2:3:4:5:6:7:8", Some(false)),
            ("1:2:3:4:5:6:7::", Some(false)),
            ("1:2:3:4:5:6:7:8::", None),
            ("::ffff:1.2.3.4", Some(false)),
            ("1:2:3:4:5:6:1.2.3.4", Some(false)),
            ("12345::", None),
            ("fe80::1%eth0", Some(false)),
            ("fe80::1%", None),
            ("%eth0", None),
        ];
        for (input, want) in cases {
            assert_eq!(netip::parse_addr(input.as_bytes()), want, "{input}");
        }
    }

    #[test]
    fn go_to_lower_differs_from_full_mapping_only_at_u0130() {
        for c in (0..=0x10ffffu32).filter_map(char::from_u32) {
            let full: String = c.to_lowercase().collect();
            if full.chars().count() != 1 {
                assert_eq!(c, '\u{130}');
            }
        }
        assert_eq!(go_to_lower("ΣΑΣ"), "σασ"); // no final-sigma rule
    }

    #[test]
    fn repo_url_borrows_as_str_for_map_lookups() {
        let mut map = std::collections::HashMap::new();
        map.insert(normalize_image("docker.io/library/nginx"), 1);
        assert_eq!(map.get("nginx"), Some(&1));
        assert_eq!(normalize_image("nginx").to_string(), "nginx");
        assert_eq!(normalize_image("nginx").as_ref(), "nginx");
    }

    #[test]
    fn normalization_is_not_idempotent_for_nested_docker_hub_and_oci_forms() {
        // Counterexamples in Kargo's own semantics: a Docker Hub result can itself still
        // normalize (its first component looks like a registry, or it starts with library/),
        // and a doubled oci:// prefix loses one prefix per application.
        let image_cases = [
            ("docker.io/docker.io/xx", "docker.io/xx", "xx"),
            ("library/library/xx", "library/xx", "xx"),
        ];
        for (input, once, twice) in image_cases {
            assert_eq!(image(input), once);
            assert_eq!(image(once), twice);
        }
        assert_eq!(chart("oci://oci://quay.io/x/yy"), "oci://quay.io/x/yy");
        assert_eq!(chart("oci://quay.io/x/yy"), "quay.io/x/yy");
    }

    /// Whether `once` (a normalization result) is one of the documented non-idempotent forms.
    fn known_non_idempotent(once: &str) -> bool {
        let hub_like = parse_image_reference(&sanitize(&go_to_lower(once))).is_ok_and(|r| {
            let first = once.split('/').next().unwrap_or("");
            (r.registry() == DOCKER_HUB || r.registry() == "registry-1.docker.io")
                && (once.starts_with("library/")
                    || first.contains('.')
                    || first.contains(':')
                    || first == "localhost")
        });
        hub_like || once.starts_with("oci://")
    }

    fn plausible_reference() -> impl Strategy<Value = String> {
        let registry = prop::sample::select(vec![
            "",
            "docker.io/",
            "index.docker.io/",
            "registry-1.docker.io/",
            "quay.io/",
            "ghcr.io/",
            "localhost:5000/",
            "example.com:443/",
            "oci://quay.io/",
            "OCI://ghcr.io/",
        ]);
        let component = "[a-z0-9]{2,8}".prop_filter("not library", |c| c != "library");
        let path = prop::collection::vec(component, 1..4).prop_map(|c| c.join("/"));
        let suffix = prop::sample::select(vec![
            String::new(),
            ":latest".to_owned(),
            ":v1.2.3".to_owned(),
            format!("@sha256:{}", "ab".repeat(32)),
        ]);
        let pad = prop::sample::select(vec!["", " ", "\u{feff}", "\u{200b}", "\t", "\u{a0}"]);
        (
            pad.clone(),
            registry,
            any::<bool>(),
            path,
            suffix,
            pad,
            any::<bool>(),
        )
            .prop_map(|(lead, registry, library, path, suffix, trail, upper)| {
                let library = if library && registry.ends_with("docker.io/") {
                    "library/"
                } else {
                    ""
                };
                let s = format!("{lead}{registry}{library}{path}{suffix}{trail}");
                if upper { s.to_uppercase() } else { s }
            })
    }

    /// Strings assembled from the pieces that steer the parsers (prefixes, separators, case).
    fn reference_soup() -> impl Strategy<Value = String> {
        let piece = prop::sample::select(vec![
            "oci://",
            "OCI://",
            "docker.io/",
            "index.docker.io/",
            "library/",
            "localhost",
            "https://",
            "/",
            "//",
            ":",
            ":5000",
            "@",
            "@sha256:",
            "a",
            "bb",
            "Cc",
            ".",
            "-",
            "_",
            " ",
            "%",
            "%41",
            "%zz",
            "[::1]",
            "[",
            "]",
            "?",
            "#",
            "\u{feff}",
            "\u{a0}",
            "\u{130}",
            "\u{212a}",
            "é",
        ]);
        prop::collection::vec(piece, 0..10).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        /// The printable-ASCII fast paths of `sanitize` and `go_to_lower` answer what the
        /// general paths answer.
        #[test]
        fn fast_paths_agree_with_the_general_ones(
            s in prop_oneof!["[ -~]{0,24}", "[ -~\t\n\u{a0}\u{130}\u{200b}\u{feff}É]{0,24}"],
        ) {
            let general = NON_PRINTABLE
                .replace_all(&s, "")
                .trim_matches(char::is_whitespace)
                .to_owned();
            prop_assert_eq!(sanitize(&s), general);
            let lower: String = s
                .chars()
                .flat_map(|c| {
                    if c == '\u{130}' { vec!['i'] } else { c.to_lowercase().collect() }
                })
                .collect();
            prop_assert_eq!(go_to_lower(&s), lower);
        }

        #[test]
        fn normalization_is_idempotent_on_reference_soup_except_documented_forms(s in reference_soup()) {
            let once = image(&s);
            if !known_non_idempotent(&once) {
                prop_assert_eq!(image(&once), once);
            }
            let once = chart(&s);
            if !known_non_idempotent(&once) {
                prop_assert_eq!(chart(&once), once);
            }
        }

        #[test]
        fn normalize_image_is_idempotent_on_plausible_references(s in plausible_reference()) {
            let once = image(&s);
            prop_assert_eq!(image(&once), once);
        }

        #[test]
        fn normalize_chart_is_idempotent_on_plausible_references(s in plausible_reference()) {
            let once = chart(&s);
            prop_assert_eq!(chart(&once), once);
        }

        #[test]
        fn normalize_image_is_idempotent_except_documented_forms(s in any::<String>()) {
            let once = image(&s);
            if !known_non_idempotent(&once) {
                prop_assert_eq!(image(&once), once);
            }
        }

        #[test]
        fn normalize_chart_is_idempotent_except_documented_forms(s in any::<String>()) {
            let once = chart(&s);
            if !known_non_idempotent(&once) {
                prop_assert_eq!(chart(&once), once);
            }
        }

        #[test]
        fn normalization_never_panics_on_reference_like_text(s in "[ -~\u{a0}\u{feff}\u{130}\u{212a}]{0,40}") {
            let _ = image(&s);
            let _ = chart(&s);
            let _ = check_oci_reference(&s);
            let _ = parse_image_reference(&s);
        }
    }
}
