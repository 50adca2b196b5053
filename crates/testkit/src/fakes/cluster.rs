//! [`FakeCluster`] and its [`FakeStore`]s: Warehouse objects in memory, listed through the
//! same decode as the kube adapter and merge-patched as an API server would.
//!
//! Test support, no I/O.

use std::sync::{Arc, Mutex};

use kargo_match::token::SecretString;
use kargo_match::warehouse::{ListedWarehouse, WarehouseKey};
use quayhook::cluster::{ClusterError, Connector, PageSink, WarehouseStore};
use serde_json::Value;

use super::{Script, lock};

#[derive(Default)]
struct ClusterInner {
    objects: Mutex<Vec<Value>>,
    revoked: Mutex<Vec<String>>,
    on_connect: Script<ClusterError>,
    on_list: Script<ClusterError>,
    on_patch: Script<ClusterError>,
    connected_with: Mutex<Vec<String>>,
    lists: Mutex<Vec<Option<String>>>,
    patches: Mutex<Vec<(WarehouseKey, Value)>>,
}

/// An in-memory cluster holding Warehouse objects, and the [`Connector`] to it. Clones share
/// everything.
#[derive(Clone, Default)]
pub struct FakeCluster(Arc<ClusterInner>);

impl FakeCluster {
    /// No Warehouses; every call passes; no kubeconfig is revoked.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a Warehouse (a [`crate::fixtures::Wh`] or a JSON object); chains.
    pub fn with(self, warehouse: impl Into<Value>) -> Self {
        self.apply(warehouse);
        self
    }

    /// Creates or replaces a Warehouse (by namespace and name), as `kubectl apply` would.
    pub fn apply(&self, warehouse: impl Into<Value>) {
        let warehouse = warehouse.into();
        let key = key_of(&warehouse);
        let mut objects = lock(&self.0.objects);
        match objects.iter_mut().find(|o| key_of(o) == key) {
            Some(existing) => *existing = warehouse,
            None => objects.push(warehouse),
        }
    }

    /// Deletes a Warehouse: later patches of it answer [`ClusterError::NotFound`].
    pub fn delete(&self, namespace: &str, name: &str) {
        let key = (namespace.to_owned(), name.to_owned());
        lock(&self.0.objects).retain(|o| key_of(o) != key);
    }

    /// A Warehouse as stored now (with every patch applied).
    pub fn get(&self, namespace: &str, name: &str) -> Option<Value> {
        let key = (namespace.to_owned(), name.to_owned());
        lock(&self.0.objects)
            .iter()
            .find(|o| key_of(o) == key)
            .cloned()
    }

    /// The `kargo.akuity.io/refresh` annotation of a Warehouse, if set.
    pub fn refreshed_at(&self, namespace: &str, name: &str) -> Option<String> {
        self.get(namespace, name)?
            .pointer("/metadata/annotations/kargo.akuity.io~1refresh")?
            .as_str()
            .map(str::to_owned)
    }

    /// Rejects the credential of `kubeconfig` from now on: stores connected with that text
    /// answer every call with [`ClusterError::Unauthorized`] (a rotated token).
    pub fn revoke(&self, kubeconfig: &str) {
        lock(&self.0.revoked).push(kubeconfig.to_owned());
    }

    /// The script of [`Connector::connect`] calls.
    pub fn on_connect(&self) -> &Script<ClusterError> {
        &self.0.on_connect
    }

    /// The script of [`WarehouseStore::list`] calls (of every store).
    pub fn on_list(&self) -> &Script<ClusterError> {
        &self.0.on_list
    }

    /// The script of [`WarehouseStore::patch`] calls (of every store).
    pub fn on_patch(&self) -> &Script<ClusterError> {
        &self.0.on_patch
    }

    /// How many times a store was built (failed calls included).
    pub fn connect_calls(&self) -> usize {
        lock(&self.0.connected_with).len()
    }

    /// The kubeconfig text of every connect, in order.
    pub fn connected_with(&self) -> Vec<String> {
        lock(&self.0.connected_with).clone()
    }

    /// How many lists were asked for (failed calls included).
    pub fn list_calls(&self) -> usize {
        lock(&self.0.lists).len()
    }

    /// The namespace of every list (`None`: all namespaces), in order.
    pub fn lists(&self) -> Vec<Option<String>> {
        lock(&self.0.lists).clone()
    }

    /// How many patches were asked for (failed calls included).
    pub fn patch_calls(&self) -> usize {
        lock(&self.0.patches).len()
    }

    /// The key and merge-patch body of every patch call, in order (failed calls included).
    pub fn patches(&self) -> Vec<(WarehouseKey, Value)> {
        lock(&self.0.patches).clone()
    }

    /// The `namespace/name` of every patch asked for (failed ones included), sorted.
    pub fn patched(&self) -> Vec<String> {
        let mut keys: Vec<String> = lock(&self.0.patches)
            .iter()
            .map(|(k, _)| k.to_string())
            .collect();
        keys.sort();
        keys
    }

    /// Forgets every recorded call (connects, lists, patches); objects and scripts stay.
    pub fn reset_calls(&self) {
        lock(&self.0.connected_with).clear();
        lock(&self.0.lists).clear();
        lock(&self.0.patches).clear();
    }
}

fn key_of(object: &Value) -> (String, String) {
    let text = |p: &str| {
        object
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    (text("/metadata/namespace"), text("/metadata/name"))
}

impl Connector for FakeCluster {
    type Store = FakeStore;

    async fn connect(&self, kubeconfig: &SecretString) -> Result<FakeStore, ClusterError> {
        lock(&self.0.connected_with).push(kubeconfig.expose().to_owned());
        self.0.on_connect.next().run().await?;
        Ok(FakeStore {
            cluster: self.clone(),
            kubeconfig: kubeconfig.expose().to_owned(),
        })
    }
}

/// A connection to a [`FakeCluster`], made with one kubeconfig.
pub struct FakeStore {
    cluster: FakeCluster,
    kubeconfig: String,
}

impl FakeStore {
    /// The scripted step, then 401 when this store's kubeconfig was revoked meanwhile.
    async fn call(&self, script: &Script<ClusterError>) -> Result<(), ClusterError> {
        script.next().run().await?;
        if lock(&self.cluster.0.revoked).contains(&self.kubeconfig) {
            return Err(ClusterError::Unauthorized);
        }
        Ok(())
    }
}

impl WarehouseStore for FakeStore {
    /// Every stored Warehouse in `namespace`, in pages of `page_size`, each decoded as the
    /// kube adapter decodes a page.
    async fn list(
        &self,
        namespace: Option<&str>,
        page_size: u32,
        sink: PageSink<'_>,
    ) -> Result<(), ClusterError> {
        let inner = &self.cluster.0;
        lock(&inner.lists).push(namespace.map(str::to_owned));
        self.call(&inner.on_list).await?;
        let selected: Vec<Value> = lock(&inner.objects)
            .iter()
            .filter(|o| namespace.is_none_or(|ns| key_of(o).0 == ns))
            .cloned()
            .collect();
        // Through text and `ListedWarehouse`'s `Deserialize`, as the kube adapter decodes a
        // page off the wire, so a malformed fixture is reported the same way.
        for page in selected.chunks(page_size.max(1) as usize) {
            let wire = Value::Array(page.to_vec()).to_string();
            let items: Vec<ListedWarehouse> =
                serde_json::from_str(&wire).expect("a JSON array of JSON values always decodes");
            sink(items);
        }
        Ok(())
    }

    /// Merge-patches a stored Warehouse; [`ClusterError::NotFound`] when there is none.
    async fn patch(&self, key: &WarehouseKey, patch: &Value) -> Result<(), ClusterError> {
        let inner = &self.cluster.0;
        lock(&inner.patches).push((key.clone(), patch.clone()));
        self.call(&inner.on_patch).await?;
        let wanted = (key.namespace.clone(), key.name.clone());
        let mut objects = lock(&inner.objects);
        let object = objects
            .iter_mut()
            .find(|o| key_of(o) == wanted)
            .ok_or(ClusterError::NotFound)?;
        crate::merge_patch::merge(object, patch);
        Ok(())
    }
}
