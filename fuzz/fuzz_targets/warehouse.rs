//! The Warehouse model decoder and everything built on it: any JSON document (an object or a
//! list of objects) decoded as listed Warehouses, from the text and from a parsed value, then
//! indexed with its selectors compiled (Go regexes, semver constraints) and planned against an
//! arbitrary push.
#![no_main]

use arbitrary::Arbitrary;
use kargo_match::index::{Index, candidate_urls};
use kargo_match::warehouse::ListedWarehouse;
use libfuzzer_sys::fuzz_target;

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
    // Any JSON value decodes as a list item (a bad object is an unreadable item, not an
    // error), and streaming the text decodes exactly what decoding the parsed value does.
    let listed: Vec<ListedWarehouse> = objects
        .iter()
        .map(|o| serde_json::from_value(o.clone()).expect("a JSON value always decodes"))
        .collect();
    let streamed = if input.json.trim_ascii_start().starts_with(b"[") {
        serde_json::from_slice::<Vec<ListedWarehouse>>(input.json)
    } else {
        serde_json::from_slice::<ListedWarehouse>(input.json).map(|item| vec![item])
    };
    assert_eq!(
        streamed.expect("valid JSON always decodes"),
        listed,
        "text and value decode alike"
    );
    let index = Index::from_listed(listed);
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
