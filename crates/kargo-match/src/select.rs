//! Tag filtering: Kargo's image and chart selectors reduced to "does this pushed tag interest
//! this subscription?" (reference §5.2–§5.5, §5.7), with the reason when it does not.
//!
//! Pure. A [`Selector`] is built once per subscription (when the index is built, not per
//! request) and answers [`Selector::check`] for a tag. Construction fails exactly where Kargo's
//! `NewSelector` fails (§5.3, §5.5), as a typed [`SelectorError`].

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};

use regex::Regex;

use crate::constraint::{ConstraintError, Constraints, Version, parse_tag};
use crate::urls::{self, ReferenceError};
use crate::warehouse::{ChartSubscription, ImageSubscription};

/// Kargo's image selection strategies (§5.3); the empty string means SemVer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Tags that parse as semantic versions and satisfy the constraint.
    SemVer,
    /// Any tag passing the allow/ignore regexes.
    Lexical,
    /// Any tag passing the allow/ignore regexes.
    NewestBuild,
    /// Exactly the tag named by the subscription's `constraint`.
    Digest,
}

impl Strategy {
    /// Parses `imageSelectionStrategy` exactly (case-sensitive) as Kargo's dispatch does.
    pub fn parse(s: &str) -> Option<Strategy> {
        match s {
            "" | "SemVer" => Some(Strategy::SemVer),
            "Lexical" => Some(Strategy::Lexical),
            "NewestBuild" => Some(Strategy::NewestBuild),
            "Digest" => Some(Strategy::Digest),
            _ => None,
        }
    }
}

/// A compiled subscription filter: one per image or chart subscription.
#[derive(Clone, Debug)]
pub enum Selector {
    /// An image subscription's filter.
    Image(ImageSelector),
    /// A chart subscription's filter: lenient semver plus an optional constraint.
    Chart {
        /// `semverConstraint`, when set.
        constraint: Option<Constraints>,
    },
}

/// The parts of an image subscription that decide whether a tag matches.
#[derive(Clone, Debug)]
pub struct ImageSelector {
    strategy: Strategy,
    allow: Vec<GoRegex>,
    ignore: Vec<GoRegex>,
    constraint: Option<Constraints>,
    strict: bool,
    /// Digest strategy: the tracked tag (`constraint`, compared verbatim).
    tracked_tag: String,
}

/// Why a subscription cannot be turned into a selector (Kargo answers 500 for these).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectorError {
    /// Returned when `imageSelectionStrategy` is not one of Kargo's four.
    #[error("unsupported image selection strategy {0:?}")]
    Strategy(String),
    /// Returned when `platform` is set but has no `/`.
    #[error("platform {0:?} is not of the form os/arch")]
    Platform(String),
    /// Returned when the normalized image URL is not a valid image reference.
    #[error("repository {url:?} is not a valid image reference")]
    Reference {
        /// The normalized URL that failed.
        url: String,
        /// What the reference parser objected to.
        #[source]
        source: ReferenceError,
    },
    /// Returned when the deprecated `allowTags` is set (Kargo refuses it).
    #[error("allowTags is deprecated; use allowTagsRegexes")]
    AllowTagsDeprecated,
    /// Returned when the deprecated `ignoreTags` is set (Kargo refuses it).
    #[error("ignoreTags is deprecated; use ignoreTagsRegexes")]
    IgnoreTagsDeprecated,
    /// Returned when an `allowTagsRegexes` or `ignoreTagsRegexes` entry does not compile.
    #[error("{field} entry {pattern:?} is not a valid regular expression")]
    Regex {
        /// `allowTagsRegexes` or `ignoreTagsRegexes`.
        field: &'static str,
        /// The pattern as written.
        pattern: String,
    },
    /// Returned when `constraint` / `semverConstraint` does not parse.
    #[error("semver constraint {constraint:?} does not parse")]
    Constraint {
        /// The constraint as written.
        constraint: String,
        /// The parser's objection.
        #[source]
        source: ConstraintError,
    },
    /// Returned when a chart `repoURL` starts with none of `http://`, `https://`, `oci://`.
    #[error("chart repository {0:?} must start with http://, https:// or oci://")]
    ChartScheme(String),
}

/// Why a tag does not interest a subscription; displayed in responses and logs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Mismatch {
    /// The tag matched an `ignoreTagsRegexes` entry.
    Ignored {
        /// The pushed tag.
        tag: String,
        /// The ignore regex that matched.
        regex: String,
    },
    /// `allowTagsRegexes` is set and none matched.
    NotAllowed {
        /// The pushed tag.
        tag: String,
        /// The allow regexes.
        regexes: Vec<String>,
    },
    /// SemVer strategy (or chart): the tag is not a (strict) semantic version.
    NotSemver {
        /// The pushed tag.
        tag: String,
        /// Whether `strictSemvers` was in force.
        strict: bool,
    },
    /// The version does not satisfy the constraint.
    Unsatisfied {
        /// The pushed tag.
        tag: String,
        /// The constraint as written.
        constraint: String,
    },
    /// Digest strategy tracks another tag.
    OtherTag {
        /// The pushed tag.
        tag: String,
        /// The tag the subscription tracks.
        tracked: String,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Ignored { tag, regex } => write!(f, "tag {tag} ignored by regex {regex}"),
            Mismatch::NotAllowed { tag, regexes } => {
                write!(
                    f,
                    "tag {tag} matches no allowed regex ({})",
                    regexes.join(", ")
                )
            }
            Mismatch::NotSemver { tag, strict: true } => {
                write!(f, "tag {tag} is not a strict semantic version")
            }
            Mismatch::NotSemver { tag, strict: false } => {
                write!(f, "tag {tag} is not a semantic version")
            }
            Mismatch::Unsatisfied { tag, constraint } => {
                write!(f, "tag {tag} does not satisfy {constraint}")
            }
            Mismatch::OtherTag { tag, tracked } => {
                write!(f, "tag {tag} is not the tracked tag {tracked}")
            }
        }
    }
}

impl Selector {
    /// Builds the selector for an image subscription (Kargo `image.NewSelector`, §5.3).
    ///
    /// # Errors
    /// [`SelectorError`] wherever Kargo's constructor fails, checked in Kargo's order.
    pub fn for_image(sub: &ImageSubscription) -> Result<Selector, SelectorError> {
        let strategy = Strategy::parse(&sub.image_selection_strategy)
            .ok_or_else(|| SelectorError::Strategy(sub.image_selection_strategy.clone()))?;
        if !sub.platform.is_empty() && !sub.platform.contains('/') {
            return Err(SelectorError::Platform(sub.platform.clone()));
        }
        let url = urls::normalize_image(&sub.repo_url);
        urls::parse_image_reference(url.as_str()).map_err(|source| SelectorError::Reference {
            url: url.to_string(),
            source,
        })?;
        let mut selector = ImageSelector {
            strategy,
            allow: Vec::new(),
            ignore: Vec::new(),
            constraint: None,
            strict: sub.strict_semvers,
            tracked_tag: String::new(),
        };
        if strategy == Strategy::Digest {
            selector.tracked_tag = sub.constraint.clone();
            return Ok(Selector::Image(selector));
        }
        selector.allow = compile_all("allowTagsRegexes", &sub.allow_tags_regexes)?;
        selector.ignore = compile_all("ignoreTagsRegexes", &sub.ignore_tags_regexes)?;
        if !sub.allow_tags.is_empty() {
            return Err(SelectorError::AllowTagsDeprecated);
        }
        if !sub.ignore_tags.is_empty() {
            return Err(SelectorError::IgnoreTagsDeprecated);
        }
        if strategy == Strategy::SemVer {
            selector.constraint = parse_constraint(&sub.constraint)?;
        }
        Ok(Selector::Image(selector))
    }

    /// Builds the selector for a chart subscription (Kargo `chart.NewSelector`, §5.5).
    ///
    /// # Errors
    /// [`SelectorError::ChartScheme`] for a `repoURL` that is neither HTTP(S) nor `oci://`
    /// (case-sensitive, untrimmed, like Kargo), [`SelectorError::Constraint`] for a bad
    /// `semverConstraint`, [`SelectorError::Reference`] for an OCI URL that is not a valid
    /// `host/repository` reference.
    pub fn for_chart(sub: &ChartSubscription) -> Result<Selector, SelectorError> {
        let url = sub.repo_url.as_str();
        let oci = url.strip_prefix("oci://");
        if oci.is_none() && !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(SelectorError::ChartScheme(sub.repo_url.clone()));
        }
        let constraint = parse_constraint(&sub.semver_constraint)?;
        if let Some(reference) = oci {
            urls::check_oci_reference(reference).map_err(|source| SelectorError::Reference {
                url: sub.repo_url.clone(),
                source,
            })?;
        }
        Ok(Selector::Chart { constraint })
    }

    /// Whether `tag` interests this subscription (Kargo `MatchesTag` / `MatchesVersion`, §5.4).
    ///
    /// # Errors
    /// The [`Mismatch`] saying why not.
    pub fn check(&self, tag: &str) -> Result<(), Mismatch> {
        match self {
            Selector::Image(s) => s.check(tag),
            Selector::Chart { constraint } => {
                let version = Version::parse(tag).map_err(|_| Mismatch::NotSemver {
                    tag: tag.to_owned(),
                    strict: false,
                })?;
                satisfies(tag, &version, constraint.as_ref())
            }
        }
    }
}

impl ImageSelector {
    fn check(&self, tag: &str) -> Result<(), Mismatch> {
        if self.strategy == Strategy::Digest {
            return if tag == self.tracked_tag {
                Ok(())
            } else {
                Err(Mismatch::OtherTag {
                    tag: tag.to_owned(),
                    tracked: self.tracked_tag.clone(),
                })
            };
        }
        if let Some(re) = self.ignore.iter().find(|re| re.is_match(tag)) {
            return Err(Mismatch::Ignored {
                tag: tag.to_owned(),
                regex: re.as_str().to_owned(),
            });
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|re| re.is_match(tag)) {
            return Err(Mismatch::NotAllowed {
                tag: tag.to_owned(),
                regexes: self.allow.iter().map(|r| r.as_str().to_owned()).collect(),
            });
        }
        if self.strategy != Strategy::SemVer {
            return Ok(());
        }
        let version = parse_tag(tag, self.strict).ok_or_else(|| Mismatch::NotSemver {
            tag: tag.to_owned(),
            strict: self.strict,
        })?;
        satisfies(tag, &version, self.constraint.as_ref())
    }
}

fn satisfies(
    tag: &str,
    version: &Version,
    constraint: Option<&Constraints>,
) -> Result<(), Mismatch> {
    match constraint {
        Some(c) if !c.check(version) => Err(Mismatch::Unsatisfied {
            tag: tag.to_owned(),
            constraint: c.as_str().to_owned(),
        }),
        _ => Ok(()),
    }
}

fn parse_constraint(text: &str) -> Result<Option<Constraints>, SelectorError> {
    if text.is_empty() {
        return Ok(None);
    }
    Constraints::parse(text)
        .map(Some)
        .map_err(|source| SelectorError::Constraint {
            constraint: text.to_owned(),
            source,
        })
}

fn compile_all(field: &'static str, patterns: &[String]) -> Result<Vec<GoRegex>, SelectorError> {
    patterns
        .iter()
        .map(|p| {
            GoRegex::new(p).map_err(|_| SelectorError::Regex {
                field,
                pattern: p.clone(),
            })
        })
        .collect()
}

/// A regular expression compiled with Go's (RE2) meaning, remembering the text as written.
///
/// Rust's `regex` is RE2-like, but its Perl classes `\d \w \s \b` are Unicode-aware where Go's
/// are ASCII (§5.7), and inside a bracket class it reads `[`, `&&`, `~~` and `--` as set
/// operations where Go reads literals. Those spellings and Go's `\Q…\E` quoting are rewritten
/// before compiling. Known remaining differences, rare in tag filters: Rust accepts the `x` flag
/// that Go rejects, and the two engines' size limits differ.
///
/// Each distinct pattern is compiled once and shared (`Arc`) by every selector that uses it,
/// in this index and the next ones built while it is alive: 10,000 Warehouses usually carry a
/// handful of distinct `ignoreTagsRegexes` (see [`shared`]).
#[derive(Clone, Debug)]
pub struct GoRegex {
    re: Arc<Regex>,
    source: Arc<str>,
}

/// The compiled patterns alive somewhere, by pattern as written. Weak: a pattern no selector
/// uses any more is freed with its last selector, and its entry pruned as the map grows.
static SHARED: LazyLock<Mutex<HashMap<Arc<str>, Weak<Regex>>>> = LazyLock::new(Mutex::default);

/// The compiled `pattern`, shared with every live [`GoRegex`] of the same pattern.
fn shared(pattern: &str) -> Result<(Arc<Regex>, Arc<str>), regex::Error> {
    let lock = || SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((key, re)) = lock()
        .get_key_value(pattern)
        .and_then(|(k, w)| Some((k.clone(), w.upgrade()?)))
    {
        return Ok((re, key));
    }
    let re = Arc::new(Regex::new(&rewrite_go_pattern(pattern))?);
    let key: Arc<str> = Arc::from(pattern);
    let mut map = lock();
    if map.len() == map.capacity() {
        // About to grow: drop the entries of patterns nothing uses any more first.
        map.retain(|_, w| w.strong_count() > 0);
    }
    map.insert(key.clone(), Arc::downgrade(&re));
    Ok((re, key))
}

impl GoRegex {
    /// Compiles `pattern` as Go's `regexp.Compile` would read it (or shares the compiled
    /// pattern another live selector already holds).
    ///
    /// # Errors
    /// The `regex` crate's error when the pattern is invalid.
    pub fn new(pattern: &str) -> Result<GoRegex, regex::Error> {
        let (re, source) = shared(pattern)?;
        Ok(GoRegex { re, source })
    }

    /// Unanchored search, like Go's `MatchString`.
    pub fn is_match(&self, haystack: &str) -> bool {
        self.re.is_match(haystack)
    }

    /// The pattern as the user wrote it.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

const PERL_CLASSES: [(char, &str); 6] = [
    ('d', "[0-9]"),
    ('D', "[^0-9]"),
    ('w', "[0-9A-Za-z_]"),
    ('W', "[^0-9A-Za-z_]"),
    ('s', "[\\t\\n\\f\\r ]"),
    ('S', "[^\\t\\n\\f\\r ]"),
];

fn rewrite_go_pattern(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut chars = pattern.chars().peekable();
    let mut in_class = false;
    let mut class_start = false;
    while let Some(c) = chars.next() {
        let at_class_start = std::mem::take(&mut class_start);
        match c {
            '\\' => {
                let Some(next) = chars.next() else {
                    out.push('\\');
                    break;
                };
                if let Some((_, class)) = PERL_CLASSES.iter().find(|(k, _)| *k == next) {
                    out.push_str(class);
                } else if (next == 'b' || next == 'B') && !in_class {
                    out.push_str(if next == 'b' {
                        "(?-u:\\b)"
                    } else {
                        "(?-u:\\B)"
                    });
                } else if next == 'Q' {
                    let mut literal = String::new();
                    while let Some(q) = chars.next() {
                        if q == '\\' && chars.peek() == Some(&'E') {
                            chars.next();
                            break;
                        }
                        literal.push(q);
                    }
                    let escaped = regex::escape(&literal);
                    out.push_str(&escaped);
                } else {
                    out.push('\\');
                    out.push(next);
                }
            }
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                if chars.peek() == Some(&'^') {
                    chars.next();
                    out.push('^');
                }
                class_start = true;
            }
            '[' if chars.peek() == Some(&':') => {
                // A POSIX class like [:alpha:] inside a bracket: the same in both dialects.
                out.push('[');
                for p in chars.by_ref() {
                    out.push(p);
                    if p == ']' {
                        break;
                    }
                }
            }
            ']' if in_class && !at_class_start => {
                in_class = false;
                out.push(']');
            }
            '[' | '&' | '~' if in_class => {
                out.push('\\');
                out.push(c);
            }
            '-' if in_class && chars.peek() == Some(&'-') => out.push_str("-\\"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(strategy: &str) -> ImageSubscription {
        ImageSubscription {
            repo_url: "quay.io/example/repo".into(),
            image_selection_strategy: strategy.into(),
            ..Default::default()
        }
    }

    fn regexes(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn matches(sub: &ImageSubscription, tag: &str) -> bool {
        Selector::for_image(sub).unwrap().check(tag).is_ok()
    }

    /// Kargo `Test_tagBasedSelector_MatchesTag`, for each tag-based strategy.
    #[test]
    fn tag_based_core_matches_kargo_table() {
        let rows: [(&[&str], &[&str], &str, bool); 6] = [
            (&[], &[], "abc", true),
            (&["[a-z]+"], &[], "abc", true),
            (&["[a-z]+"], &[], "123", false),
            (&[], &["^abc$"], "abc", false),
            (&[], &["^abc$"], "123", true),
            (&["[a-z]+"], &["^abc$"], "abc", false),
        ];
        for strategy in ["Lexical", "NewestBuild"] {
            for (allow, ignore, tag, want) in rows {
                let mut sub = image(strategy);
                sub.allow_tags_regexes = regexes(allow);
                sub.ignore_tags_regexes = regexes(ignore);
                assert_eq!(
                    matches(&sub, tag),
                    want,
                    "{strategy} {allow:?} {ignore:?} {tag}"
                );
            }
        }
    }

    /// Kargo `Test_tagBasedSelector_filterTags`.
    #[test]
    fn allow_and_ignore_filter_a_tag_list() {
        let mut sub = image("Lexical");
        sub.allow_tags_regexes = regexes(&[r"v1\."]);
        sub.ignore_tags_regexes = regexes(&[r"^v1\.0\.0$"]);
        let kept: Vec<_> = ["v1.0.0", "v1.1.0", "v2.0.0"]
            .into_iter()
            .filter(|t| matches(&sub, t))
            .collect();
        assert_eq!(kept, ["v1.1.0"]);
    }

    /// Kargo `Test_semverSelector_MatchesTag`.
    #[test]
    fn semver_selector_matches_kargo_table() {
        type Row<'a> = (&'a [&'a str], &'a [&'a str], bool, &'a str, bool);
        let rows: [Row; 8] = [
            (&[], &[], false, "foo", false),
            (&[], &[], true, "v1.0", false),
            (&[], &[], false, "v1.0.0", true),
            (&[r"^v1\."], &[], false, "v1.0.0", true),
            (&[r"^v1\."], &[], false, "v2.0.0", false),
            (&[], &[r"^v2\.0\.0$"], false, "v2.0.0", false),
            (&[], &[r"^v2\.0\.0$"], false, "v1.0.0", true),
            (&[r"^v1\."], &[r"^v1\.0\.0$"], false, "v1.0.0", false),
        ];
        for strategy in ["SemVer", ""] {
            for (allow, ignore, strict, tag, want) in rows {
                let mut sub = image(strategy);
                sub.allow_tags_regexes = regexes(allow);
                sub.ignore_tags_regexes = regexes(ignore);
                sub.strict_semvers = strict;
                assert_eq!(
                    matches(&sub, tag),
                    want,
                    "{allow:?} {ignore:?} {strict} {tag}"
                );
            }
        }
    }

    #[test]
    fn semver_constraint_and_strictness_apply_after_regexes() {
        let mut sub = image("SemVer");
        sub.constraint = "^1.0.0".into();
        assert!(matches(&sub, "v1.2.0"));
        assert!(
            matches(&sub, "1.2"),
            "lenient parse when strictSemvers is false"
        );
        assert!(!matches(&sub, "1.2.3-rc.1"), "prerelease rule");
        sub.strict_semvers = true;
        assert!(!matches(&sub, "1.2"));
        assert!(matches(&sub, "v1.2.3"));
        assert_eq!(
            Selector::for_image(&sub)
                .unwrap()
                .check("v2.0.0")
                .unwrap_err()
                .to_string(),
            "tag v2.0.0 does not satisfy ^1.0.0"
        );
    }

    #[test]
    fn lexical_and_newest_build_accept_non_semver_tags() {
        assert!(matches(&image("Lexical"), "latest"));
        assert!(matches(&image("NewestBuild"), "latest"));
        assert!(!matches(&image("SemVer"), "latest"));
    }

    /// Kargo `TestNewDigestSelector`; MatchesTag is exact and ignores regexes.
    #[test]
    fn digest_tracks_exactly_its_constraint_tag() {
        let mut sub = image("Digest");
        sub.constraint = "latest".into();
        sub.allow_tags_regexes = regexes(&["^never$"]);
        assert!(matches(&sub, "latest"));
        assert!(!matches(&sub, "Latest"));
        assert_eq!(
            Selector::for_image(&sub)
                .unwrap()
                .check("v1")
                .unwrap_err()
                .to_string(),
            "tag v1 is not the tracked tag latest"
        );
    }

    /// Kargo `TestNewSemverSelector`, `TestNewTagBasedSelector`, `TestNewDigestSelector`
    /// and the construction errors of §5.3.
    #[test]
    fn image_selector_construction_errors_match_kargo() {
        let build = |f: &dyn Fn(&mut ImageSubscription)| {
            let mut sub = image("SemVer");
            f(&mut sub);
            Selector::for_image(&sub).err()
        };
        assert!(matches!(
            build(&|s| s.repo_url.clear()),
            Some(SelectorError::Reference { .. })
        ));
        assert!(matches!(
            build(&|s| s.repo_url = "a".into()),
            Some(SelectorError::Reference { .. })
        ));
        assert!(matches!(
            build(&|s| s.image_selection_strategy = "semver".into()),
            Some(SelectorError::Strategy(_))
        ));
        assert!(matches!(
            build(&|s| s.platform = "linux".into()),
            Some(SelectorError::Platform(_))
        ));
        assert!(build(&|s| s.platform = "linux/amd64".into()).is_none());
        assert_eq!(
            build(&|s| s.allow_tags = "x".into()),
            Some(SelectorError::AllowTagsDeprecated)
        );
        assert_eq!(
            build(&|s| s.ignore_tags = vec!["x".into()]),
            Some(SelectorError::IgnoreTagsDeprecated)
        );
        assert!(matches!(
            build(&|s| s.allow_tags_regexes = vec!["[".into()]),
            Some(SelectorError::Regex {
                field: "allowTagsRegexes",
                ..
            })
        ));
        assert!(matches!(
            build(&|s| s.ignore_tags_regexes = vec!["[".into()]),
            Some(SelectorError::Regex {
                field: "ignoreTagsRegexes",
                ..
            })
        ));
        assert!(matches!(
            build(&|s| s.constraint = "invalid".into()),
            Some(SelectorError::Constraint { .. })
        ));
        assert!(build(&|s| s.constraint = "^v1.0.0".into()).is_none());
        // Lexical ignores `constraint`; Digest ignores the regexes and the deprecated fields.
        let mut lexical = image("Lexical");
        lexical.constraint = "invalid".into();
        assert!(Selector::for_image(&lexical).is_ok());
        let mut digest = image("Digest");
        digest.allow_tags = "x".into();
        digest.allow_tags_regexes = vec!["[".into()];
        assert!(Selector::for_image(&digest).is_ok());
    }

    fn chart(url: &str, constraint: &str) -> Result<Selector, SelectorError> {
        Selector::for_chart(&ChartSubscription {
            repo_url: url.into(),
            name: String::new(),
            semver_constraint: constraint.into(),
        })
    }

    /// Kargo `Test_baseSelector_filterSemvers` (the predicate of `MatchesVersion`).
    #[test]
    fn chart_versions_filter_like_kargo() {
        let rows: [(&str, &[&str], &[&str]); 5] = [
            ("^1.2.3", &[], &[]),
            ("=4.5.6", &["1.2.3", "4.5.6", "7.8.9"], &["4.5.6"]),
            (">=4.5.6 <7.8.9", &["1.2.3", "4.5.6", "7.8.9"], &["4.5.6"]),
            (
                "1.2.x-0",
                &["1.2.3-alpha.1", "1.2.3-beta.2", "1.3.0"],
                &["1.2.3-alpha.1", "1.2.3-beta.2"],
            ),
            ("1.2.x", &["1.2.3", "1.2.4", "1.3.0"], &["1.2.3", "1.2.4"]),
        ];
        for (constraint, input, want) in rows {
            let sel = chart("oci://quay.io/example/chart", constraint).unwrap();
            let kept: Vec<&str> = input
                .iter()
                .copied()
                .filter(|v| sel.check(v).is_ok())
                .collect();
            assert_eq!(kept, want, "{constraint}");
        }
    }

    #[test]
    fn chart_versions_are_lenient_semver_without_constraint() {
        let sel = chart("https://charts.example.com", "").unwrap();
        assert!(sel.check("1").is_ok());
        assert!(sel.check("v1.2.3").is_ok());
        assert_eq!(
            sel.check("latest").unwrap_err().to_string(),
            "tag latest is not a semantic version"
        );
    }

    #[test]
    fn chart_selector_construction_errors_match_kargo() {
        assert!(chart("http://x", "").is_ok());
        for bad in [
            "quay.io/a/b",
            "OCI://quay.io/a/b",
            " oci://quay.io/a/b",
            "ftp://x",
        ] {
            assert!(
                matches!(chart(bad, ""), Err(SelectorError::ChartScheme(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            chart("oci://quay.io/a/b", "nope"),
            Err(SelectorError::Constraint { .. })
        ));
        for bad in ["oci://quay.io", "oci://quay.io/A/b", "oci://quay.io/a/b/"] {
            assert!(
                matches!(chart(bad, ""), Err(SelectorError::Reference { .. })),
                "{bad}"
            );
        }
    }

    /// §5.7: Go's `\d \w \s \b` are ASCII-only; bracket classes hold literals.
    #[test]
    fn regexes_have_go_re2_meaning() {
        let m = |p: &str, s: &str| GoRegex::new(p).unwrap().is_match(s);
        assert!(m(r"^\d+$", "123"));
        assert!(!m(r"^\d+$", "١٢٣"), "Arabic-Indic digits are not \\d in Go");
        assert!(!m(r"^\w+$", "é"));
        assert!(m(r"^\W$", "é"));
        assert!(!m(r"\s", "\u{a0}"));
        assert!(!m(r"\s", "\u{b}"), "Go's \\s has no vertical tab");
        assert!(m(r"\bv1", "x-v1"));
        assert!(
            !m(r"é\b", "é"),
            "ASCII word boundary: é is not a word character"
        );
        assert!(m(r"a\b", "aé"), "…so a boundary lies between a and é");
        assert!(m(r"[[]", "["));
        assert!(m(r"^[a&&b]$", "&"));
        assert!(m(r"^[a~~b]$", "~"));
        assert!(m(r"^[\d]$", "7"));
        assert!(m(r"^[^\w]$", "-"));
        assert!(m(r"^[]a]$", "]"));
        assert!(m(r"^[[:alpha:]]+$", "abc"));
        assert!(m(r"^\Qa.b\E$", "a.b"));
        assert!(!m(r"^\Qa.b\E$", "axb"));
        assert!(m(r"unanchored", "an unanchored search"));
        assert!(GoRegex::new("(").is_err());
        assert_eq!(GoRegex::new(r"^\d").unwrap().as_str(), r"^\d");
    }

    #[test]
    fn mismatch_messages_read_as_sentences() {
        let ignored = Mismatch::Ignored {
            tag: "v2.0.0".into(),
            regex: r"^v2\.".into(),
        };
        assert_eq!(ignored.to_string(), r"tag v2.0.0 ignored by regex ^v2\.");
        let not_allowed = Mismatch::NotAllowed {
            tag: "x".into(),
            regexes: vec!["^a".into(), "^b".into()],
        };
        assert_eq!(
            not_allowed.to_string(),
            "tag x matches no allowed regex (^a, ^b)"
        );
    }
}
