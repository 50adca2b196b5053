//! The Quay payload decoder: any body either decodes or is a `PayloadError`, never a panic,
//! and the qualifiers it yields are sorted, deduplicated and non-empty.
#![no_main]

use libfuzzer_sys::fuzz_target;
use kargo_match::quay::{MAX_BODY_BYTES, Push};

fuzz_target!(|data: &[u8]| {
    // The handler refuses larger bodies (413) before decoding.
    if data.len() > MAX_BODY_BYTES {
        return;
    }
    if let Ok(push) = Push::parse(data) {
        let tags = push.tags();
        assert!(
            tags.windows(2).all(|w| w[0] < w[1]),
            "tags sorted and unique"
        );
        assert!(tags.iter().all(|t| !t.is_empty()), "no empty tag");
        let _ = push.is_test_notification();
    }
});
