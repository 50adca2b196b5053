//! Semver versions and constraints (Masterminds semantics): parsing either, and checking any
//! parsed version against any parsed constraint.
#![no_main]

use libfuzzer_sys::fuzz_target;
use kargo_match::constraint::{Constraints, Version, parse_tag};

fuzz_target!(|input: (&str, &str, bool)| {
    let (version, constraint, strict) = input;
    let lenient = Version::parse(version);
    let _ = Version::parse_strict(version);
    let tag = parse_tag(version, strict);
    if let Ok(v) = &lenient {
        let _ = (
            v.major(),
            v.minor(),
            v.patch(),
            v.prerelease(),
            v.metadata(),
        );
        let _ = v.to_string();
        assert_eq!(v.cmp(v), std::cmp::Ordering::Equal);
    }
    if let Ok(c) = Constraints::parse(constraint) {
        let _ = c.to_string();
        if let Ok(v) = &lenient {
            let _ = c.check(v);
        }
        if let Some(v) = &tag {
            let _ = c.check(v);
        }
    }
});
