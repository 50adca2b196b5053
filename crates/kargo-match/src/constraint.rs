//! Semantic versions and version constraints, with the exact semantics Kargo gets from
//! Masterminds semver v3.5.0 (`github.com/Masterminds/semver/v3`): `NewVersion` (coerce mode),
//! `StrictNewVersion`, `Version.Compare`, `NewConstraint` and `Constraints.Check`, plus Kargo's
//! `pkg/controller/semver.Parse` as [`parse_tag`]. Pure: no I/O, no clock, no environment.
//!
//! This is a port, not a re-design (`kargo-quay-receiver.md` §5.4, §5.6): the regular
//! expressions and the per-operator predicates are Masterminds' own, read from the upstream
//! 3.4/3.5-era `version.go` and `constraints.go`. Recent upstream code parses with hand-written
//! scanners that its differential fuzz tests (`FuzzNewVersionDifferential`,
//! `FuzzNewConstraintDifferential`) hold to those regular expressions, so the expressions are
//! ported, with Go's ASCII `\s` spelled out as `[\t\n\f\r ]`. The length limits (256-byte
//! versions, 512-byte constraints, 32 `||` groups) and the per-group prerelease rule are
//! v3.5.0 behaviour.
//!
//! # Why not the `semver` crate
//!
//! It implements Cargo's requirement language, which reads the same text differently:
//!
//! * a bare `1.2.3` is `^1.2.3` in Cargo (it matches `1.9.0`); here it is `=1.2.3`;
//! * `~1.2.3-beta.2` matches `1.2.4-beta.2` here (a prerelease may satisfy an AND group as soon
//!   as any comparator in it has a prerelease); Cargo only admits prereleases of `1.2.3`;
//! * `>= 1.2, < 2 || 3.x`, hyphen ranges (`1.0 - 2.0`), `=>`/`=<`, `!=` and a `v` prefix are
//!   errors in Cargo, and `semver::Version` rejects `v1.2.3`, `1.2` and `01.2.3`, which
//!   Masterminds' coerce mode (and so Kargo) accepts.
//!
//! # Deliberate differences
//!
//! * `CoerceNewVersion = false`, `DetailedNewVersionErrors` and `Constraints.IncludePrerelease`
//!   are not exposed: Kargo never changes them from their defaults.
//! * Errors are typed ([`VersionError`], [`ConstraintError`]); a bad comparator's error names the
//!   comparator, where Go says only `constraint parser error`.
//! * [`Constraints`] displays the text it was parsed from, not Go's normalised `String()`.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::LazyLock;

use regex::Regex;

/// `MaxVersionLen` (version.go): longer version strings are rejected before any parsing.
const MAX_VERSION_LEN: usize = 256;
/// `MaxConstraintLen` (constraints.go).
const MAX_CONSTRAINT_LEN: usize = 512;
/// `MaxConstraintGroups` (constraints.go): the most `||` groups one constraint may have.
const MAX_CONSTRAINT_GROUPS: usize = 32;

/// Go's `\s` (ASCII only); Rust's `\s` would also match Unicode spaces.
const WS: &str = r"[\t\n\f\r ]";
/// The operator alternation of constraints.go. The order matters: Go's and Rust's engines both
/// report the leftmost-first (Perl-like) match, trying `=` before the empty operator and `>`
/// before `>=` where the rest of the pattern allows either.
const OPS: &str = r"=||!=|>|<|>=|=>|<=|=<|~|~>|\^";
/// `cvRegex`: a possibly partial, possibly wildcarded version inside a constraint. Groups:
/// 1 major, 2 `.minor`, 3 `.patch`, 4 `-prerelease`, 5-6 prerelease, 7-9 metadata. The segment
/// class includes `|`, as Go's does.
const CV: &str = r"v?([0-9|x|X|\*]+)(\.[0-9|x|X|\*]+)?(\.[0-9|x|X|\*]+)?(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?";

/// Compiles one of this module's constant patterns.
fn compile(pattern: &str) -> Regex {
    // Invariant: every pattern is built from the constants above, and every test compiles all
    // of them, so this cannot fail at run time.
    Regex::new(pattern).expect("constant regular expression compiles")
}

/// `looseSemVerRegex` (version.go), anchored: the shape `NewVersion` accepts in coerce mode.
static LOOSE_VERSION: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"^v?([0-9]+)(\.[0-9]+)?(\.[0-9]+)?(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?$",
    )
});
/// `constraintRegex`: one comparator, operator in group 1 and version in group 2.
static COMPARATOR: LazyLock<Regex> =
    LazyLock::new(|| compile(&format!(r"^{WS}*({OPS}){WS}*({CV}){WS}*$")));
/// `constraintRangeRegex`: `A - B`; group 1 is A and group 11 is B.
static HYPHEN_RANGE: LazyLock<Regex> =
    LazyLock::new(|| compile(&format!(r"{WS}*({CV}){WS}+-{WS}+({CV}){WS}*")));
/// `findConstraintRegex`: finds the comparators of an AND group.
static FIND_COMPARATOR: LazyLock<Regex> =
    LazyLock::new(|| compile(&format!(r"({OPS}){WS}*({CV})")));
/// `validConstraintRegex`: a whole AND group, comparators separated by whitespace or a comma.
static VALID_GROUP: LazyLock<Regex> = LazyLock::new(|| {
    compile(&format!(
        r"^({WS}*({OPS}){WS}*({CV}){WS}*)((?:{WS}+|,{WS}*)({OPS}){WS}*({CV}){WS}*)*$"
    ))
});

/// Why a version string was rejected; `Display` follows Masterminds' messages.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum VersionError {
    /// Returned by [`Version::parse_strict`] when the input is empty (`ErrEmptyString`).
    #[error("version string empty")]
    Empty,
    /// Returned when the input is longer than 256 bytes (`ErrVersionTooLong`).
    #[error("version string is too long (max {} bytes)", MAX_VERSION_LEN)]
    TooLong,
    /// Returned when the input does not have the shape of a version (`ErrInvalidSemVer`), e.g.
    /// `foo`, `1.2.3.4`, `V1.0.0`, or fewer than three parts for [`Version::parse_strict`].
    #[error("invalid semantic version")]
    Invalid,
    /// Returned by [`Version::parse_strict`] when a numeric part holds anything but digits
    /// (`ErrInvalidCharacters`), e.g. `v1.2.3` or `1.2.beta`.
    #[error("invalid characters in version")]
    InvalidCharacters,
    /// Returned when a numeric prerelease identifier, or (strict only) a major, minor or patch
    /// number, has a leading zero (`ErrSegmentStartsZero`).
    #[error("version segment starts with 0")]
    SegmentStartsZero,
    /// Returned by [`Version::parse_strict`] when a major, minor or patch part is empty, e.g.
    /// `1..2` (Go reports `strconv`'s "invalid syntax").
    #[error("empty version segment")]
    EmptySegment,
    /// Returned when a major, minor or patch number does not fit in a `u64`.
    #[error("error parsing version segment: {segment} is out of range for a uint64")]
    SegmentOutOfRange {
        /// The digits that overflowed.
        segment: String,
    },
    /// Returned when the prerelease has an empty identifier or a character outside
    /// `[0-9A-Za-z-]` (`ErrInvalidPrerelease`).
    #[error("invalid prerelease string")]
    InvalidPrerelease,
    /// Returned when the build metadata has an empty identifier or a character outside
    /// `[0-9A-Za-z-]` (`ErrInvalidMetadata`).
    #[error("invalid metadata string")]
    InvalidMetadata,
}

/// Why a constraint string was rejected; `Display` follows Masterminds' messages.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ConstraintError {
    /// Returned when the constraint is longer than 512 bytes (`ErrConstraintTooLong`).
    #[error("constraint string is too long (max {} bytes)", MAX_CONSTRAINT_LEN)]
    TooLong,
    /// Returned when the constraint has more than 32 `||` groups (`ErrTooManyConstraintGroups`).
    #[error("too many constraint groups (max {})", MAX_CONSTRAINT_GROUPS)]
    TooManyGroups,
    /// Returned when an AND group (or a comparator in it) does not match the constraint grammar,
    /// including an empty or blank group.
    #[error("improper constraint: {text:?}")]
    Improper {
        /// The offending group, after hyphen ranges were rewritten, as Go reports it.
        text: String,
    },
    /// Returned when a comparator has the right shape but its version cannot be built, e.g.
    /// `1x`, `1.2|3`, a number above `u64::MAX` or a prerelease `01` (Go: `constraint parser
    /// error`).
    #[error("constraint parser error: {comparator:?} does not hold a valid version")]
    InvalidVersion {
        /// The comparator text, operator included.
        comparator: String,
    },
}

/// A parsed semantic version, as Masterminds' `*semver.Version`.
///
/// Equality, ordering and hashing follow `Compare`: major, minor and patch numerically, a
/// version without a prerelease above the same version with one, prerelease identifiers per
/// SemVer 2 (numeric below alphanumeric). Build metadata and the original text are ignored, so
/// `v1.0+a == 1.0.0+b`.
#[derive(Clone, Debug)]
pub struct Version {
    /// Major number.
    major: u64,
    /// Minor number (0 when the input omitted it).
    minor: u64,
    /// Patch number (0 when the input omitted it).
    patch: u64,
    /// Prerelease, without the `-`; empty when absent.
    pre: String,
    /// Build metadata, without the `+`; empty when absent.
    metadata: String,
    /// The text this version was parsed from.
    original: String,
}

impl Version {
    /// Parses leniently, as Masterminds `NewVersion` in its default coerce mode.
    ///
    /// Accepts an optional lowercase `v`, one to three numeric parts (missing ones are 0,
    /// leading zeros allowed), then an optional `-prerelease` and `+metadata`. Numeric
    /// prerelease identifiers must not have leading zeros.
    ///
    /// # Errors
    ///
    /// [`VersionError::TooLong`] over 256 bytes, [`VersionError::Invalid`] for any other
    /// shape, [`VersionError::SegmentOutOfRange`] above `u64::MAX`, and
    /// [`VersionError::SegmentStartsZero`] for a prerelease such as `rc.01`.
    pub fn parse(s: &str) -> Result<Version, VersionError> {
        if s.len() > MAX_VERSION_LEN {
            return Err(VersionError::TooLong);
        }
        let caps = LOOSE_VERSION.captures(s).ok_or(VersionError::Invalid)?;
        let group = |i: usize| caps.get(i).map_or("", |m| m.as_str());
        let number = |i: usize| {
            let text = group(i);
            let digits = text.strip_prefix('.').unwrap_or(text);
            if digits.is_empty() {
                Ok(0)
            } else {
                parse_u64(digits)
            }
        };
        let version = Version {
            major: number(1)?,
            minor: number(2)?,
            patch: number(3)?,
            pre: group(5).to_owned(),
            metadata: group(8).to_owned(),
            original: s.to_owned(),
        };
        if !version.pre.is_empty() {
            validate_prerelease(&version.pre)?;
        }
        if !version.metadata.is_empty() {
            validate_metadata(&version.metadata)?;
        }
        Ok(version)
    }

    /// Parses strictly, as Masterminds `StrictNewVersion`: exactly `MAJOR.MINOR.PATCH`, digits
    /// only without leading zeros, no `v`, then an optional `-prerelease` and `+metadata`.
    ///
    /// # Errors
    ///
    /// Checked in Go's order: [`VersionError::Empty`], [`VersionError::TooLong`],
    /// [`VersionError::Invalid`] (fewer than three parts), [`VersionError::InvalidMetadata`],
    /// prerelease errors, then per part [`VersionError::InvalidCharacters`] and
    /// [`VersionError::SegmentStartsZero`], then [`VersionError::EmptySegment`] or
    /// [`VersionError::SegmentOutOfRange`].
    pub fn parse_strict(s: &str) -> Result<Version, VersionError> {
        if s.is_empty() {
            return Err(VersionError::Empty);
        }
        if s.len() > MAX_VERSION_LEN {
            return Err(VersionError::TooLong);
        }
        let mut parts = s.splitn(3, '.');
        let (Some(major), Some(minor), Some(mut patch)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(VersionError::Invalid);
        };
        let mut metadata = "";
        if let Some((rest, meta)) = patch.split_once('+') {
            validate_metadata(meta)?;
            (patch, metadata) = (rest, meta);
        }
        let mut pre = "";
        if let Some((rest, prerelease)) = patch.split_once('-') {
            validate_prerelease(prerelease)?;
            (patch, pre) = (rest, prerelease);
        }
        for part in [major, minor, patch] {
            if !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(VersionError::InvalidCharacters);
            }
            if part.len() > 1 && part.starts_with('0') {
                return Err(VersionError::SegmentStartsZero);
            }
        }
        let number = |part: &str| {
            if part.is_empty() {
                Err(VersionError::EmptySegment)
            } else {
                parse_u64(part)
            }
        };
        Ok(Version {
            major: number(major)?,
            minor: number(minor)?,
            patch: number(patch)?,
            pre: pre.to_owned(),
            metadata: metadata.to_owned(),
            original: s.to_owned(),
        })
    }

    /// The major number.
    pub fn major(&self) -> u64 {
        self.major
    }

    /// The minor number (0 when the input omitted it).
    pub fn minor(&self) -> u64 {
        self.minor
    }

    /// The patch number (0 when the input omitted it).
    pub fn patch(&self) -> u64 {
        self.patch
    }

    /// The prerelease without its `-`, or `""`.
    pub fn prerelease(&self) -> &str {
        &self.pre
    }

    /// The build metadata without its `+`, or `""`.
    pub fn metadata(&self) -> &str {
        &self.metadata
    }

    /// The exact text this version was parsed from (Go `Original()`), e.g. `v1.2`.
    pub fn original(&self) -> &str {
        &self.original
    }
}

/// Parses a `u64` from ASCII digits (the callers have checked), as Go's `strconv.ParseUint`.
fn parse_u64(digits: &str) -> Result<u64, VersionError> {
    digits.parse().map_err(|_| VersionError::SegmentOutOfRange {
        segment: digits.to_owned(),
    })
}

/// `validIdentifiers`: dot-separated, non-empty identifiers of `[0-9A-Za-z-]`.
fn valid_identifiers(s: &str) -> bool {
    s.split('.').all(|part| {
        !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

/// `validatePrerelease`: valid identifiers, and numeric ones without a leading zero.
fn validate_prerelease(pre: &str) -> Result<(), VersionError> {
    if !valid_identifiers(pre) {
        return Err(VersionError::InvalidPrerelease);
    }
    let leading_zero = |part: &str| {
        part.len() > 1 && part.starts_with('0') && part.bytes().all(|b| b.is_ascii_digit())
    };
    if pre.split('.').any(leading_zero) {
        return Err(VersionError::SegmentStartsZero);
    }
    Ok(())
}

/// `validateMetadata`: valid identifiers; leading zeros are allowed in metadata.
fn validate_metadata(metadata: &str) -> Result<(), VersionError> {
    if valid_identifiers(metadata) {
        Ok(())
    } else {
        Err(VersionError::InvalidMetadata)
    }
}

/// `comparePrerelease`: identifier by identifier; a missing identifier sorts first.
fn compare_prerelease(a: &str, b: &str) -> Ordering {
    let (mut left, mut right) = (a.split('.'), b.split('.'));
    loop {
        match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (l, r) => match compare_pre_part(l.unwrap_or(""), r.unwrap_or("")) {
                Ordering::Equal => {}
                other => return other,
            },
        }
    }
}

/// `comparePrePart`: numbers numerically and below alphanumerics, which compare bytewise.
/// An identifier too large for a `u64` counts as alphanumeric, as in Go.
fn compare_pre_part(s: &str, o: &str) -> Ordering {
    if s == o {
        return Ordering::Equal;
    }
    if s.is_empty() {
        return Ordering::Less;
    }
    if o.is_empty() {
        return Ordering::Greater;
    }
    let number = |t: &str| {
        t.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| t.parse::<u64>().ok())
            .flatten()
    };
    match (number(s), number(o)) {
        (None, None) => s.cmp(o),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        // Equal values with different text need leading zeros, which validation rejects; the
        // text tie-break only keeps the order total.
        (Some(si), Some(oi)) => si.cmp(&oi).then_with(|| s.cmp(o)),
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => compare_prerelease(&self.pre, &other.pre),
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl Hash for Version {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Exactly what `cmp` looks at: equal versions have equal prerelease text.
        (self.major, self.minor, self.patch, &self.pre).hash(state);
    }
}

/// Go `String()`: `MAJOR.MINOR.PATCH[-pre][+meta]`, never a `v`; see [`Version::original`].
impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if !self.pre.is_empty() {
            write!(f, "-{}", self.pre)?;
        }
        if !self.metadata.is_empty() {
            write!(f, "+{}", self.metadata)?;
        }
        Ok(())
    }
}

/// Same as [`Version::parse`] (lenient).
impl FromStr for Version {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Version::parse(s)
    }
}

/// Kargo's `pkg/controller/semver.Parse`: the lenient parse of `tag`, or `None`. When `strict`,
/// `tag` with one leading `v` removed must also pass [`Version::parse_strict`]; the lenient
/// parse is still what is returned, so [`Version::original`] keeps the `v`.
pub fn parse_tag(tag: &str, strict: bool) -> Option<Version> {
    let version = Version::parse(tag).ok()?;
    if strict {
        Version::parse_strict(tag.strip_prefix('v').unwrap_or(tag)).ok()?;
    }
    Some(version)
}

/// The comparison a comparator performs (the `constraintOps` table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// `""` and `=`: equality, or tilde when the version is partial or wildcarded.
    TildeOrEqual,
    /// `!=`.
    NotEqual,
    /// `>`.
    GreaterThan,
    /// `<`.
    LessThan,
    /// `>=` and `=>`.
    GreaterThanEqual,
    /// `<=` and `=<`.
    LessThanEqual,
    /// `~` and `~>`.
    Tilde,
    /// `^`.
    Caret,
}

impl Op {
    /// Maps an operator matched by [`OPS`] to its function and its canonical spelling.
    fn from_text(text: &str) -> Option<(Op, &'static str)> {
        Some(match text {
            "" => (Op::TildeOrEqual, ""),
            "=" => (Op::TildeOrEqual, "="),
            "!=" => (Op::NotEqual, "!="),
            ">" => (Op::GreaterThan, ">"),
            "<" => (Op::LessThan, "<"),
            ">=" => (Op::GreaterThanEqual, ">="),
            "=>" => (Op::GreaterThanEqual, "=>"),
            "<=" => (Op::LessThanEqual, "<="),
            "=<" => (Op::LessThanEqual, "=<"),
            "~" => (Op::Tilde, "~"),
            "~>" => (Op::Tilde, "~>"),
            "^" => (Op::Caret, "^"),
            _ => return None,
        })
    }
}

/// One comparator, such as `>= 1.2` (Go's `constraint`).
#[derive(Clone)]
struct Comparator {
    /// The comparison to perform.
    op: Op,
    /// The operator as written (`origfunc`).
    op_text: &'static str,
    /// The version as written (`orig`), e.g. `1.x`.
    orig: String,
    /// The version compared against; wildcards and missing parts are 0.
    con: Version,
    /// Some part is a wildcard or missing.
    dirty: bool,
    /// The minor part is a wildcard or missing (so is the patch).
    minor_dirty: bool,
    /// Only the patch part is a wildcard or missing.
    patch_dirty: bool,
}

/// Prints Go's `c.string()`, operator then version as written (`>=1.2`), so a `Constraints`
/// debug dump reads like the constraint.
impl fmt::Debug for Comparator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.op_text, self.orig)
    }
}

/// `parseConstraint`: one comparator text (leading/trailing whitespace allowed).
fn parse_comparator(c: &str) -> Result<Comparator, ConstraintError> {
    if c.is_empty() {
        // Unreachable through `Constraints::parse` (the group regex needs a version), kept as
        // in Go: an empty comparator is the wildcard `*`.
        return Ok(Comparator {
            op: Op::TildeOrEqual,
            op_text: "",
            orig: String::new(),
            con: Version::parse("0.0.0").map_err(|_| invalid_version(c))?,
            dirty: true,
            minor_dirty: false,
            patch_dirty: false,
        });
    }
    let improper = || ConstraintError::Improper { text: c.to_owned() };
    let caps = COMPARATOR.captures(c).ok_or_else(improper)?;
    let group = |i: usize| caps.get(i).map_or("", |m| m.as_str());
    let (op, op_text) = Op::from_text(group(1)).ok_or_else(improper)?;
    let orig = group(2);
    let (major, minor, patch, pre) = (group(3), group(4), group(5), group(6));
    // Go: `isX(strings.TrimPrefix(m[4], ".")) || m[4] == ""`; a dirty version drops metadata.
    let wild_or_missing = |s: &str| s.is_empty() || is_x(s.strip_prefix('.').unwrap_or(s));
    let (ver, dirty, minor_dirty, patch_dirty) = if wild_or_missing(major) {
        (format!("0.0.0{pre}"), true, false, false)
    } else if wild_or_missing(minor) {
        (format!("{major}.0.0{pre}"), true, true, false)
    } else if wild_or_missing(patch) {
        (format!("{major}{minor}.0{pre}"), true, false, true)
    } else {
        (orig.to_owned(), false, false, false)
    };
    let con = Version::parse(&ver).map_err(|_| invalid_version(c))?;
    Ok(Comparator {
        op,
        op_text,
        orig: orig.to_owned(),
        con,
        dirty,
        minor_dirty,
        patch_dirty,
    })
}

/// [`ConstraintError::InvalidVersion`] for comparator text `c`.
fn invalid_version(c: &str) -> ConstraintError {
    ConstraintError::InvalidVersion {
        comparator: c.to_owned(),
    }
}

/// `isX`: a whole-segment wildcard.
fn is_x(s: &str) -> bool {
    matches!(s, "x" | "X" | "*")
}

impl Comparator {
    /// The predicate of `c.op` (Go's `*Pred` functions). A prerelease `v` fails unless the AND
    /// group admits prereleases (`include_pre`).
    fn matches(&self, v: &Version, include_pre: bool) -> bool {
        if !v.pre.is_empty() && !include_pre {
            return false;
        }
        let con = &self.con;
        match self.op {
            Op::TildeOrEqual if self.dirty => self.tilde(v),
            Op::TildeOrEqual => v == con,
            Op::NotEqual => self.not_equal(v),
            Op::GreaterThan => self.greater_than(v),
            Op::LessThan => v < con,
            Op::GreaterThanEqual => v >= con,
            Op::LessThanEqual => self.less_than_equal(v),
            Op::Tilde => self.tilde(v),
            Op::Caret => self.caret(v),
        }
    }

    /// `notEqualPred`: `!=4.x` excludes all of 4, `!=4.1` all of 4.1.
    fn not_equal(&self, v: &Version) -> bool {
        let con = &self.con;
        if self.dirty {
            if con.major != v.major {
                return true;
            }
            if con.minor != v.minor && !self.minor_dirty {
                return true;
            } else if self.minor_dirty {
                return false;
            } else if con.patch != v.patch && !self.patch_dirty {
                return true;
            } else if self.patch_dirty {
                return (!v.pre.is_empty() || !con.pre.is_empty())
                    && compare_prerelease(&v.pre, &con.pre) != Ordering::Equal;
            }
        }
        v != con
    }

    /// `greaterThanPred`: `>11` needs 12+, `>11.1` needs 11.2+.
    fn greater_than(&self, v: &Version) -> bool {
        let con = &self.con;
        if !self.dirty {
            return v > con;
        }
        match v.major.cmp(&con.major) {
            Ordering::Greater => true,
            Ordering::Less => false,
            Ordering::Equal if self.minor_dirty => false,
            Ordering::Equal if self.patch_dirty => v.minor > con.minor,
            Ordering::Equal => v > con,
        }
    }

    /// `lessThanEqualPred`: `<=1.1` admits every 1.1.z, `<=1.x` every 1.y.z.
    fn less_than_equal(&self, v: &Version) -> bool {
        let con = &self.con;
        if !self.dirty {
            return v <= con;
        }
        !(v.major > con.major || (v.major == con.major && v.minor > con.minor && !self.minor_dirty))
    }

    /// `tildePred`: `~1.2.3` is `>=1.2.3 <1.3.0`, `~1` is `>=1.0.0 <2.0.0`, `~0.0.0` is any.
    fn tilde(&self, v: &Version) -> bool {
        let con = &self.con;
        if v < con {
            return false;
        }
        if (con.major, con.minor, con.patch) == (0, 0, 0) && !self.minor_dirty && !self.patch_dirty
        {
            return true;
        }
        v.major == con.major && (v.minor == con.minor || self.minor_dirty)
    }

    /// `caretPred`: `^1.2.3` is `>=1.2.3 <2.0.0`, `^0.2.3` is `>=0.2.3 <0.3.0`, `^0.0.3` is
    /// `=0.0.3`, `^0.0` is `<0.1.0`, `^0` is `<1.0.0`.
    fn caret(&self, v: &Version) -> bool {
        let con = &self.con;
        if v < con {
            return false;
        }
        if con.major > 0 || self.minor_dirty {
            return v.major == con.major;
        }
        if v.major > 0 {
            return false;
        }
        if con.minor > 0 || self.patch_dirty {
            return v.minor == con.minor;
        }
        if v.minor > 0 {
            return false;
        }
        con.patch == v.patch
    }
}

/// One `||` alternative: comparators that must all hold.
#[derive(Clone, Debug)]
struct Group {
    /// The ANDed comparators, in order.
    comparators: Vec<Comparator>,
    /// Some comparator has a prerelease, so prerelease versions may satisfy this group.
    contains_pre: bool,
}

/// A parsed Masterminds constraint such as `>= 1.2, < 2 || ^3.0.0-0` (Go's `*semver.Constraints`).
///
/// Cloning copies the parsed form; [`Display`](fmt::Display) and [`Constraints::as_str`] give
/// the text it was parsed from.
#[derive(Clone, Debug)]
pub struct Constraints {
    /// The text passed to [`Constraints::parse`].
    original: String,
    /// The `||` alternatives, in order.
    groups: Vec<Group>,
}

impl Constraints {
    /// Parses a constraint, as Masterminds `NewConstraint`.
    ///
    /// `||` separates alternatives; inside one, comparators separated by whitespace and/or a
    /// comma must all hold; `A - B` means `>= A, <= B`. Operators: `=`, `!=`, `>`, `<`, `>=`,
    /// `=>`, `<=`, `=<`, `~`, `~>`, `^` or none (equality). Versions may have a `v`, be partial
    /// (`1.2`) and use `x`, `X` or `*` wildcards. An empty string is an error (Kargo treats an
    /// absent constraint as "no constraint" before getting here).
    ///
    /// ```
    /// use kargo_match::constraint::{Constraints, Version};
    ///
    /// let v = |s| Version::parse(s).unwrap();
    ///
    /// // Cargo reads a bare `1.2.3` as `^1.2.3`; Masterminds (and so Kargo) as `=1.2.3`.
    /// let exact = Constraints::parse("1.2.3")?;
    /// assert!(exact.check(&v("1.2.3")));
    /// assert!(!exact.check(&v("1.3.0")));
    ///
    /// // `||`, spaced operators and `v`-prefixed partial versions, all errors in Cargo.
    /// let either = Constraints::parse(">= v1.2, < 2 || 3.x")?;
    /// assert!(either.check(&v("1.9.0")) && either.check(&v("3.4.5")));
    ///
    /// // A prerelease matches only when the AND group itself mentions one.
    /// assert!(!Constraints::parse("^1.0.0")?.check(&v("1.2.3-rc.1")));
    /// assert!(Constraints::parse("^1.0.0-0")?.check(&v("1.2.3-rc.1")));
    /// # Ok::<(), kargo_match::constraint::ConstraintError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConstraintError::TooLong`] over 512 bytes, [`ConstraintError::TooManyGroups`] over 32
    /// alternatives, [`ConstraintError::Improper`] for text outside the grammar, and
    /// [`ConstraintError::InvalidVersion`] for a well-shaped comparator whose version is not
    /// one (e.g. `1x`).
    pub fn parse(s: &str) -> Result<Constraints, ConstraintError> {
        if s.len() > MAX_CONSTRAINT_LEN {
            return Err(ConstraintError::TooLong);
        }
        let rewritten = rewrite_range(s);
        let alternatives: Vec<&str> = rewritten.split("||").collect();
        if alternatives.len() > MAX_CONSTRAINT_GROUPS {
            return Err(ConstraintError::TooManyGroups);
        }
        let mut groups = Vec::with_capacity(alternatives.len());
        for text in alternatives {
            if !VALID_GROUP.is_match(text) {
                return Err(ConstraintError::Improper {
                    text: text.to_owned(),
                });
            }
            let mut atoms: Vec<&str> = FIND_COMPARATOR
                .find_iter(text)
                .map(|m| m.as_str())
                .collect();
            if atoms.is_empty() {
                atoms.push(text);
            }
            let comparators = atoms
                .into_iter()
                .map(parse_comparator)
                .collect::<Result<Vec<_>, _>>()?;
            let contains_pre = comparators.iter().any(|c| !c.con.pre.is_empty());
            groups.push(Group {
                comparators,
                contains_pre,
            });
        }
        Ok(Constraints {
            original: s.to_owned(),
            groups,
        })
    }

    /// Whether `v` satisfies some `||` alternative, as Masterminds `Check`. A prerelease `v`
    /// can satisfy an alternative only if one of its comparators has a prerelease.
    pub fn check(&self, v: &Version) -> bool {
        self.check_with(v, false)
    }

    /// `Check` with Go's `IncludePrerelease` field set to `include_pre` (tests use `true`).
    fn check_with(&self, v: &Version, include_pre: bool) -> bool {
        self.groups.iter().any(|g| {
            g.comparators
                .iter()
                .all(|c| c.matches(v, include_pre || g.contains_pre))
        })
    }

    /// The text this constraint was parsed from, e.g. for "tag v2.0.0 does not satisfy ^1.0.0".
    pub fn as_str(&self) -> &str {
        &self.original
    }
}

/// The text the constraint was parsed from (not Go's normalised `String()`).
impl fmt::Display for Constraints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

/// `rewriteRange`: each `A - B` becomes `>= A, <= B ` (trailing space included), replacing the
/// first occurrence of the matched text each time, as Go's `strings.Replace(o, m, t, 1)`.
fn rewrite_range(input: &str) -> String {
    let mut out = input.to_owned();
    for caps in HYPHEN_RANGE.captures_iter(input) {
        let (Some(whole), Some(from), Some(to)) = (caps.get(0), caps.get(1), caps.get(11)) else {
            continue;
        };
        let replacement = format!(">= {}, <= {} ", from.as_str(), to.as_str());
        out = out.replacen(whole.as_str(), &replacement, 1);
    }
    out
}

#[cfg(test)]
mod tests {
    //! Parity evidence: every Go table below names the Masterminds (v3.4/v3.5 `version_test.go`,
    //! `constraints_test.go`) or Kargo test it mirrors, rows copied verbatim. Rows that need
    //! `CoerceNewVersion = false`, nil versions or `Validate` messages have no counterpart here.

    use super::*;
    use proptest::prelude::*;
    use std::collections::hash_map::DefaultHasher;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap_or_else(|e| panic!("version {s:?}: {e}"))
    }

    fn c(s: &str) -> Constraints {
        Constraints::parse(s).unwrap_or_else(|e| panic!("constraint {s:?}: {e}"))
    }

    /// Go's `Constraints.String()`: comparators as written, space-joined, groups ` || `-joined.
    fn go_string(cs: &Constraints) -> String {
        let groups: Vec<String> = cs
            .groups
            .iter()
            .map(|g| {
                let atoms: Vec<String> = g.comparators.iter().map(|c| format!("{c:?}")).collect();
                atoms.join(" ")
            })
            .collect();
        groups.join(" || ")
    }

    /// Runs `(constraint, version, want)` rows through `Constraints::parse` + `check_with`,
    /// reporting every failing row at once.
    fn assert_check_rows(go_test: &str, include_pre: bool, rows: &[(&str, &str, bool)]) {
        let failures: Vec<String> = rows
            .iter()
            .filter(|(cs, ver, want)| c(cs).check_with(&v(ver), include_pre) != *want)
            .map(|(cs, ver, want)| format!("{cs:?} vs {ver:?}: want {want}"))
            .collect();
        assert!(failures.is_empty(), "{go_test}: {failures:#?}");
    }

    // version_test.go TestStrictNewVersion: (version, err).
    #[test]
    fn strict_new_version_table() {
        let rows = [
            ("1.2.3", false),
            ("1.2.3-alpha.01", true),
            ("1.2.3+test.01", false),
            ("1.2.3-alpha.-1", false),
            ("v1.2.3", true),
            ("1.0", true),
            ("v1.0", true),
            ("1", true),
            ("v1", true),
            ("1.2", true),
            ("1.2.beta", true),
            ("v1.2.beta", true),
            ("foo", true),
            ("1.2-5", true),
            ("v1.2-5", true),
            ("1.2-beta.5", true),
            ("v1.2-beta.5", true),
            ("\n1.2", true),
            ("\nv1.2", true),
            ("1.2.0-x.Y.0+metadata", false),
            ("v1.2.0-x.Y.0+metadata", true),
            ("1.2.0-x.Y.0+metadata-width-hypen", false),
            ("v1.2.0-x.Y.0+metadata-width-hypen", true),
            ("1.2.3-rc1-with-hypen", false),
            ("v1.2.3-rc1-with-hypen", true),
            ("1.2.3.4", true),
            ("v1.2.3.4", true),
            ("1.2.2147483648", false),
            ("1.2147483648.3", false),
            ("2147483648.3.0", false),
            ("20221209-update-renovatejson-v4", true),
            ("1.1.2+.123", true),
            ("1.0.0-alpha_beta", true),
            ("1.0.0-alpha..", true),
            ("1.0.0-alpha..1", true),
            ("01.1.1", true),
            ("1.01.1", true),
            ("1.1.01", true),
            ("9.8.7+meta+meta", true),
            ("1.2.31----RC-SNAPSHOT.12.09.1--.12+788", true),
            ("1.2.3-0123", true),
            ("1.2.3-0123.0123", true),
            ("+invalid", true),
            ("-invalid", true),
            ("-invalid.01", true),
            ("alpha+beta", true),
            ("1.2.3-alpha_beta+foo", true),
            ("1.0.0-alpha..1", true),
        ];
        for (input, err) in rows {
            assert_eq!(Version::parse_strict(input).is_err(), err, "{input:?}");
        }
    }

    // version_test.go TestNewVersion, subtest "With loose NewVersion": (version, err).
    #[test]
    fn new_version_loose_table() {
        let rows = [
            ("1.2.3", false),
            ("1.2.3-alpha.01", true),
            ("1.2.3+test.01", false),
            ("1.2.3-alpha.-1", false),
            ("v1.2.3", false),
            ("1.0", false),
            ("v1.0", false),
            ("1", false),
            ("v1", false),
            ("1.2.beta", true),
            ("v1.2.beta", true),
            ("foo", true),
            ("1.2-5", false),
            ("v1.2-5", false),
            ("1.2-beta.5", false),
            ("v1.2-beta.5", false),
            ("\n1.2", true),
            ("\nv1.2", true),
            ("1.2.0-x.Y.0+metadata", false),
            ("v1.2.0-x.Y.0+metadata", false),
            ("1.2.0-x.Y.0+metadata-width-hypen", false),
            ("v1.2.0-x.Y.0+metadata-width-hypen", false),
            ("1.2.3-rc1-with-hypen", false),
            ("v1.2.3-rc1-with-hypen", false),
            ("1.2.3.4", true),
            ("v1.2.3.4", true),
            ("1.2.2147483648", false),
            ("1.2147483648.3", false),
            ("2147483648.3.0", false),
            ("12.3.4.1234", true),
            ("12.23.4.1234", true),
            ("12.3.34.1234", true),
            ("20221209-update-renovatejson-v4", false),
            ("1.1.2+.123", true),
            ("1.0.0-alpha_beta", true),
            ("1.0.0-alpha..", true),
            ("1.0.0-alpha..1", true),
            ("9.8.7+meta+meta", true),
            ("1.2.31----RC-SNAPSHOT.12.09.1--.12+788", true),
            ("01.1.1", false),
            ("1.01.1", false),
            ("1.1.01", false),
        ];
        for (input, err) in rows {
            assert_eq!(Version::parse(input).is_err(), err, "{input:?}");
            assert_eq!(input.parse::<Version>().is_err(), err, "FromStr {input:?}");
        }
    }

    // version_test.go TestOriginal.
    #[test]
    fn original_keeps_input() {
        for input in [
            "1.2.3",
            "v1.2.3",
            "1.0",
            "v1.0",
            "1",
            "v1",
            "1.2-5",
            "v1.2-5",
            "1.2-beta.5",
            "v1.2-beta.5",
            "1.2.0-x.Y.0+metadata",
            "v1.2.0-x.Y.0+metadata",
            "1.2.0-x.Y.0+metadata-width-hypen",
            "v1.2.0-x.Y.0+metadata-width-hypen",
            "1.2.3-rc1-with-hypen",
            "v1.2.3-rc1-with-hypen",
        ] {
            assert_eq!(v(input).original(), input);
        }
    }

    // version_test.go TestParts.
    #[test]
    fn parts_are_exposed() {
        let ver = v("1.2.3-beta.1+build.123");
        assert_eq!(
            (ver.major(), ver.minor(), ver.patch()),
            (1, 2, 3),
            "major/minor/patch"
        );
        assert_eq!(ver.prerelease(), "beta.1");
        assert_eq!(ver.metadata(), "build.123");
    }

    // version_test.go TestCoerceString: (version, String()).
    #[test]
    fn display_is_coerced_string() {
        let rows = [
            ("1.2.3", "1.2.3"),
            ("v1.2.3", "1.2.3"),
            ("1.0", "1.0.0"),
            ("v1.0", "1.0.0"),
            ("1", "1.0.0"),
            ("v1", "1.0.0"),
            ("1.2-5", "1.2.0-5"),
            ("v1.2-5", "1.2.0-5"),
            ("1.2-beta.5", "1.2.0-beta.5"),
            ("v1.2-beta.5", "1.2.0-beta.5"),
            ("1.2.0-x.Y.0+metadata", "1.2.0-x.Y.0+metadata"),
            ("v1.2.0-x.Y.0+metadata", "1.2.0-x.Y.0+metadata"),
            (
                "1.2.0-x.Y.0+metadata-width-hypen",
                "1.2.0-x.Y.0+metadata-width-hypen",
            ),
            (
                "v1.2.0-x.Y.0+metadata-width-hypen",
                "1.2.0-x.Y.0+metadata-width-hypen",
            ),
            ("1.2.3-rc1-with-hypen", "1.2.3-rc1-with-hypen"),
            ("v1.2.3-rc1-with-hypen", "1.2.3-rc1-with-hypen"),
        ];
        for (input, want) in rows {
            assert_eq!(v(input).to_string(), want, "{input:?}");
        }
    }

    // version_test.go TestCompare: (v1, v2, Compare).
    #[test]
    fn compare_table() {
        use Ordering::{Equal, Greater, Less};
        let rows = [
            ("1.2.3", "1.5.1", Less),
            ("2.2.3", "1.5.1", Greater),
            ("2.2.3", "2.2.2", Greater),
            ("3.2-beta", "3.2-beta", Equal),
            ("1.3", "1.1.4", Greater),
            ("4.2", "4.2-beta", Greater),
            ("4.2-beta", "4.2", Less),
            ("4.2-alpha", "4.2-beta", Less),
            ("4.2-alpha", "4.2-alpha", Equal),
            ("4.2-beta.2", "4.2-beta.1", Greater),
            ("4.2-beta2", "4.2-beta1", Greater),
            ("4.2-beta", "4.2-beta.2", Less),
            ("4.2-beta", "4.2-beta.foo", Less),
            ("4.2-beta.2", "4.2-beta", Greater),
            ("4.2-beta.foo", "4.2-beta", Greater),
            ("1.2+bar", "1.2+baz", Equal),
            ("1.0.0-beta.4", "1.0.0-beta.-2", Less),
            ("1.0.0-beta.-2", "1.0.0-beta.-3", Less),
            ("1.0.0-beta.-3", "1.0.0-beta.5", Greater),
        ];
        for (a, b, want) in rows {
            assert_eq!(v(a).cmp(&v(b)), want, "{a} vs {b}");
        }
    }

    // version_test.go TestLessThan, TestLessThanEqual, TestGreaterThan, TestGreaterThanEqual,
    // TestEqual (the non-nil rows): (v1, v2, operator, want).
    #[test]
    fn comparison_operator_tables() {
        type Cmp = fn(&Version, &Version) -> bool;
        let (lt, le, gt, ge, eq): (Cmp, Cmp, Cmp, Cmp, Cmp) = (
            |a, b| a < b,
            |a, b| a <= b,
            |a, b| a > b,
            |a, b| a >= b,
            |a, b| a == b,
        );
        let rows: [(&str, &str, Cmp, bool); 21] = [
            ("1.2.3", "1.5.1", lt, true),
            ("2.2.3", "1.5.1", lt, false),
            ("3.2-beta", "3.2-beta", lt, false),
            ("1.2.3", "1.5.1", le, true),
            ("2.2.3", "1.5.1", le, false),
            ("1.5.1", "1.5.1", le, true),
            ("1.2.3", "1.5.1", gt, false),
            ("2.2.3", "1.5.1", gt, true),
            ("3.2-beta", "3.2-beta", gt, false),
            ("3.2.0-beta.1", "3.2.0-beta.5", gt, false),
            ("3.2-beta.4", "3.2-beta.2", gt, true),
            ("7.43.0-SNAPSHOT.99", "7.43.0-SNAPSHOT.103", gt, false),
            ("7.43.0-SNAPSHOT.FOO", "7.43.0-SNAPSHOT.103", gt, true),
            ("7.43.0-SNAPSHOT.99", "7.43.0-SNAPSHOT.BAR", gt, false),
            ("1.2.3", "1.5.1", ge, false),
            ("2.2.3", "1.5.1", ge, true),
            ("1.5.1", "1.5.1", ge, true),
            ("1.2.3", "1.5.1", eq, false),
            ("2.2.3", "1.5.1", eq, false),
            ("3.2-beta", "3.2-beta", eq, true),
            ("3.2-beta+foo", "3.2-beta+bar", eq, true),
        ];
        for (i, (a, b, op, want)) in rows.into_iter().enumerate() {
            assert_eq!(op(&v(a), &v(b)), want, "row {i}: {a} vs {b}");
        }
    }

    // version_test.go TestValidatePrerelease and TestValidateMetadata.
    #[test]
    fn identifier_validation_tables() {
        let pre = [
            ("foo", Ok(())),
            ("alpha.1", Ok(())),
            ("alpha.01", Err(VersionError::SegmentStartsZero)),
            ("foo\u{2603}\u{fe0e}", Err(VersionError::InvalidPrerelease)),
            ("alpha.0-1", Ok(())),
        ];
        for (input, want) in pre {
            assert_eq!(validate_prerelease(input), want, "{input:?}");
        }
        let meta = [
            ("foo", Ok(())),
            ("alpha.1", Ok(())),
            ("alpha.01", Ok(())),
            ("foo\u{2603}\u{fe0e}", Err(VersionError::InvalidMetadata)),
            ("alpha.0-1", Ok(())),
            (
                "al-pha.1Phe70CgWe050H9K1mJwRUqTNQXZRERwLOEg37wpXUb4JgzgaD5YkL52ABnoyiE",
                Ok(()),
            ),
        ];
        for (input, want) in meta {
            assert_eq!(validate_metadata(input), want, "{input:?}");
        }
    }

    #[test]
    fn version_errors_follow_go_order_and_limits() {
        use VersionError as E;
        assert_eq!(Version::parse_strict(""), Err(E::Empty));
        assert_eq!(Version::parse(""), Err(E::Invalid));
        assert_eq!(Version::parse("V1.0.0"), Err(E::Invalid));
        assert_eq!(Version::parse("1.0.0_b"), Err(E::Invalid));
        assert_eq!(Version::parse(" 1.2.3"), Err(E::Invalid));
        assert_eq!(Version::parse("1.2.3-rc.01"), Err(E::SegmentStartsZero));
        let big = "18446744073709551616";
        let out_of_range = Err(E::SegmentOutOfRange {
            segment: big.to_owned(),
        });
        assert_eq!(Version::parse(&format!("1.{big}")), out_of_range);
        assert_eq!(Version::parse_strict(&format!("{big}.0.0")), out_of_range);
        assert_eq!(v("18446744073709551615.0.0").major(), u64::MAX);
        assert_eq!(Version::parse_strict("1..2"), Err(E::EmptySegment));
        assert_eq!(Version::parse_strict("1.2.3+"), Err(E::InvalidMetadata));
        assert_eq!(Version::parse_strict("1.2.3-"), Err(E::InvalidPrerelease));
        assert_eq!(
            Version::parse_strict("01.2.3-a_b"),
            Err(E::InvalidPrerelease)
        );
        assert_eq!(Version::parse_strict("1.2.beta"), Err(E::InvalidCharacters));
        assert_eq!(Version::parse_strict("1.02.3"), Err(E::SegmentStartsZero));
        // MaxVersionLen: 256 bytes parse, 257 do not, whatever the content.
        let at_limit = format!("1.0.0-{}", "a".repeat(250));
        assert_eq!(at_limit.len(), 256);
        assert!(Version::parse(&at_limit).is_ok() && Version::parse_strict(&at_limit).is_ok());
        let over = format!("{at_limit}a");
        assert_eq!(Version::parse(&over), Err(E::TooLong));
        assert_eq!(Version::parse_strict(&over), Err(E::TooLong));
        assert_eq!(
            E::TooLong.to_string(),
            "version string is too long (max 256 bytes)"
        );
    }

    // Kargo pkg/controller/semver TestParse (spec §5.9): (tag, strict, Some((String, Original))).
    #[test]
    fn kargo_parse_table() {
        let rows = [
            ("invalid", true, None),
            ("invalid", false, None),
            ("1", true, None),
            ("1", false, Some(("1.0.0", "1"))),
            ("1.0.0", true, Some(("1.0.0", "1.0.0"))),
            ("1.0.0", false, Some(("1.0.0", "1.0.0"))),
            ("v1.0.0", true, Some(("1.0.0", "v1.0.0"))),
            ("v1.0.0", false, Some(("1.0.0", "v1.0.0"))),
        ];
        for (tag, strict, want) in rows {
            let got = parse_tag(tag, strict);
            let got = got
                .as_ref()
                .map(|sv| (sv.to_string(), sv.original().to_owned()));
            let want = want.map(|(s, o)| (s.to_owned(), o.to_owned()));
            assert_eq!(got, want, "{tag:?} strict={strict}");
        }
        // Only one `v` is trimmed, and the strict check never loosens the lenient one.
        assert!(parse_tag("vv1.0.0", false).is_none());
        assert!(parse_tag("v01.0.0", false).is_some() && parse_tag("v01.0.0", true).is_none());
    }

    // Kargo Test_semverSelector_MatchesTag (spec §5.9), the semver stage: the "non strict
    // semver ignored" row and which tags parse at all.
    #[test]
    fn kargo_semver_selector_tags() {
        assert!(parse_tag("foo", false).is_none());
        assert!(parse_tag("v1.0", true).is_none());
        assert!(parse_tag("v1.0", false).is_some());
        assert!(parse_tag("v1.0.0", false).is_some() && parse_tag("v2.0.0", false).is_some());
    }

    // Kargo `Test_baseSelector_filterSemvers` runs through the chart selector, the function
    // Kargo calls: `select::tests::chart_versions_filter_like_kargo`.

    // constraints_test.go TestParseConstraint: (input, op, con.String(), err).
    #[test]
    fn parse_constraint_table() {
        let rows = [
            (">= 1.2", Some(Op::GreaterThanEqual), "1.2.0"),
            ("1.0", Some(Op::TildeOrEqual), "1.0.0"),
            ("foo", None, ""),
            ("<= 1.2", Some(Op::LessThanEqual), "1.2.0"),
            ("=< 1.2", Some(Op::LessThanEqual), "1.2.0"),
            ("=> 1.2", Some(Op::GreaterThanEqual), "1.2.0"),
            ("v1.2", Some(Op::TildeOrEqual), "1.2.0"),
            ("=1.5", Some(Op::TildeOrEqual), "1.5.0"),
            ("> 1.3", Some(Op::GreaterThan), "1.3.0"),
            ("< 1.4.1", Some(Op::LessThan), "1.4.1"),
            ("< 40.50.10", Some(Op::LessThan), "40.50.10"),
        ];
        for (input, op, con) in rows {
            match (parse_comparator(input), op) {
                (Ok(got), Some(op)) => {
                    assert_eq!(
                        (got.op, got.con.to_string()),
                        (op, con.to_owned()),
                        "{input}"
                    );
                }
                (Err(_), None) => {}
                (got, _) => panic!("{input:?}: unexpected {got:?}"),
            }
        }
    }

    // constraints_test.go TestConstraintCheck: one comparator via parseConstraint, checked with
    // includePre = (the comparator has a prerelease). (constraint, version, check).
    #[test]
    fn constraint_check_table() {
        let rows = [
            ("=2.0.0", "1.2.3", false),
            ("=2.0.0", "2.0.0", true),
            ("=2.0", "1.2.3", false),
            ("=2.0", "2.0.0", true),
            ("=2.0", "2.0.1", true),
            ("4.1", "4.1.0", true),
            ("!=4.1.0", "4.1.0", false),
            ("!=4.1.0", "4.1.1", true),
            ("!=4.1", "4.1.0", false),
            ("!=4.1", "4.1.1", false),
            ("!=4.1", "5.1.0-alpha.1", false),
            ("!=4.1.0", "5.1.0-alpha.1", false),
            ("!=4.1-alpha", "4.1.0", true),
            ("!=4.1", "5.1.0", true),
            ("<11", "0.1.0", true),
            ("<11", "11.1.0", false),
            ("<1.1", "0.1.0", true),
            ("<1.1", "1.1.0", false),
            ("<1.1", "1.1.1", false),
            ("<=11", "1.2.3", true),
            ("<=11", "12.2.3", false),
            ("<=11", "11.2.3", true),
            ("<=1.1", "1.2.3", false),
            ("<=1.1", "0.1.0", true),
            ("<=1.1", "1.1.0", true),
            ("<=1.1", "1.1.1", true),
            (">1.1", "4.1.0", true),
            (">1.1", "1.1.0", false),
            (">0", "0", false),
            (">0", "1", true),
            (">0", "0.0.1-alpha", false),
            (">0.0", "0.0.1-alpha", false),
            (">0-0", "0.0.1-alpha", false),
            (">0.0-0", "0.0.1-alpha", false),
            (">0", "0.0.0-alpha", false),
            (">0-0", "0.0.0-alpha", false),
            (">0.0.0-0", "0.0.0-alpha", true),
            (">1.2.3-alpha.1", "1.2.3-alpha.2", true),
            (">1.2.3-alpha.1", "1.3.3-alpha.2", true),
            (">11", "11.1.0", false),
            (">11.1", "11.1.0", false),
            (">11.1", "11.1.1", false),
            (">11.1", "11.2.1", true),
            (">=11", "11.1.2", true),
            (">=11.1", "11.1.2", true),
            (">=11.1", "11.0.2", false),
            (">=1.1", "4.1.0", true),
            (">=1.1", "1.1.0", true),
            (">=1.1", "0.0.9", false),
            (">=0", "0.0.1-alpha", false),
            (">=0.0", "0.0.1-alpha", false),
            (">=0-0", "0.0.1-alpha", true),
            (">=0.0-0", "0.0.1-alpha", true),
            (">=0", "0.0.0-alpha", false),
            (">=0-0", "0.0.0-alpha", true),
            (">=0.0.0-0", "0.0.0-alpha", true),
            (">=0.0.0-0", "1.2.3", true),
            (">=0.0.0-0", "3.4.5-beta.1", true),
            ("<0", "0.0.0-alpha", false),
            ("<0-z", "0.0.0-alpha", true),
            (">=0", "0", true),
            ("=0", "1", false),
            ("*", "1", true),
            ("*", "4.5.6", true),
            ("*", "1.2.3-alpha.1", false),
            ("*-0", "1.2.3-alpha.1", true),
            ("2.*", "1", false),
            ("2.*", "3.4.5", false),
            ("2.*", "2.1.1", true),
            ("2.1.*", "2.1.1", true),
            ("2.1.*", "2.2.1", false),
            ("", "1", true), // An empty string is treated as * or wild card
            ("", "4.5.6", true),
            ("", "1.2.3-alpha.1", false),
            ("2", "1", false),
            ("2", "3.4.5", false),
            ("2", "2.1.1", true),
            ("2.1", "2.1.1", true),
            ("2.1", "2.2.1", false),
            ("~1.2.3", "1.2.4", true),
            ("~1.2.3", "1.3.4", false),
            ("~1.2", "1.2.4", true),
            ("~1.2", "1.3.4", false),
            ("~1", "1.2.4", true),
            ("~1", "2.3.4", false),
            ("~0.2.3", "0.2.5", true),
            ("~0.2.3", "0.3.5", false),
            ("~1.2.3-beta.2", "1.2.3-beta.4", true),
            // Differs from npm: prereleases are not scoped to the same patch release.
            ("~1.2.3-beta.2", "1.2.4-beta.2", true),
            ("~1.2.3-beta.2", "1.3.4-beta.2", false),
            ("^1.2.3", "1.8.9", true),
            ("^1.2.3", "2.8.9", false),
            ("^1.2.3", "1.2.1", false),
            ("^1.1.0", "2.1.0", false),
            ("^1.2.0", "2.2.1", false),
            ("^1.2.0", "1.2.1-alpha.1", false),
            ("^1.2.0-alpha.0", "1.2.1-alpha.1", true),
            ("^1.2.0-alpha.0", "1.2.1-alpha.0", true),
            ("^1.2.0-alpha.2", "1.2.0-alpha.1", false),
            ("^1.2", "1.8.9", true),
            ("^1.2", "2.8.9", false),
            ("^1", "1.8.9", true),
            ("^1", "2.8.9", false),
            ("^0.2.3", "0.2.5", true),
            ("^0.2.3", "0.5.6", false),
            ("^0.2", "0.2.5", true),
            ("^0.2", "0.5.6", false),
            ("^0.0.3", "0.0.3", true),
            ("^0.0.3", "0.0.4", false),
            ("^0.0", "0.0.3", true),
            ("^0.0", "0.1.4", false),
            ("^0.0", "1.0.4", false),
            ("^0", "0.2.3", true),
            ("^0", "1.1.4", false),
            ("^0.2.3-beta.2", "0.2.3-beta.4", true),
            // Differs from npm, as above.
            ("^0.2.3-beta.2", "0.2.4-beta.2", true),
            ("^0.2.3-beta.2", "0.3.4-beta.2", false),
            ("^0.2.3-beta.2", "0.2.3-beta.2", true),
        ];
        let failures: Vec<String> = rows
            .iter()
            .filter(|(cs, ver, want)| {
                let comparator = parse_comparator(cs).unwrap_or_else(|e| panic!("{cs:?}: {e}"));
                let has_pre = !comparator.con.pre.is_empty();
                comparator.matches(&v(ver), has_pre) != *want
            })
            .map(|(cs, ver, want)| format!("{cs:?} vs {ver:?}: want {want}"))
            .collect();
        assert!(failures.is_empty(), "TestConstraintCheck: {failures:#?}");
    }

    // constraints_test.go TestNewConstraint: (input, ors, ANDs in the first group, err).
    #[test]
    fn new_constraint_table() {
        let rows = [
            (">= 1.1", 1, 1, false),
            (">40.50.60, < 50.70", 1, 2, false),
            ("2.0", 1, 1, false),
            ("v2.3.5-20161202202307-sha.e8fc5e5", 1, 1, false),
            (">= bar", 0, 0, true),
            ("BAR >= 1.2.3", 0, 0, true),
            // Space separated AND.
            (">= 1.2.3 < 2.0", 1, 2, false),
            (">= 1.2.3 < 2.0 || => 3.0 < 4", 2, 2, false),
            // Commas separating AND.
            (">= 1.2.3, < 2.0", 1, 2, false),
            (">= 1.2.3, < 2.0 || => 3.0, < 4", 2, 2, false),
            // The 3 - 4 is broken into 2 by the range rewriting.
            ("3 - 4 || => 3.0, < 4", 2, 2, false),
            // Four parts are an error (Masterminds issue 185).
            ("12.3.4.1234", 0, 0, true),
            ("12.23.4.1234", 0, 0, true),
            ("12.3.34.1234", 0, 0, true),
            ("12.3.34 ~1.2.3", 1, 2, false),
            ("12.3.34~ 1.2.3", 0, 0, true),
            ("1.0.0 - 2.0.0, <=2.0.0", 1, 3, false),
        ];
        for (input, ors, count, err) in rows {
            match Constraints::parse(input) {
                Err(_) if err => {}
                Ok(cs) if !err => {
                    assert_eq!(cs.groups.len(), ors, "{input:?} ors");
                    assert_eq!(cs.groups[0].comparators.len(), count, "{input:?} ANDs");
                }
                got => panic!("{input:?}: unexpected {got:?}"),
            }
        }
    }

    // constraints_test.go TestConstraintsCheck: (constraint, version, check).
    #[test]
    fn constraints_check_table() {
        assert_check_rows(
            "TestConstraintsCheck",
            false,
            &[
                ("*", "1.2.3", true),
                ("~0.0.0", "1.2.3", true),
                ("0.x.x", "1.2.3", false),
                ("0.0.x", "1.2.3", false),
                ("0.0.0", "1.2.3", false),
                ("*", "1.2.3", true),
                ("^0.0.0", "1.2.3", false),
                ("= 2.0", "1.2.3", false),
                ("= 2.0", "2.0.0", true),
                ("4.1", "4.1.0", true),
                ("4.1.x", "4.1.3", true),
                ("1.x", "1.4", true),
                ("!=4.1", "4.1.0", false),
                ("!=4.1-alpha", "4.1.0-alpha", false),
                ("!=4.1-alpha", "4.1.1-alpha", false),
                ("!=4.1-alpha", "4.1.0", true),
                ("!=4.1", "5.1.0", true),
                ("!=4.x", "5.1.0", true),
                ("!=4.x", "4.1.0", false),
                ("!=4.1.x", "4.2.0", true),
                ("!=4.2.x", "4.2.3", false),
                (">1.1", "4.1.0", true),
                (">1.1", "1.1.0", false),
                ("<1.1", "0.1.0", true),
                ("<1.1", "1.1.0", false),
                ("<1.1", "1.1.1", false),
                ("<1.x", "1.1.1", false),
                ("<1.x", "0.1.1", true),
                ("<1.x", "2.0.0", false),
                ("<1.1.x", "1.2.1", false),
                ("<1.1.x", "1.1.500", false),
                ("<1.1.x", "1.0.500", true),
                ("<1.2.x", "1.1.1", true),
                (">=1.1", "4.1.0", true),
                (">=1.1", "4.1.0-beta", false),
                (">=1.1", "1.1.0", true),
                (">=1.1", "0.0.9", false),
                ("<=1.1", "0.1.0", true),
                ("<=1.1", "0.1.0-alpha", false),
                ("<=1.1-a", "0.1.0-alpha", true),
                ("<=1.1", "1.1.0", true),
                ("<=1.x", "1.1.0", true),
                ("<=2.x", "3.0.0", false),
                ("<=1.1", "1.1.1", true),
                ("<=1.1.x", "1.2.500", false),
                ("<=4.5", "3.4.0", true),
                ("<=4.5", "3.7.0", true),
                ("<=4.5", "4.6.3", false),
                (">1.1, <2", "1.1.1", false),
                (">1.1, <2", "1.2.1", true),
                (">1.1, <3", "4.3.2", false),
                (">=1.1, <2, !=1.2.3", "1.2.3", false),
                (">1.1 <2", "1.1.1", false),
                (">1.1 <2", "1.2.1", true),
                (">1.1    <3", "4.3.2", false),
                (">=1.1    <2    !=1.2.3", "1.2.3", false),
                (">=1.1, <2, !=1.2.3 || > 3", "4.1.2", true),
                (">=1.1, <2, !=1.2.3 || > 3", "3.1.2", false),
                (">=1.1, <2, !=1.2.3 || >= 3", "3.0.0", true),
                (">=1.1, <2, !=1.2.3 || > 3", "3.0.0", false),
                (">=1.1, <2, !=1.2.3 || > 3", "1.2.3", false),
                (">=1.1 <2 !=1.2.3", "1.2.3", false),
                (">=1.1 <2 !=1.2.3 || > 3", "4.1.2", true),
                (">=1.1 <2 !=1.2.3 || > 3", "3.1.2", false),
                (">=1.1 <2 !=1.2.3 || >= 3", "3.0.0", true),
                (">=1.1 <2 !=1.2.3 || > 3", "3.0.0", false),
                (">=1.1 <2 !=1.2.3 || > 3", "1.2.3", false),
                ("> 1.1, <     2", "1.1.1", false),
                (">   1.1, <2", "1.2.1", true),
                (">1.1, <  3", "4.3.2", false),
                (">= 1.1, <     2, !=1.2.3", "1.2.3", false),
                ("> 1.1 < 2", "1.1.1", false),
                (">1.1 < 2", "1.2.1", true),
                ("> 1.1    <3", "4.3.2", false),
                (">=1.1    < 2    != 1.2.3", "1.2.3", false),
                (">= 1.1, <2, !=1.2.3 || > 3", "4.1.2", true),
                (">= 1.1, <2, != 1.2.3 || > 3", "3.1.2", false),
                (">= 1.1, <2, != 1.2.3 || >= 3", "3.0.0", true),
                (">= 1.1, <2, !=1.2.3 || > 3", "3.0.0", false),
                (">= 1.1, <2, !=1.2.3 || > 3", "1.2.3", false),
                (">= 1.1 <2 != 1.2.3", "1.2.3", false),
                (">= 1.1 <2 != 1.2.3 || > 3", "4.1.2", true),
                (">= 1.1 <2 != 1.2.3 || > 3", "3.1.2", false),
                (">= 1.1 <2 != 1.2.3 || >= 3", "3.0.0", true),
                (">= 1.1 < 2 !=1.2.3 || > 3", "3.0.0", false),
                (">=1.1 < 2 !=1.2.3 || > 3", "1.2.3", false),
                (">= 1.0.0  <= 2.0.0-beta", "1.0.1-beta", true),
                (">= 1.0.0  <= 2.0.0-beta", "1.0.1", true),
                (">= 1.0.0  <= 2.0.0-beta", "3.0.0", false),
                (">= 1.0.0  <= 2.0.0-beta || > 3", "1.0.1-beta", true),
                (">= 1.0.0  <= 2.0.0-beta || > 3", "3.0.1-beta", false),
                (
                    ">= 1.0.0  <= 2.0.0-beta != 1.0.1 || > 3",
                    "1.0.1-beta",
                    true,
                ),
                (
                    ">= 1.0.0  <= 2.0.0-beta != 1.0.1-beta || > 3",
                    "1.0.1-beta",
                    false,
                ),
                (">= 1.0.0-0  <= 2.0.0", "1.0.1-beta", true),
                ("1.1 - 2", "1.1.1", true),
                ("1.5.0 - 4.5", "3.7.0", true),
                ("1.1-3", "4.3.2", false),
                ("^1.1", "1.1.1", true),
                ("^1.1", "4.3.2", false),
                ("^1.x", "1.1.1", true),
                ("^2.x", "1.1.1", false),
                ("^1.x", "2.1.1", false),
                ("^1.x", "1.1.1-beta1", false),
                ("^1.1.2-alpha", "1.2.1-beta1", true),
                ("^1.2.x-alpha", "1.1.1-beta1", false),
                ("^0.0.1", "0.0.1", true),
                ("^0.0.1", "0.3.1", false),
                ("~*", "2.1.1", true),
                ("~1", "2.1.1", false),
                ("~1", "1.3.5", true),
                ("~1", "1.4", true),
                ("~1.x", "2.1.1", false),
                ("~1.x", "1.3.5", true),
                ("~1.x", "1.4", true),
                ("~1.1", "1.1.1", true),
                ("~1.1", "1.1.1-alpha", false),
                ("~1.1-alpha", "1.1.1-beta", true),
                ("~1.1.1-beta", "1.1.1-alpha", false),
                ("~1.1.1-beta", "1.1.1", true),
                ("~1.2.3", "1.2.5", true),
                ("~1.2.3", "1.2.2", false),
                ("~1.2.3", "1.3.2", false),
                ("~1.1", "1.2.3", false),
                ("~1.3", "2.4.5", false),
                // Ranges work in conjunction with other constraints ANDed together.
                ("1.0.0 - 2.0.0 <=2.0.0", "1.5.0", true),
                ("1.0.0 - 2.0.0, <=2.0.0", "1.5.0", true),
            ],
        );
    }

    // constraints_test.go TestConstraintsCheckIncludePrerelease (IncludePrerelease = true).
    #[test]
    fn constraints_check_include_prerelease_table() {
        assert_check_rows(
            "TestConstraintsCheckIncludePrerelease",
            true,
            &[
                // Prereleases that normally would fail.
                (">=1.1", "4.1.0-beta", true),
                (">1.1", "4.1.0-beta", true),
                ("<=1.1", "0.1.0-alpha", true),
                ("<1.1", "0.1.0-alpha", true),
                ("^1.x", "1.1.1-beta1", true),
                ("~1.1", "1.1.1-alpha", true),
                ("*", "1.2.3-alpha", true),
                ("= 2.0", "2.0.1-beta", true),
                // Normal cases.
                ("*", "1.2.3", true),
                ("~0.0.0", "1.2.3", true),
                ("0.x.x", "1.2.3", false),
                ("0.0.x", "1.2.3", false),
                ("0.0.0", "1.2.3", false),
                ("*", "1.2.3", true),
                ("^0.0.0", "1.2.3", false),
                ("= 2.0", "1.2.3", false),
                ("= 2.0", "2.0.0", true),
                ("4.1", "4.1.0", true),
                ("4.1.x", "4.1.3", true),
                ("1.x", "1.4", true),
                ("!=4.1", "4.1.0", false),
                ("!=4.1-alpha", "4.1.0-alpha", false),
                ("!=4.1-alpha", "4.1.1-alpha", false),
                ("!=4.1-alpha", "4.1.0", true),
                ("!=4.1", "5.1.0", true),
                ("!=4.x", "5.1.0", true),
                ("!=4.x", "4.1.0", false),
                ("!=4.1.x", "4.2.0", true),
                ("!=4.2.x", "4.2.3", false),
                (">1.1", "4.1.0", true),
                (">1.1", "1.1.0", false),
                ("<1.1", "0.1.0", true),
                ("<1.1", "1.1.0", false),
                ("<1.1", "1.1.1", false),
                ("<1.x", "1.1.1", false),
                ("<1.x", "0.1.1", true),
                ("<1.x", "2.0.0", false),
                ("<1.1.x", "1.2.1", false),
                ("<1.1.x", "1.1.500", false),
                ("<1.1.x", "1.0.500", true),
                ("<1.2.x", "1.1.1", true),
                (">=1.1", "4.1.0", true),
                (">=1.1", "1.1.0", true),
                (">=1.1", "0.0.9", false),
                ("<=1.1", "0.1.0", true),
                ("<=1.1-a", "0.1.0-alpha", true),
                ("<=1.1", "1.1.0", true),
                ("<=1.x", "1.1.0", true),
                ("<=2.x", "3.0.0", false),
                ("<=1.1", "1.1.1", true),
                ("<=1.1.x", "1.2.500", false),
                ("<=4.5", "3.4.0", true),
                ("<=4.5", "3.7.0", true),
                ("<=4.5", "4.6.3", false),
                (">1.1, <2", "1.1.1", false),
                (">1.1, <2", "1.2.1", true),
                (">1.1, <3", "4.3.2", false),
                (">=1.1, <2, !=1.2.3", "1.2.3", false),
                (">1.1 <2", "1.1.1", false),
                (">1.1 <2", "1.2.1", true),
                (">1.1    <3", "4.3.2", false),
                (">=1.1    <2    !=1.2.3", "1.2.3", false),
                (">=1.1, <2, !=1.2.3 || > 3", "4.1.2", true),
                (">=1.1, <2, !=1.2.3 || > 3", "3.1.2", false),
                (">=1.1, <2, !=1.2.3 || >= 3", "3.0.0", true),
                (">=1.1, <2, !=1.2.3 || > 3", "3.0.0", false),
                (">=1.1, <2, !=1.2.3 || > 3", "1.2.3", false),
                (">=1.1 <2 !=1.2.3", "1.2.3", false),
                (">=1.1 <2 !=1.2.3 || > 3", "4.1.2", true),
                (">=1.1 <2 !=1.2.3 || > 3", "3.1.2", false),
                (">=1.1 <2 !=1.2.3 || >= 3", "3.0.0", true),
                (">=1.1 <2 !=1.2.3 || > 3", "3.0.0", false),
                (">=1.1 <2 !=1.2.3 || > 3", "1.2.3", false),
                ("> 1.1, <     2", "1.1.1", false),
                (">   1.1, <2", "1.2.1", true),
                (">1.1, <  3", "4.3.2", false),
                (">= 1.1, <     2, !=1.2.3", "1.2.3", false),
                ("> 1.1 < 2", "1.1.1", false),
                (">1.1 < 2", "1.2.1", true),
                ("> 1.1    <3", "4.3.2", false),
                (">=1.1    < 2    != 1.2.3", "1.2.3", false),
                (">= 1.1, <2, !=1.2.3 || > 3", "4.1.2", true),
                (">= 1.1, <2, != 1.2.3 || > 3", "3.1.2", false),
                (">= 1.1, <2, != 1.2.3 || >= 3", "3.0.0", true),
                (">= 1.1, <2, !=1.2.3 || > 3", "3.0.0", false),
                (">= 1.1, <2, !=1.2.3 || > 3", "1.2.3", false),
                (">= 1.1 <2 != 1.2.3", "1.2.3", false),
                (">= 1.1 <2 != 1.2.3 || > 3", "4.1.2", true),
                (">= 1.1 <2 != 1.2.3 || > 3", "3.1.2", false),
                (">= 1.1 <2 != 1.2.3 || >= 3", "3.0.0", true),
                (">= 1.1 < 2 !=1.2.3 || > 3", "3.0.0", false),
                (">=1.1 < 2 !=1.2.3 || > 3", "1.2.3", false),
                (">= 1.0.0  <= 2.0.0-beta", "1.0.1-beta", true),
                (">= 1.0.0  <= 2.0.0-beta", "1.0.1", true),
                (">= 1.0.0  <= 2.0.0-beta", "3.0.0", false),
                (">= 1.0.0  <= 2.0.0-beta || > 3", "1.0.1-beta", true),
                (">= 1.0.0  <= 2.0.0-beta || > 3", "3.0.1-beta", false),
                (
                    ">= 1.0.0  <= 2.0.0-beta != 1.0.1 || > 3",
                    "1.0.1-beta",
                    true,
                ),
                (
                    ">= 1.0.0  <= 2.0.0-beta != 1.0.1-beta || > 3",
                    "1.0.1-beta",
                    false,
                ),
                (">= 1.0.0-0  <= 2.0.0", "1.0.1-beta", true),
                ("1.1 - 2", "1.1.1", true),
                ("1.5.0 - 4.5", "3.7.0", true),
                ("1.1-3", "4.3.2", false),
                ("^1.1", "1.1.1", true),
                ("^1.1", "4.3.2", false),
                ("^1.x", "1.1.1", true),
                ("^2.x", "1.1.1", false),
                ("^1.x", "2.1.1", false),
                ("^1.1.2-alpha", "1.2.1-beta1", true),
                ("^1.2.x-alpha", "1.1.1-beta1", false),
                ("^0.0.1", "0.0.1", true),
                ("^0.0.1", "0.3.1", false),
                ("~*", "2.1.1", true),
                ("~1", "2.1.1", false),
                ("~1", "1.3.5", true),
                ("~1", "1.4", true),
                ("~1.x", "2.1.1", false),
                ("~1.x", "1.3.5", true),
                ("~1.x", "1.4", true),
                ("~1.1", "1.1.1", true),
                ("~1.1-alpha", "1.1.1-beta", true),
                ("~1.1.1-beta", "1.1.1-alpha", false),
                ("~1.1.1-beta", "1.1.1", true),
                ("~1.2.3", "1.2.5", true),
                ("~1.2.3", "1.2.2", false),
                ("~1.2.3", "1.3.2", false),
                ("~1.1", "1.2.3", false),
                ("~1.3", "2.4.5", false),
                ("1.0.0 - 2.0.0 <=2.0.0", "1.5.0", true),
                ("1.0.0 - 2.0.0, <=2.0.0", "1.5.0", true),
            ],
        );
    }

    // constraints_test.go TestConstraintsValidate, the (constraint, version, check) table, and
    // its message table: `Validate` returns the same bool as `Check`; messages are not ported,
    // but every message row is a failing check.
    #[test]
    fn constraints_validate_tables() {
        assert_check_rows(
            "TestConstraintsValidate",
            false,
            &[
                ("*", "1.2.3", true),
                ("~0.0.0", "1.2.3", true),
                ("= 2.0", "1.2.3", false),
                ("= 2.0", "2.0.0", true),
                ("4.1", "4.1.0", true),
                ("4.1.x", "4.1.3", true),
                ("1.x", "1.4", true),
                ("!=4.1", "4.1.0", false),
                ("!=4.1", "5.1.0", true),
                ("!=4.x", "5.1.0", true),
                ("!=4.x", "4.1.0", false),
                ("!=4.1.x", "4.2.0", true),
                ("!=4.2.x", "4.2.3", false),
                (">1.1", "4.1.0", true),
                (">1.1", "1.1.0", false),
                ("<1.1", "0.1.0", true),
                ("<1.1", "1.1.0", false),
                ("<1.1", "1.1.1", false),
                ("<1.x", "1.1.1", false),
                ("<2.x", "1.1.1", true),
                ("<1.x", "2.1.1", false),
                ("<1.1.x", "1.2.1", false),
                ("<1.1.x", "1.1.500", false),
                ("<1.2.x", "1.1.1", true),
                (">=1.1", "4.1.0", true),
                (">=1.1", "1.1.0", true),
                (">=1.1", "0.0.9", false),
                ("<=1.1", "0.1.0", true),
                ("<=1.1", "1.1.0", true),
                ("<=1.x", "1.1.0", true),
                ("<=2.x", "3.1.0", false),
                ("<=1.1", "1.1.1", true),
                ("<=1.1.x", "1.2.500", false),
                (">1.1, <2", "1.1.1", false),
                (">1.1, <2", "1.2.1", true),
                (">1.1, <3", "4.3.2", false),
                (">=1.1, <2, !=1.2.3", "1.2.3", false),
                (">=1.1, <2, !=1.2.3 || > 3", "3.1.2", false),
                (">=1.1, <2, !=1.2.3 || > 3", "4.1.2", true),
                (">=1.1, <2, !=1.2.3 || >= 3", "3.0.0", true),
                (">=1.1, <2, !=1.2.3 || > 3", "3.0.0", false),
                (">=1.1, <2, !=1.2.3 || > 3", "1.2.3", false),
                ("1.1 - 2", "1.1.1", true),
                ("1.1-3", "4.3.2", false),
                ("^1.1", "1.1.1", true),
                ("^1.1", "1.1.1-alpha", false),
                ("^1.1.1-alpha", "1.1.1-beta", true),
                ("^1.1.1-beta", "1.1.1-alpha", false),
                ("^1.1", "4.3.2", false),
                ("^1.x", "1.1.1", true),
                ("^2.x", "1.1.1", false),
                ("^1.x", "2.1.1", false),
                ("^0.0.1", "0.1.3", false),
                ("^0.0.1", "0.0.1", true),
                ("~*", "2.1.1", true),
                ("~1", "2.1.1", false),
                ("~1", "1.3.5", true),
                ("~1", "1.3.5-beta", false),
                ("~1.x", "2.1.1", false),
                ("~1.x", "1.3.5", true),
                ("~1.x", "1.3.5-beta", false),
                ("~1.3.6-alpha", "1.3.5-beta", false),
                ("~1.3.5-alpha", "1.3.5-beta", true),
                ("~1.3.5-beta", "1.3.5-alpha", false),
                ("~1.x", "1.4", true),
                ("~1.1", "1.1.1", true),
                ("~1.2.3", "1.2.5", true),
                ("~1.2.3", "1.2.2", false),
                ("~1.2.3", "1.3.2", false),
                ("~1.1", "1.2.3", false),
                ("~1.3", "2.4.5", false),
                // The message table (tests2) and the "!= 1.2.5, ^2, <= 1.1.x" case.
                ("!= 1.2.5, ^2, <= 1.1.x", "1.2.3", false),
                ("2.x", "1.2.3", false),
                ("2", "1.2.3", false),
                ("= 2.0", "1.2.3", false),
                ("!=4.1", "4.1.0", false),
                ("!=4.x", "4.1.0", false),
                ("!=4.2.x", "4.2.3", false),
                (">1.1", "1.1.0", false),
                ("<1.1", "1.1.0", false),
                ("<1.1", "1.1.1", false),
                ("<1.x", "2.1.1", false),
                ("<1.1.x", "1.2.1", false),
                (">=1.1", "0.0.9", false),
                ("<=2.x", "3.1.0", false),
                ("<=1.1", "1.2.1", false),
                ("<=1.1.x", "1.2.500", false),
                (">1.1, <3", "4.3.2", false),
                (">=1.1, <2, !=1.2.3", "1.2.3", false),
                (">=1.1, <2, !=1.2.3 || > 3", "3.0.0", false),
                (">=1.1, <2, !=1.2.3 || > 3", "1.2.3", false),
                ("1.1 - 3", "4.3.2", false),
                ("^1.1", "4.3.2", false),
                ("^1.12.7", "1.6.6", false),
                ("^2.x", "1.1.1", false),
                ("^1.x", "2.1.1", false),
                ("^0.2", "0.3.0", false),
                ("^0.2", "0.1.1", false),
                ("^0.0.3", "0.1.1", false),
                ("^0.0.3", "0.0.4", false),
                ("^0.0.3", "0.0.2", false),
                ("~1", "2.1.2", false),
                ("~1.x", "2.1.1", false),
                ("~1.2.3", "1.2.2", false),
                ("~1.2.3", "1.3.2", false),
                ("~1.1", "1.2.3", false),
                ("~1.3", "2.4.5", false),
                ("> 1.2.3", "1.2.3-beta.1", false),
            ],
        );
    }

    // constraints_test.go TestConstraintsValidateIncludePrerelease (IncludePrerelease = true),
    // including its message table's four prerelease rows.
    #[test]
    fn constraints_validate_include_prerelease_table() {
        assert_check_rows(
            "TestConstraintsValidateIncludePrerelease",
            true,
            &[
                ("^1.1", "1.1.1-alpha", true),
                ("~1", "1.3.5-beta", true),
                ("~1.x", "1.3.5-beta", true),
                (">=1.1", "4.1.0-beta", true),
                (">1.1", "4.1.0-beta", true),
                ("<=1.1", "0.1.0-alpha", true),
                ("<1.1", "0.1.0-alpha", true),
                ("^1.x", "1.1.1-beta1", true),
                ("~1.1", "1.1.1-alpha", true),
                ("*", "1.2.3-alpha", true),
                ("= 2.0", "2.0.1-beta", true),
                ("*", "1.2.3", true),
                ("~0.0.0", "1.2.3", true),
                ("= 2.0", "1.2.3", false),
                ("= 2.0", "2.0.0", true),
                ("4.1", "4.1.0", true),
                ("4.1.x", "4.1.3", true),
                ("1.x", "1.4", true),
                ("!=4.1", "4.1.0", false),
                ("!=4.1", "5.1.0", true),
                ("!=4.x", "5.1.0", true),
                ("!=4.x", "4.1.0", false),
                ("!=4.1.x", "4.2.0", true),
                ("!=4.2.x", "4.2.3", false),
                (">1.1", "4.1.0", true),
                (">1.1", "1.1.0", false),
                ("<1.1", "0.1.0", true),
                ("<1.1", "1.1.0", false),
                ("<1.1", "1.1.1", false),
                ("<1.x", "1.1.1", false),
                ("<2.x", "1.1.1", true),
                ("<1.x", "2.1.1", false),
                ("<1.1.x", "1.2.1", false),
                ("<1.1.x", "1.1.500", false),
                ("<1.2.x", "1.1.1", true),
                (">=1.1", "4.1.0", true),
                (">=1.1", "1.1.0", true),
                (">=1.1", "0.0.9", false),
                ("<=1.1", "0.1.0", true),
                ("<=1.1", "1.1.0", true),
                ("<=1.x", "1.1.0", true),
                ("<=2.x", "3.1.0", false),
                ("<=1.1", "1.1.1", true),
                ("<=1.1.x", "1.2.500", false),
                (">1.1, <2", "1.1.1", false),
                (">1.1, <2", "1.2.1", true),
                (">1.1, <3", "4.3.2", false),
                (">=1.1, <2, !=1.2.3", "1.2.3", false),
                (">=1.1, <2, !=1.2.3 || > 3", "3.1.2", false),
                (">=1.1, <2, !=1.2.3 || > 3", "4.1.2", true),
                (">=1.1, <2, !=1.2.3 || >= 3", "3.0.0", true),
                (">=1.1, <2, !=1.2.3 || > 3", "3.0.0", false),
                (">=1.1, <2, !=1.2.3 || > 3", "1.2.3", false),
                ("1.1 - 2", "1.1.1", true),
                ("1.1-3", "4.3.2", false),
                ("^1.1", "1.1.1", true),
                ("^1.1.1-alpha", "1.1.1-beta", true),
                ("^1.1.1-beta", "1.1.1-alpha", false),
                ("^1.1", "4.3.2", false),
                ("^1.x", "1.1.1", true),
                ("^2.x", "1.1.1", false),
                ("^1.x", "2.1.1", false),
                ("^0.0.1", "0.1.3", false),
                ("^0.0.1", "0.0.1", true),
                ("~*", "2.1.1", true),
                ("~1", "2.1.1", false),
                ("~1", "1.3.5", true),
                ("~1.x", "2.1.1", false),
                ("~1.x", "1.3.5", true),
                ("~1.3.6-alpha", "1.3.5-beta", false),
                ("~1.3.5-alpha", "1.3.5-beta", true),
                ("~1.3.5-beta", "1.3.5-alpha", false),
                ("~1.x", "1.4", true),
                ("~1.1", "1.1.1", true),
                ("~1.2.3", "1.2.5", true),
                ("~1.2.3", "1.2.2", false),
                ("~1.2.3", "1.3.2", false),
                ("~1.1", "1.2.3", false),
                ("~1.3", "2.4.5", false),
                ("> 1.2.3", "1.2.3-beta.1", false),
                ("< 1.2.3", "1.2.4-beta.1", false),
                (">= 1.2.3", "1.2.3-beta.1", false),
                ("<= 1.2.3", "1.2.4-beta.1", false),
            ],
        );
    }

    // constraints_test.go TestRewriteRange: (input, rewritten).
    #[test]
    fn rewrite_range_table() {
        let rows = [
            ("2 - 3", ">= 2, <= 3 "),
            ("2 - 3, 2 - 3", ">= 2, <= 3 ,>= 2, <= 3 "),
            ("2 - 3, 4.0.0 - 5.1", ">= 2, <= 3 ,>= 4.0.0, <= 5.1 "),
            ("2 - 3 4.0.0 - 5.1", ">= 2, <= 3 >= 4.0.0, <= 5.1 "),
            ("1.0.0 - 2.0.0 <=2.0.0", ">= 1.0.0, <= 2.0.0 <=2.0.0"),
        ];
        for (input, want) in rows {
            assert_eq!(rewrite_range(input), want, "{input:?}");
        }
    }

    // constraints_test.go TestIsX.
    #[test]
    fn is_x_table() {
        for (input, want) in [
            ("A", false),
            ("%", false),
            ("X", true),
            ("x", true),
            ("*", true),
        ] {
            assert_eq!(is_x(input), want, "{input:?}");
        }
    }

    // constraints_test.go TestConstraintString, TestTextMarshalConstraints and
    // TestTextUnmarshalConstraints: Go's String() of the parse (operators and versions as
    // written), which must itself parse.
    #[test]
    fn go_string_tables() {
        let rows = [
            ("*", "*"),
            (">=1.2.3", ">=1.2.3"),
            (">= 1.2.3", ">=1.2.3"),
            (
                "2.x,   >=1.2.3 || >4.5.6, < 5.7",
                "2.x >=1.2.3 || >4.5.6 <5.7",
            ),
            (
                "2.x,   >=1.2.3 || >4.5.6, < 5.7 || >40.50.60, < 50.70",
                "2.x >=1.2.3 || >4.5.6 <5.7 || >40.50.60 <50.70",
            ),
            ("1.2", "1.2"),
            ("1.2.3", "1.2.3"),
            ("<=1.2.3", "<=1.2.3"),
            ("1 <=1.2.3", "1 <=1.2.3"),
            ("1, <=1.2.3", "1 <=1.2.3"),
            (">1, <=1.2.3", ">1 <=1.2.3"),
            ("> 1 , <=1.2.3", ">1 <=1.2.3"),
            (">1 <=1.2.3", ">1 <=1.2.3"),
            ("> 1 <=1.2.3", ">1 <=1.2.3"),
        ];
        for (input, want) in rows {
            let cs = c(input);
            assert_eq!(go_string(&cs), want, "{input:?}");
            assert!(
                Constraints::parse(&go_string(&cs)).is_ok(),
                "{want:?} reparses"
            );
            assert_eq!((cs.as_str(), cs.to_string()), (input, input.to_owned()));
        }
    }

    // FuzzNewVersion / FuzzStrictNewVersion / FuzzNewConstraint seeds and the differential
    // corpora (versionCorpus, constraintCorpus): none may panic.
    #[test]
    fn go_fuzz_seeds_do_not_panic() {
        let seeds = [
            "v1.2.3",
            " ",
            "......",
            "1",
            "1.2.3-beta.1",
            "1.2.3+foo",
            "2.3.4-alpha.1+bar",
            "lorem ipsum",
            "*",
            "!=1.2.3",
            "^4.5",
            "1.0.0 - 2",
            "1.2.3.4.5.6",
            ">= 1",
            "~9.8.7",
            "<= 12.13.14",
            "987654321.123456789.654123789",
            "1.x",
            "2.3.x",
            "9.2-beta.0",
            "",
            "x",
            "X",
            "1.2.x",
            "x.2.3",
            "1.x.3",
            "=1.2.3",
            "= 1.2.3",
            "==1.2.3",
            "~0.0.0",
            "V1.2.3",
            ">=2.1.x, <3.1.0",
            ">= 2.1.x , < 3.1.0",
            ">=2.1.x <3.1.0",
            "~2.0.0 || =3.1.0",
            "1.0.0 -2.0.0",
            "1.0.0- 2.0.0",
            ">=1.2.3-alpha.1",
            "=1.2.3-alpha+meta",
            "1.2.3-",
            "1.2.3+",
            "1.2.3-alpha.",
            "1|2",
            "1.2|3",
            "01.2.3",
            "1.02.3",
            "1.2.3-01",
            ">= 1.2 || < 3, > 4",
            ",1.0",
            "1.0,",
            "1.0,,2.0",
            "1.0<2.0",
            "> = 1.2",
            ">=",
            "~",
            "^",
            "foo",
            "1.2.3 ",
            " 1.2.3",
            "18446744073709551616.0.0",
            "1.18446744073709551616",
            "x.18446744073709551616",
            "|| 1.2.3",
            "1.2.3 ||",
            "1.2.3 || || 2.0.0",
            "*.*.*",
            "1.*.3",
            "1.2.3-alpha.01",
            "1.2.3-alpha..1",
            "1.2.",
            "1.",
            ".1.2",
            "1..2",
            "-1.2.3",
            "+1.2.3",
            "1.2.3-alpha_beta",
            "1.2 .3",
            "\n1.2",
            "0.0.0-0",
            "20221209-update-renovatejson-v4",
            "9.8.7+meta+meta",
            "vv1.2.3",
        ];
        for s in seeds {
            let _ = (
                Version::parse(s),
                Version::parse_strict(s),
                Constraints::parse(s),
            );
            let _ = parse_tag(s, true);
        }
    }

    #[test]
    fn constraint_grammar_edges() {
        let yes = |cs: &str, ver: &str| assert!(c(cs).check(&v(ver)), "{cs:?} should accept {ver}");
        let no = |cs: &str, ver: &str| assert!(!c(cs).check(&v(ver)), "{cs:?} should reject {ver}");
        // `>1.2` is `>=1.3.0`: a dirty `>` compares minors, not the full version.
        no(">1.2", "1.2.9");
        yes(">1.2", "1.3.0");
        no("!=1.x", "1.5.0");
        yes("!=1.x", "2.0.0");
        yes("<=1.2.x", "1.2.99");
        no("<=1.2.x", "1.3.0");
        yes("^0.0", "0.0.9");
        no("^0.0", "0.1.0");
        yes("~0", "0.9.9");
        no("~0", "1.0.0");
        yes(">= 1.2", "1.2.0");
        yes("=> 1.2 , =< 1.4", "1.3.0");
        yes("~> 1.2", "1.2.5");
        yes("v1.2.3 - v1.4", "1.4.7");
        // The range rewrite swallows the blank before `A - B` (its regex starts with `\s*`), so a
        // range may follow a comma but not a blank: `>1 2 - 3` becomes `>1>= 2, <= 3 `.
        yes(">1, 2 - 3", "2.5.0");
        let swallowed = Constraints::parse(">1 2 - 3").map(|_| ());
        let want = ConstraintError::Improper {
            text: ">1>= 2, <= 3 ".to_owned(),
        };
        assert_eq!(swallowed, Err(want));
        no("1.2.3 - 1.4", "1.5.0");
        // Without blanks `1.2-1.4.5` is one version with prerelease `1.4.5`.
        yes("1.2-1.4.5", "1.2.1-rc");
        yes("x", "99.0.0");
        no("x", "1.0.0-rc.1");
        // Quirks kept from Go: `^*` holds 0.0.0 and is only `dirty`, so caretPred ends in
        // `con.Patch() == v.Patch()` and admits 0.0.0 alone; `!=*` only rejects 0.0.0.
        yes("^*", "0.0.0");
        no("^*", "0.0.5");
        no("^*", "0.5.0");
        no("^*", "1.0.0");
        no("!=*", "0.0.0");
        yes("!=*", "3.0.0");
        // Metadata is ignored when comparing.
        yes("=1.2.3+a", "1.2.3+b");
        // The prerelease rule is per AND group: the second alternative admits it.
        yes("^2.0.0 || >=1.0.0-0 <1.5.0", "1.2.0-rc.1");
        no("^2.0.0-0 || ^1.0.0", "1.2.0-rc.1");
    }

    #[test]
    fn constraint_errors_and_limits() {
        use ConstraintError as E;
        let improper = |text: &str| {
            Err(E::Improper {
                text: text.to_owned(),
            })
        };
        assert_eq!(Constraints::parse("").map(|_| ()), improper(""));
        assert_eq!(Constraints::parse("   ").map(|_| ()), improper("   "));
        assert_eq!(Constraints::parse(">= bar").map(|_| ()), improper(">= bar"));
        assert_eq!(Constraints::parse("1.0 ||").map(|_| ()), improper(""));
        let bad_version = |comparator: &str| {
            Err(E::InvalidVersion {
                comparator: comparator.to_owned(),
            })
        };
        assert_eq!(Constraints::parse("1x").map(|_| ()), bad_version("1x"));
        assert_eq!(
            Constraints::parse(">1.2|3").map(|_| ()),
            bad_version(">1.2|3")
        );
        assert_eq!(
            Constraints::parse("1.2.3-01").map(|_| ()),
            bad_version("1.2.3-01")
        );
        let big = "=18446744073709551616";
        assert_eq!(Constraints::parse(big).map(|_| ()), bad_version(big));
        // A comparator version over MaxVersionLen cannot be built.
        let long = format!("1.0.0-{}", "a".repeat(251));
        assert_eq!(Constraints::parse(&long).map(|_| ()), bad_version(&long));
        // MaxConstraintLen and MaxConstraintGroups.
        let at_limit = format!("{}1", " ".repeat(511));
        assert!(Constraints::parse(&at_limit).is_ok());
        assert_eq!(
            Constraints::parse(&format!(" {at_limit}")).map(|_| ()),
            Err(E::TooLong)
        );
        let groups = |n: usize| vec![">=1.0.0"; n].join(" || ");
        assert!(Constraints::parse(&groups(32)).is_ok());
        assert_eq!(
            Constraints::parse(&groups(33)).map(|_| ()),
            Err(E::TooManyGroups)
        );
        assert_eq!(
            E::TooLong.to_string(),
            "constraint string is too long (max 512 bytes)"
        );
        assert_eq!(
            E::TooManyGroups.to_string(),
            "too many constraint groups (max 32)"
        );
        assert_eq!(
            Constraints::parse("foo")
                .map(|_| ())
                .unwrap_err()
                .to_string(),
            r#"improper constraint: "foo""#
        );
    }

    #[test]
    fn debug_shows_comparators_as_written() {
        let dump = format!("{:?}", c(">= 1.2, <2 || ~3.x-0"));
        assert!(
            dump.contains("[>=1.2, <2]") && dump.contains("[~3.x-0]"),
            "{dump}"
        );
    }

    /// A prerelease or metadata identifier; numeric ones never have a leading zero.
    fn identifier() -> impl Strategy<Value = String> {
        prop_oneof![
            "0|[1-9][0-9]{0,4}",
            "[1-9][0-9]{19,20}",
            "[0-9A-Za-z-]{0,3}[A-Za-z-][0-9A-Za-z-]{0,3}",
        ]
    }

    /// Lenient-valid version text: optional `v`, 1-3 parts (maybe zero-padded), pre, metadata.
    fn version_text() -> impl Strategy<Value = String> {
        let number = prop_oneof![0u64..4, any::<u64>()];
        (
            any::<bool>(),
            prop::collection::vec((0usize..2, number), 1..=3),
            prop::collection::vec(identifier(), 0..4),
            prop::collection::vec("[0-9A-Za-z-]{1,5}", 0..3),
        )
            .prop_map(|(v_prefix, parts, pre, meta)| {
                let core: Vec<String> = parts
                    .iter()
                    .map(|(zeros, n)| format!("{}{n}", "0".repeat(*zeros)))
                    .collect();
                let mut s = format!("{}{}", if v_prefix { "v" } else { "" }, core.join("."));
                if !pre.is_empty() {
                    s = format!("{s}-{}", pre.join("."));
                }
                if !meta.is_empty() {
                    s = format!("{s}+{}", meta.join("."));
                }
                s
            })
    }

    /// Small versions, so that generated constraints often accept them.
    fn small_version() -> impl Strategy<Value = Version> {
        (
            0u64..4,
            0u64..4,
            0u64..4,
            prop::sample::select(vec!["", "-0", "-alpha", "-rc.1", "-1"]),
        )
            .prop_map(|(a, b, c, pre)| v(&format!("{a}.{b}.{c}{pre}")))
    }

    /// Constraint text from the grammar: comparators, separators, hyphen ranges, `||`.
    fn constraint_text() -> impl Strategy<Value = String> {
        let part = prop_oneof!["[0-4]", Just("x".to_owned()), Just("*".to_owned())];
        let cv = (
            prop::sample::select(vec!["", "v"]),
            part.clone(),
            prop::option::of(part.clone()),
            prop::option::of(part),
            prop::sample::select(vec!["", "-0", "-alpha", "-rc.1"]),
        )
            .prop_map(|(v, a, b, c, pre)| match (b, c) {
                (Some(b), Some(c)) => format!("{v}{a}.{b}.{c}{pre}"),
                (Some(b), None) => format!("{v}{a}.{b}{pre}"),
                _ => format!("{v}{a}{pre}"),
            });
        let ops = vec![
            "", "=", "!=", ">", "<", ">=", "=>", "<=", "=<", "~", "~>", "^",
        ];
        let comparator = prop_oneof![
            (
                prop::sample::select(ops),
                prop::sample::select(vec!["", " "]),
                cv.clone()
            )
                .prop_map(|(op, ws, cv)| (false, format!("{op}{ws}{cv}"))),
            (cv.clone(), cv).prop_map(|(a, b)| (true, format!("{a} - {b}"))),
        ];
        let group = (
            prop::collection::vec(comparator, 1..4),
            prop::sample::select(vec![" ", ", ", ",", "  "]),
        )
            .prop_map(|(atoms, sep)| {
                let mut text = String::new();
                for (i, (range, atom)) in atoms.iter().enumerate() {
                    if i > 0 {
                        // After a blank a range is improper (see constraint_grammar_edges).
                        text.push_str(if *range && !sep.contains(',') {
                            ", "
                        } else {
                            sep
                        });
                    }
                    text.push_str(atom);
                }
                text
            });
        prop::collection::vec(group, 1..3).prop_map(|groups| groups.join(" || "))
    }

    proptest! {
        // No regression files: a failing case is printed, and tests never write to the tree.
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        // (a) Display re-parses, leniently and strictly, to an equal version that prints the same.
        #[test]
        fn display_round_trips(text in version_text()) {
            let parsed = Version::parse(&text);
            prop_assume!(!matches!(parsed, Err(VersionError::SegmentOutOfRange { .. })));
            let version = parsed.map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
            let shown = version.to_string();
            prop_assume!(shown.len() <= MAX_VERSION_LEN);
            for reparsed in [Version::parse(&shown), Version::parse_strict(&shown)] {
                let reparsed = reparsed.map_err(|e| TestCaseError::fail(format!("{shown:?}: {e}")))?;
                prop_assert_eq!(&reparsed, &version);
                prop_assert_eq!(reparsed.metadata(), version.metadata());
                prop_assert_eq!(reparsed.to_string(), shown.clone());
            }
        }

        // (b) `A || B` accepts every version `A` accepts.
        #[test]
        fn or_only_widens(a in constraint_text(), b in constraint_text(), vs in prop::collection::vec(small_version(), 1..16)) {
            let (Ok(ca), Ok(_)) = (Constraints::parse(&a), Constraints::parse(&b)) else {
                return Err(TestCaseError::reject("A or B does not parse"));
            };
            let joined = format!("{a} || {b}");
            let both = Constraints::parse(&joined)
                .map_err(|e| TestCaseError::fail(format!("{joined:?}: {e}")))?;
            for ver in &vs {
                prop_assert!(!ca.check(ver) || both.check(ver), "{joined:?} lost {ver}");
            }
        }

        // (c) No input panics, including Unicode, long and near-grammar text.
        #[test]
        fn parsers_never_panic(s in prop_oneof![
            any::<String>(),
            ".{0,700}",
            "[0-9vVxX*.|,<>=!~^ +\\-a-z\\t\\u{a0}\\u{3000}]{0,600}",
        ]) {
            let _ = (Version::parse(&s), Version::parse_strict(&s), Constraints::parse(&s));
            let _ = (parse_tag(&s, false), parse_tag(&s, true));
        }

        // (d) `Ord` is a total order consistent with `Eq` and `Hash`.
        #[test]
        fn ord_is_total_and_consistent(a in version_text(), b in version_text(), c in version_text()) {
            let (Ok(a), Ok(b), Ok(c)) = (Version::parse(&a), Version::parse(&b), Version::parse(&c)) else {
                return Err(TestCaseError::reject("out of range"));
            };
            let hash = |x: &Version| { let mut h = DefaultHasher::new(); x.hash(&mut h); h.finish() };
            for (x, y) in [(&a, &b), (&b, &c), (&a, &c), (&a, &a)] {
                prop_assert_eq!(x.cmp(y), y.cmp(x).reverse());
                prop_assert_eq!(x == y, x.cmp(y) == Ordering::Equal);
                prop_assert_eq!(x.partial_cmp(y), Some(x.cmp(y)));
                if x == y {
                    prop_assert_eq!(hash(x), hash(y));
                }
            }
            let mut sorted = [a, b, c];
            sorted.sort();
            prop_assert!(sorted[0] <= sorted[1] && sorted[1] <= sorted[2] && sorted[0] <= sorted[2]);
        }
    }
}
