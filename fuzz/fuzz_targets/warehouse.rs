//! The Warehouse model parser and everything built on it: any JSON document (an object or a
//! list of objects) parsed as Warehouses, indexed with its selectors compiled (Go regexes,
//! semver constraints), then planned against an arbitrary push.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use kargo_match::index::{Index, candidate_urls};
use kargo_match::warehouse::Warehouse;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    json: &'a [u8],
    namespace: Option<&'a str>,
    docker_url: &'a str,
    tags: Vec<&'a str>,
}

fuzz_target!(|input: Input| {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(input.json) else {
        return;
    };
    let objects: Vec<serde_json::Value> = match doc {
        serde_json::Value::Array(items) => items,
        other => vec![other],
    };
    for obj in &objects {
        let _ = Warehouse::from_json(obj);
    }
    let index = Index::from_objects(&objects);
    let _ = index.urls();
    let mut tags: Vec<String> = input
        .tags
        .iter()
        .filter(|t| !t.is_empty())
        .map(|t| (*t).to_owned())
        .collect();
    tags.sort();
    tags.dedup();
    let urls = candidate_urls(input.docker_url);
    let plan = index.plan(input.namespace, &urls, &tags);
    let total = plan.refresh.len() + plan.skipped.len() + plan.invalid.len();
    assert!(
        total <= index.len(),
        "a plan names each Warehouse at most once"
    );
    for s in &plan.refresh {
        if let Some(tag) = &s.tag {
            assert!(
                tags.contains(tag),
                "the matching tag is one of the pushed tags"
            );
        }
    }
});
