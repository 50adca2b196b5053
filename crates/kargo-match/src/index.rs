//! The subscription index and the refresh plan (reference §4.1, §5.1, §5.2, §5.8).
//!
//! Pure. [`Index::build`] (or [`IndexBuilder`], a list page at a time) does once what Kargo's
//! field indexer does for its cache: every image and chart subscription's normalized URL
//! points at its Warehouse, with the subscription's [`Selector`] compiled up front.
//! [`Index::plan`] then answers a push in time proportional to the number of subscribers of
//! the pushed repository, whatever the size of the cluster.
//!
//! Git subscriptions are not indexed: Kargo's `NormalizeGit` never yields a scheme-less
//! `host/path`, so they cannot match a Quay URL (§4.1). Generic subscriptions index nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::select::{Mismatch, Selector, SelectorError};
use crate::urls::{RepoUrl, normalize_chart, normalize_image};
use crate::warehouse::{
    ChartSubscription, ImageSubscription, ListedWarehouse, Subscription, Warehouse, WarehouseError,
    WarehouseKey,
};

/// The repository URLs a push names: `docker_url` normalized as an image and as a chart,
/// sorted, deduplicated, empty dropped (Kargo's `refreshWarehouses` step 1).
pub fn candidate_urls(docker_url: &str) -> Vec<RepoUrl> {
    let mut urls = vec![normalize_image(docker_url), normalize_chart(docker_url)];
    urls.sort();
    urls.dedup();
    urls.retain(|u| !u.as_str().is_empty());
    urls
}

/// A Warehouse object that could not be read; reported, never fatal to the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreadable {
    /// `namespace/name` when the metadata had them, else a description of the position.
    pub name: String,
    /// Why it could not be read.
    pub error: WarehouseError,
}

#[derive(Clone, Debug)]
struct IndexedSubscription {
    url: RepoUrl,
    /// Shared by every subscription of the index written the same way.
    selector: Arc<Result<Selector, SelectorError>>,
}

#[derive(Clone, Debug)]
struct Entry {
    key: WarehouseKey,
    /// Image and chart subscriptions in the Warehouse's order.
    subscriptions: Vec<IndexedSubscription>,
}

/// Normalized repository URL → subscribed Warehouses, with compiled selectors.
#[derive(Clone, Debug, Default)]
pub struct Index {
    /// Sorted by key, so plans come out in a deterministic order.
    entries: Vec<Entry>,
    /// Positions in `entries`, ascending, without duplicates.
    by_url: HashMap<RepoUrl, Vec<usize>>,
    unreadable: Vec<Unreadable>,
}

/// What to do for one push: which Warehouses to refresh and why the others are left alone.
///
/// Every list is sorted by Warehouse key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Warehouses to refresh.
    pub refresh: Vec<Selected>,
    /// Subscribed Warehouses that no pushed tag interests, with the reasons.
    pub skipped: Vec<Skipped>,
    /// Subscribed Warehouses whose subscription cannot be evaluated (Kargo would answer 500).
    pub invalid: Vec<Invalid>,
}

/// A Warehouse selected for refresh.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selected {
    /// Which Warehouse.
    pub key: WarehouseKey,
    /// The first pushed tag (in sorted order) that matched; `None` when the push had no tags,
    /// in which case every subscriber is refreshed (§5.8).
    pub tag: Option<String>,
}

/// A subscribed Warehouse that is not refreshed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// Which Warehouse.
    pub key: WarehouseKey,
    /// One entry per (subscription, tag) pair that was tried, in order, without duplicates.
    pub reasons: Vec<Mismatch>,
}

/// A subscribed Warehouse whose matching subscription is misconfigured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// Which Warehouse.
    pub key: WarehouseKey,
    /// What is wrong with its subscription.
    pub error: SelectorError,
}

/// Builds an [`Index`] a part at a time: one list page after another, so only the page being
/// read and the compiled index are alive, never the whole decoded list.
///
/// Each Warehouse is reduced to its key and its compiled subscriptions as it is added; a key
/// added twice keeps the last one, as in a list read in order. Subscriptions written the same
/// way (Warehouses of several stages or projects tracking one image alike) are normalized and
/// compiled once and share the compiled selector.
#[derive(Debug, Default)]
pub struct IndexBuilder {
    /// Sorted by key, last occurrence of a key wins.
    entries: BTreeMap<WarehouseKey, Vec<IndexedSubscription>>,
    unreadable: Vec<Unreadable>,
    /// Items seen so far, for naming an unreadable item that has no name.
    position: usize,
    /// Every distinct image subscription seen, indexed (dropped by [`IndexBuilder::finish`]).
    images: HashMap<ImageSubscription, IndexedSubscription>,
    /// Every distinct chart subscription seen, indexed.
    charts: HashMap<ChartSubscription, IndexedSubscription>,
}

impl IndexBuilder {
    /// An empty builder.
    pub fn new() -> IndexBuilder {
        IndexBuilder::default()
    }

    /// Adds one parsed Warehouse, compiling its selectors.
    pub fn add(&mut self, wh: Warehouse) {
        self.position += 1;
        let subscriptions = wh
            .subscriptions
            .into_iter()
            .filter_map(|sub| match sub {
                Subscription::Image(s) => {
                    Some(indexed(&mut self.images, s, |s| IndexedSubscription {
                        url: normalize_image(&s.repo_url),
                        selector: Arc::new(Selector::for_image(s)),
                    }))
                }
                Subscription::Chart(s) => {
                    Some(indexed(&mut self.charts, s, |s| IndexedSubscription {
                        url: normalize_chart(&s.repo_url),
                        selector: Arc::new(Selector::for_chart(s)),
                    }))
                }
                Subscription::Git { .. } | Subscription::Generic { .. } => None,
            })
            .collect();
        self.entries.insert(wh.key, subscriptions);
    }

    /// Adds one decoded list item: a [`ListedWarehouse::Readable`] is indexed, an
    /// [`ListedWarehouse::Unreadable`] lands in [`Index::unreadable`], named `namespace/name`
    /// (or by its position in the whole list when the metadata had no name).
    pub fn add_listed(&mut self, item: ListedWarehouse) {
        match item {
            ListedWarehouse::Readable(wh) => self.add(wh),
            ListedWarehouse::Unreadable {
                namespace,
                name,
                error,
            } => {
                let name = match (namespace, name) {
                    (Some(ns), Some(name)) => format!("{ns}/{name}"),
                    (None, Some(name)) => name,
                    (_, None) => format!("item {} of the list", self.position),
                };
                self.position += 1;
                self.unreadable.push(Unreadable { name, error });
            }
        }
    }

    /// Adds a Warehouse that could not be read.
    pub fn add_unreadable(&mut self, unreadable: Unreadable) {
        self.position += 1;
        self.unreadable.push(unreadable);
    }

    /// Warehouses added so far (readable ones, duplicates counted once).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no readable Warehouse was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The index of everything added.
    pub fn finish(self) -> Index {
        let mut by_url: HashMap<RepoUrl, Vec<usize>> = HashMap::new();
        let entries: Vec<Entry> = self
            .entries
            .into_iter()
            .enumerate()
            .map(|(pos, (key, subscriptions))| {
                for sub in &subscriptions {
                    let list = by_url.entry(sub.url.clone()).or_default();
                    if list.last() != Some(&pos) {
                        list.push(pos);
                    }
                }
                Entry { key, subscriptions }
            })
            .collect();
        Index {
            entries,
            by_url,
            unreadable: self.unreadable,
        }
    }
}

/// The indexed form of `sub`, built by `build` the first time this subscription is seen.
fn indexed<S: std::hash::Hash + Eq>(
    seen: &mut HashMap<S, IndexedSubscription>,
    sub: S,
    build: impl FnOnce(&S) -> IndexedSubscription,
) -> IndexedSubscription {
    if let Some(done) = seen.get(&sub) {
        return done.clone();
    }
    let done = build(&sub);
    seen.insert(sub, done.clone());
    done
}

impl Extend<ListedWarehouse> for IndexBuilder {
    fn extend<I: IntoIterator<Item = ListedWarehouse>>(&mut self, items: I) {
        for item in items {
            self.add_listed(item);
        }
    }
}

impl Index {
    /// Builds the index from parsed Warehouses and the ones that did not parse.
    ///
    /// Duplicate keys keep the last occurrence. Selectors are compiled here, once, so a request
    /// only evaluates them.
    pub fn build(warehouses: Vec<Warehouse>, unreadable: Vec<Unreadable>) -> Index {
        let mut builder = IndexBuilder::new();
        for wh in warehouses {
            builder.add(wh);
        }
        for u in unreadable {
            builder.add_unreadable(u);
        }
        builder.finish()
    }

    /// Builds the index from a decoded Warehouse list, in list order (see
    /// [`IndexBuilder::add_listed`]); [`IndexBuilder`] does the same a page at a time.
    pub fn from_listed(items: impl IntoIterator<Item = ListedWarehouse>) -> Index {
        let mut builder = IndexBuilder::new();
        builder.extend(items);
        builder.finish()
    }

    /// Number of Warehouses indexed (readable ones).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no Warehouse is indexed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of distinct subscribed repository URLs.
    pub fn url_count(&self) -> usize {
        self.by_url.len()
    }

    /// Warehouse objects that could not be read when the index was built.
    pub fn unreadable(&self) -> &[Unreadable] {
        &self.unreadable
    }

    /// How many (Warehouse, URL) subscriptions of `namespace` (all when `None`) `urls` reach:
    /// a bound on the selector evaluations a [`Index::plan`] makes per tag.
    pub fn subscriber_count(&self, namespace: Option<&str>, urls: &[RepoUrl]) -> usize {
        urls.iter()
            .map(|url| self.subscribers(namespace, url).count())
            .sum()
    }

    /// Whether any Warehouse in `namespace` (all when `None`) subscribes to any of `urls`.
    pub fn has_subscribers(&self, namespace: Option<&str>, urls: &[RepoUrl]) -> bool {
        urls.iter()
            .any(|url| self.subscribers(namespace, url).next().is_some())
    }

    /// The subscribed repository URLs and their subscribers, sorted by URL (for `quayhook check`).
    pub fn urls(&self) -> Vec<(&RepoUrl, Vec<&WarehouseKey>)> {
        let mut out: Vec<_> = self
            .by_url
            .iter()
            .map(|(url, pos)| (url, pos.iter().map(|&p| &self.entries[p].key).collect()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(b.0));
        out
    }

    /// Drops one Warehouse (e.g. after the API server said it no longer exists).
    ///
    /// Returns whether it was present.
    pub fn remove(&mut self, key: &WarehouseKey) -> bool {
        let Ok(pos) = self.entries.binary_search_by(|e| e.key.cmp(key)) else {
            return false;
        };
        self.entries.remove(pos);
        self.by_url.retain(|_, list| {
            list.retain(|&p| p != pos);
            for p in list.iter_mut() {
                if *p > pos {
                    *p -= 1;
                }
            }
            !list.is_empty()
        });
        true
    }

    fn subscribers<'a>(
        &'a self,
        namespace: Option<&'a str>,
        url: &RepoUrl,
    ) -> impl Iterator<Item = usize> + 'a {
        self.by_url
            .get(url)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .copied()
            .filter(move |&p| namespace.is_none_or(|ns| self.entries[p].key.namespace == ns))
    }

    /// Decides, for a push of `tags` to the repository `urls` (see [`candidate_urls`]), which
    /// Warehouses of `namespace` (all namespaces for a cluster-level receiver: `None`) to
    /// refresh.
    ///
    /// `tags` are Kargo's qualifiers: sorted, deduplicated, no empty string. With no tags, every
    /// subscriber is refreshed and no selector is consulted (§5.8). Otherwise a Warehouse is
    /// refreshed when any tag interests any of its subscriptions to the URL (§5.2), walking
    /// URLs in order and subscriptions in the Warehouse's order, and stopping at the first
    /// match, or at the first misconfigured subscription, which puts it in [`Plan::invalid`].
    pub fn plan(&self, namespace: Option<&str>, urls: &[RepoUrl], tags: &[String]) -> Plan {
        let mut positions: Vec<usize> = urls
            .iter()
            .flat_map(|url| self.subscribers(namespace, url))
            .collect();
        positions.sort_unstable();
        positions.dedup();

        let mut plan = Plan::default();
        for pos in positions {
            let entry = &self.entries[pos];
            let key = entry.key.clone();
            if tags.is_empty() {
                plan.refresh.push(Selected { key, tag: None });
                continue;
            }
            match evaluate(entry, urls, tags) {
                Verdict::Refresh(tag) => plan.refresh.push(Selected {
                    key,
                    tag: Some(tag.to_owned()),
                }),
                Verdict::Skip(reasons) => plan.skipped.push(Skipped { key, reasons }),
                Verdict::Invalid(error) => plan.invalid.push(Invalid {
                    key,
                    error: error.clone(),
                }),
            }
        }
        plan
    }
}

enum Verdict<'a> {
    Refresh(&'a str),
    Skip(Vec<Mismatch>),
    Invalid(&'a SelectorError),
}

/// Kargo's `shouldRefresh`, over every candidate URL in order.
///
/// Linear in tags × subscriptions: reasons are deduplicated through a set, not by scanning
/// the list (a push with thousands of distinct tags gives thousands of distinct reasons).
fn evaluate<'a>(entry: &'a Entry, urls: &[RepoUrl], tags: &'a [String]) -> Verdict<'a> {
    let mut reasons = Vec::new();
    let mut seen = HashSet::new();
    for url in urls {
        for sub in entry.subscriptions.iter().filter(|s| &s.url == url) {
            let selector = match &*sub.selector {
                Ok(selector) => selector,
                Err(error) => return Verdict::Invalid(error),
            };
            for tag in tags {
                match selector.check(tag) {
                    Ok(()) => return Verdict::Refresh(tag),
                    Err(why) => {
                        if seen.insert(why.clone()) {
                            reasons.push(why);
                        }
                    }
                }
            }
        }
    }
    Verdict::Skip(reasons)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::warehouse::{ChartSubscription, ImageSubscription};
    use proptest::prelude::*;

    /// Chained builder, so each fixture reads like its case.
    struct Wh(Warehouse);

    impl Wh {
        fn new(ns: &str, name: &str) -> Self {
            Wh(Warehouse {
                key: WarehouseKey::new(ns, name),
                subscriptions: Vec::new(),
            })
        }
        fn image(mut self, url: &str, f: impl FnOnce(&mut ImageSubscription)) -> Self {
            let mut sub = ImageSubscription {
                repo_url: url.into(),
                ..Default::default()
            };
            f(&mut sub);
            self.0.subscriptions.push(Subscription::Image(sub));
            self
        }
        fn chart(mut self, url: &str, constraint: &str) -> Self {
            self.0
                .subscriptions
                .push(Subscription::Chart(ChartSubscription {
                    repo_url: url.into(),
                    name: String::new(),
                    semver_constraint: constraint.into(),
                }));
            self
        }
        fn git(mut self, url: &str) -> Self {
            self.0.subscriptions.push(Subscription::Git {
                repo_url: url.into(),
            });
            self
        }
    }

    fn index(whs: Vec<Wh>) -> Index {
        Index::build(whs.into_iter().map(|w| w.0).collect(), Vec::new())
    }

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn keys(sel: &[Selected]) -> Vec<String> {
        sel.iter().map(|s| s.key.to_string()).collect()
    }

    const QUAY: &str = "quay.io/mynamespace/repository";

    #[test]
    fn candidate_urls_for_a_quay_push_is_one_url() {
        assert_eq!(
            candidate_urls(QUAY)
                .iter()
                .map(RepoUrl::as_str)
                .collect::<Vec<_>>(),
            [QUAY]
        );
        assert!(candidate_urls("").is_empty());
        assert_eq!(
            candidate_urls("docker.io/library/busybox")[0].as_str(),
            "busybox"
        );
    }

    #[test]
    fn plan_refreshes_matching_and_explains_skips() {
        let idx = index(vec![
            Wh::new("p", "any").image(QUAY, |_| {}),
            Wh::new("p", "v1").image(QUAY, |s| s.constraint = "^1.0.0".into()),
            Wh::new("p", "no-v2").image(QUAY, |s| {
                s.image_selection_strategy = "Lexical".into();
                s.ignore_tags_regexes = vec![r"^v2\.".into()];
            }),
            Wh::new("p", "other-repo").image("quay.io/mynamespace/other", |_| {}),
        ]);
        let plan = idx.plan(Some("p"), &candidate_urls(QUAY), &tags(&["v2.0.0"]));
        assert_eq!(keys(&plan.refresh), ["p/any"]);
        assert_eq!(plan.refresh[0].tag.as_deref(), Some("v2.0.0"));
        let skipped: Vec<String> = plan
            .skipped
            .iter()
            .map(|s| format!("{}: {}", s.key, s.reasons[0]))
            .collect();
        assert_eq!(
            skipped,
            [
                r"p/no-v2: tag v2.0.0 ignored by regex ^v2\.",
                "p/v1: tag v2.0.0 does not satisfy ^1.0.0"
            ]
        );
        assert!(plan.invalid.is_empty());
    }

    #[test]
    fn any_tag_matching_any_subscription_of_the_url_refreshes() {
        let idx = index(vec![
            Wh::new("p", "w")
                .image(QUAY, |s| s.constraint = "^2".into())
                .image("quay.io/x/y", |_| {})
                .image(QUAY, |s| s.constraint = "^1".into()),
        ]);
        let plan = idx.plan(None, &candidate_urls(QUAY), &tags(&["foo", "v1.5.0"]));
        assert_eq!(keys(&plan.refresh), ["p/w"]);
        assert_eq!(plan.refresh[0].tag.as_deref(), Some("v1.5.0"));
    }

    #[test]
    fn empty_tags_refresh_every_subscriber_without_building_a_verdict() {
        let idx = index(vec![
            Wh::new("p", "broken").image(QUAY, |s| s.allow_tags = "deprecated".into()),
            Wh::new("p", "strict").image(QUAY, |s| s.constraint = "^9".into()),
        ]);
        let plan = idx.plan(Some("p"), &candidate_urls(QUAY), &[]);
        assert_eq!(keys(&plan.refresh), ["p/broken", "p/strict"]);
        assert!(plan.refresh.iter().all(|s| s.tag.is_none()));
    }

    /// Deliberate difference from Kargo (README): a misconfigured subscription makes that one
    /// Warehouse invalid instead of failing the whole request with 500 and patching nothing.
    #[test]
    fn a_misconfigured_warehouse_does_not_block_the_others() {
        let idx = index(vec![
            Wh::new("p", "broken").image(QUAY, |s| s.constraint = "not a constraint".into()),
            Wh::new("p", "fine").image(QUAY, |_| {}),
        ]);
        let plan = idx.plan(Some("p"), &candidate_urls(QUAY), &tags(&["v1.0.0"]));
        assert_eq!(keys(&plan.refresh), ["p/fine"]);
        assert_eq!(plan.invalid.len(), 1);
        assert_eq!(plan.invalid[0].key.to_string(), "p/broken");
    }

    #[test]
    fn an_earlier_matching_subscription_wins_over_a_later_broken_one() {
        let idx = index(vec![
            Wh::new("p", "w")
                .image(QUAY, |_| {})
                .image(QUAY, |s| s.allow_tags = "x".into()),
        ]);
        let plan = idx.plan(None, &candidate_urls(QUAY), &tags(&["v1.0.0"]));
        assert_eq!(keys(&plan.refresh), ["p/w"]);
        assert!(plan.invalid.is_empty());
    }

    #[test]
    fn project_scope_sees_only_its_namespace_and_cluster_scope_sees_all() {
        let idx = index(vec![
            Wh::new("b", "w").image(QUAY, |_| {}),
            Wh::new("a", "w").image(QUAY, |_| {}),
        ]);
        let urls = candidate_urls(QUAY);
        assert_eq!(keys(&idx.plan(Some("a"), &urls, &[]).refresh), ["a/w"]);
        assert_eq!(keys(&idx.plan(None, &urls, &[]).refresh), ["a/w", "b/w"]);
        assert!(idx.plan(Some("c"), &urls, &[]).refresh.is_empty());
        assert!(idx.has_subscribers(Some("a"), &urls));
        assert!(!idx.has_subscribers(Some("c"), &urls));
    }

    #[test]
    fn oci_chart_subscriptions_match_the_quay_url_but_oci_images_never_do() {
        let idx = index(vec![
            Wh::new("p", "chart").chart("oci://quay.io/mynamespace/repository", "^1"),
            Wh::new("p", "oci-image").image("oci://quay.io/mynamespace/repository", |_| {}),
            Wh::new("p", "git").git("https://quay.io/mynamespace/repository"),
        ]);
        let plan = idx.plan(Some("p"), &candidate_urls(QUAY), &tags(&["1.2.0"]));
        assert_eq!(keys(&plan.refresh), ["p/chart"]);
        assert!(plan.skipped.is_empty());
    }

    #[test]
    fn remove_drops_a_warehouse_and_keeps_the_rest_addressable() {
        let mut idx = index(vec![
            Wh::new("p", "a").image(QUAY, |_| {}),
            Wh::new("p", "b").image("quay.io/x/only-b", |_| {}),
            Wh::new("p", "c").image(QUAY, |_| {}),
        ]);
        assert!(idx.remove(&WarehouseKey::new("p", "b")));
        assert!(!idx.remove(&WarehouseKey::new("p", "b")));
        assert_eq!(idx.len(), 2);
        assert_eq!(idx.url_count(), 1);
        assert_eq!(
            keys(&idx.plan(None, &candidate_urls(QUAY), &[]).refresh),
            ["p/a", "p/c"]
        );
    }

    #[test]
    fn duplicate_keys_keep_the_last_and_duplicate_urls_index_once() {
        let idx = index(vec![
            Wh::new("p", "w").image("quay.io/x/old", |_| {}),
            Wh::new("p", "w").image(QUAY, |_| {}).image(QUAY, |_| {}),
        ]);
        assert_eq!(idx.len(), 1);
        assert_eq!(
            idx.urls(),
            vec![(&candidate_urls(QUAY)[0], vec![&WarehouseKey::new("p", "w")])]
        );
    }

    #[test]
    fn unreadable_objects_are_reported_not_fatal() {
        let page = serde_json::json!([
            {"metadata": {"namespace": "p", "name": "ok"},
             "spec": {"subscriptions": [{"image": {"repoURL": QUAY}}]}},
            {"metadata": {"namespace": "p", "name": "bad"},
             "spec": {"subscriptions": [{"image": {}, "chart": {}}]}},
            1,
            {"metadata": {"name": "no-namespace"}},
        ]);
        let listed: Vec<ListedWarehouse> = serde_json::from_str(&page.to_string()).unwrap();
        let idx = Index::from_listed(listed);
        assert_eq!(idx.len(), 1);
        let names: Vec<_> = idx.unreadable().iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["p/bad", "item 2 of the list", "no-namespace"]);
        assert_eq!(
            idx.unreadable()[0].error,
            WarehouseError::TypeKeys { index: 0, found: 2 }
        );
    }

    #[test]
    fn subscriptions_written_alike_share_one_compiled_selector() {
        let w = |ns: &str, constraint: &str| {
            Wh::new(ns, "w")
                .image(QUAY, |s| s.constraint = constraint.into())
                .0
        };
        let idx = Index::build(
            vec![w("p", "^1.0.0"), w("q", "^1.0.0"), w("r", "^2.0.0")],
            Vec::new(),
        );
        let selector = |i: usize| &idx.entries[i].subscriptions[0].selector;
        assert!(Arc::ptr_eq(selector(0), selector(1)));
        assert!(!Arc::ptr_eq(selector(0), selector(2)));
        let tags = ["1.5.0".to_owned()];
        let refreshed: Vec<String> = idx
            .plan(None, &candidate_urls(QUAY), &tags)
            .refresh
            .iter()
            .map(|s| s.key.to_string())
            .collect();
        assert_eq!(refreshed, ["p/w", "q/w"]);
    }

    #[test]
    fn a_list_read_page_by_page_names_unreadable_items_by_their_place_in_the_whole_list() {
        let items: Vec<ListedWarehouse> = serde_json::from_str(
            &serde_json::json!([
                {"metadata": {"namespace": "p", "name": "a"},
                 "spec": {"subscriptions": [{"image": {"repoURL": QUAY}}]}},
                1,
                {"metadata": {"namespace": "p", "name": "b"},
                 "spec": {"subscriptions": [{"image": {"repoURL": QUAY}}]}},
                2,
            ])
            .to_string(),
        )
        .unwrap();
        let mut builder = IndexBuilder::new();
        let mut items = items.into_iter();
        builder.extend(items.by_ref().take(2));
        assert_eq!(builder.len(), 1);
        builder.extend(items);
        let idx = builder.finish();
        assert_eq!(idx.len(), 2);
        let names: Vec<_> = idx.unreadable().iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["item 1 of the list", "item 3 of the list"]);
    }

    fn arb_warehouse() -> impl Strategy<Value = Warehouse> {
        let url = prop::sample::select(vec![
            "quay.io/a/b",
            "quay.io/a/c",
            "docker.io/library/x",
            "x",
        ]);
        let constraint = prop::sample::select(vec!["", "^1", ">=2.0.0", "bad constraint"]);
        let strategy = prop::sample::select(vec!["", "Lexical", "Digest", "Bogus"]);
        let sub = (url, constraint, strategy, any::<bool>()).prop_map(|(u, c, s, chart)| {
            if chart {
                Subscription::Chart(ChartSubscription {
                    repo_url: format!("oci://{u}"),
                    name: String::new(),
                    semver_constraint: c.into(),
                })
            } else {
                Subscription::Image(ImageSubscription {
                    repo_url: u.into(),
                    image_selection_strategy: s.into(),
                    constraint: c.into(),
                    ..Default::default()
                })
            }
        });
        (
            prop::sample::select(vec!["p", "q"]),
            0u8..20,
            prop::collection::vec(sub, 0..4),
        )
            .prop_map(|(ns, n, subscriptions)| Warehouse {
                key: WarehouseKey::new(ns, format!("w{n}")),
                subscriptions,
            })
    }

    proptest! {
        /// Building page by page, whatever the page size, gives the index of the whole list:
        /// the same plan for every push (a key listed twice keeps its last occurrence).
        #[test]
        fn pages_build_the_index_of_the_whole_list(
            whs in prop::collection::vec(arb_warehouse(), 0..30),
            page in 1usize..7,
            push in prop::sample::select(vec!["quay.io/a/b", "x", "docker.io/x"]),
            tag in prop::sample::select(vec!["1.0.0", "v2.1.0", "latest"]),
        ) {
            let whole = Index::build(whs.clone(), Vec::new());
            let mut builder = IndexBuilder::new();
            for chunk in whs.chunks(page) {
                builder.extend(chunk.iter().cloned().map(ListedWarehouse::Readable));
            }
            let paged = builder.finish();
            prop_assert_eq!(paged.len(), whole.len());
            prop_assert_eq!(paged.urls(), whole.urls());
            let urls = candidate_urls(push);
            for tags in [vec![], vec![tag.to_owned()]] {
                prop_assert_eq!(paged.plan(None, &urls, &tags), whole.plan(None, &urls, &tags));
            }
        }

        /// The index answers exactly what a linear walk of Kargo's `shouldRefresh` answers.
        #[test]
        fn plan_agrees_with_a_linear_scan(
            whs in prop::collection::vec(arb_warehouse(), 0..30),
            ns in prop::option::of(prop::sample::select(vec!["p", "q"])),
            push in prop::sample::select(vec!["quay.io/a/b", "x", "docker.io/x"]),
            pushed in prop::collection::vec(prop::sample::select(vec!["1.0.0", "v2.1.0", "latest", "bad constraint"]), 0..3),
        ) {
            let idx = Index::build(whs.clone(), Vec::new());
            let mut tags: Vec<String> = pushed.iter().map(|s| s.to_string()).collect();
            tags.sort();
            tags.dedup();
            let urls = candidate_urls(push);
            let plan = idx.plan(ns, &urls, &tags);

            let mut last: BTreeMap<WarehouseKey, Warehouse> = BTreeMap::new();
            for w in whs { last.insert(w.key.clone(), w); }
            let mut want_refresh = Vec::new();
            let mut want_invalid = Vec::new();
            for w in last.values().filter(|w| ns.is_none_or(|n| w.key.namespace == n)) {
                let subs: Vec<(RepoUrl, Result<Selector, SelectorError>)> = w.subscriptions.iter().filter_map(|s| match s {
                    Subscription::Image(i) => Some((normalize_image(&i.repo_url), Selector::for_image(i))),
                    Subscription::Chart(c) => Some((normalize_chart(&c.repo_url), Selector::for_chart(c))),
                    _ => None,
                }).collect();
                if !subs.iter().any(|(u, _)| urls.contains(u)) { continue; }
                if tags.is_empty() { want_refresh.push(w.key.clone()); continue; }
                'outer: for url in &urls {
                    for (_, sel) in subs.iter().filter(|(u, _)| u == url) {
                        match sel {
                            Err(_) => { want_invalid.push(w.key.clone()); break 'outer; }
                            Ok(sel) => if tags.iter().any(|t| sel.check(t).is_ok()) {
                                want_refresh.push(w.key.clone());
                                break 'outer;
                            },
                        }
                    }
                }
            }
            prop_assert_eq!(plan.refresh.iter().map(|s| s.key.clone()).collect::<Vec<_>>(), want_refresh);
            prop_assert_eq!(plan.invalid.iter().map(|s| s.key.clone()).collect::<Vec<_>>(), want_invalid);
        }
    }
}
