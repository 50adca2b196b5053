//! Benchmark 4's breakdown: where the memory of 10,000 indexed Warehouses goes, in live heap
//! bytes counted by this binary's allocator ([`Counting`], the `#[global_allocator]` of
//! main.rs) around quayhook's own `KubeStore::list` and `cluster::list_index` (the index built page by
//! page, as the prefetch builds it).
//!
//! I/O: starts the local API server, lists over HTTPS and writes `memory.json`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use anyhow::Context as _;
use kargo_match::index::Index;
use kargo_match::token::SecretString;
use kargo_match::warehouse::ListedWarehouse;
use quayhook::cluster::{Connector as _, KubeConnector, WarehouseStore as _, list_index};
use quayhook::config::Config;
use quayhook_testkit::apiserver::ApiServer;
use serde_json::{Value, json};

use crate::machine::{machine, write_json};
use crate::stack::realistic_warehouses;

/// The system allocator, counting live heap bytes and their peak.
pub struct Counting;

/// Bytes allocated and not yet freed.
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// The most [`LIVE`] has been since the last reset.
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
            PEAK.fetch_max(now, Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

const MIB: f64 = 1_048_576.0;

/// Live heap, in MiB.
fn live_mib() -> f64 {
    LIVE.load(Relaxed) as f64 / MIB
}

/// Runs the measurement over 10,000 Warehouses and writes the results to `out`.
///
/// # Errors
/// When quayhook cannot list from the local API server, or the results cannot be written.
pub async fn run(out: &Path) -> anyhow::Result<()> {
    let ns = "kargo-demo";
    let n = 10_000;
    let api = ApiServer::start().await;
    let mut raw_json = 0;
    for w in realistic_warehouses(ns, n) {
        raw_json += w.to_string().len();
        api.apply(w);
    }
    let kubeconfig = SecretString::new(api.kubeconfig_yaml(api.admin_token(), None));
    let config = Config::from_lookup(|k| {
        (k == "QUAYHOOK_RECEIVER_SECRET_IDS" || k == "QUAYHOOK_KUBECONFIG_SECRET_ID")
            .then(|| "x".to_owned())
    })?;
    let store = KubeConnector::from_config(&config)
        .connect(&kubeconfig)
        .await?;
    // Warm the connection so its buffers are in the baseline.
    store.list(Some("default"), 1, &mut |_| {}).await?;
    let base = live_mib();
    // The whole list decoded and kept: what indexing page by page avoids.
    PEAK.store(LIVE.load(Relaxed), Relaxed);
    let mut listed = Vec::new();
    store
        .list(Some(ns), config.list_page_size, &mut |page| {
            listed.extend(page);
        })
        .await?;
    let after_list = live_mib();
    let peak_list = PEAK.load(Relaxed) as f64 / MIB;
    drop(listed);
    // As quayhook builds it: page by page, at most one decoded page beside the index.
    let before_paged = live_mib();
    PEAK.store(LIVE.load(Relaxed), Relaxed);
    let index = list_index(&store, Some(ns), config.list_page_size).await?;
    let index_only = live_mib() - before_paged;
    let peak_paged = PEAK.load(Relaxed) as f64 / MIB - before_paged;
    drop(index);
    // The same Warehouses without their ignore regexes: what compiled regexes cost. Decoding
    // and `from_listed` consume what they read, so afterwards only the index is alive.
    let before = live_mib();
    let no_regex: Vec<Value> = realistic_warehouses(ns, n)
        .into_iter()
        .map(|mut w| {
            if let Some(o) = w
                .pointer_mut("/spec/subscriptions/0/image")
                .and_then(Value::as_object_mut)
            {
                o.remove("ignoreTagsRegexes");
            }
            w
        })
        .collect();
    let no_regex: Vec<ListedWarehouse> = no_regex
        .into_iter()
        .map(serde_json::from_value)
        .collect::<Result<_, _>>()
        .context("decode a Warehouse")?;
    let index = Index::from_listed(no_regex);
    let index_no_regex = live_mib() - before;
    drop(index);
    let regex_subscriptions = n / 4;
    write_json(
        out,
        &json!({
            "machine": machine(),
            "warehouses": n,
            "raw_json_mib": raw_json as f64 / MIB,
            "listed_values_mib": after_list - base,
            "peak_during_list_mib": peak_list - base,
            "index_mib": index_only,
            "peak_during_paged_index_mib": peak_paged,
            "page_size": config.list_page_size,
            "index_without_regexes_mib": index_no_regex,
            "regex_subscriptions": regex_subscriptions,
        }),
    )
}
