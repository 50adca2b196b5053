//! URL normalization: image and chart normalization, the candidate URLs of a push, and the
//! reference parsers, on any string.
#![no_main]

use libfuzzer_sys::fuzz_target;
use kargo_match::index::candidate_urls;
use kargo_match::urls::{
    check_oci_reference, normalize_chart, normalize_image, parse_image_reference, sanitize,
};

fuzz_target!(|s: &str| {
    let _ = normalize_image(s);
    let _ = normalize_chart(s);
    let urls = candidate_urls(s);
    assert!(
        urls.windows(2).all(|w| w[0] < w[1]),
        "candidates sorted and unique"
    );
    assert!(
        urls.iter().all(|u| !u.as_str().is_empty()),
        "no empty candidate"
    );
    if let Ok(r) = parse_image_reference(s) {
        let _ = (r.registry(), r.repository(), r.identifier());
    }
    let _ = check_oci_reference(s);
    let _ = sanitize(s);
});
