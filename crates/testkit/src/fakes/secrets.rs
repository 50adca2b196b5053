//! [`FakeSecrets`]: receiver secrets and the kubeconfig in memory, changeable at run time.
//!
//! Test support, no I/O.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use kargo_match::token::{SecretString, receiver_token};
use quayhook::secrets::{ReceiverSecret, Receivers, SecretSource, SecretsError};

use super::{Script, lock};

/// The kubeconfig text a [`FakeSecrets`] holds until [`FakeSecrets::set_kubeconfig`].
pub const KUBECONFIG: &str = "in-memory kubeconfig";

#[derive(Default)]
struct SecretsInner {
    receivers: Mutex<Vec<ReceiverSecret>>,
    problems: Mutex<Vec<SecretsError>>,
    kubeconfig: Mutex<String>,
    on_receivers: Script<SecretsError>,
    on_kubeconfig: Script<SecretsError>,
    receivers_calls: AtomicUsize,
    kubeconfig_calls: AtomicUsize,
}

/// An in-memory [`SecretSource`]: receivers and the kubeconfig held in memory and changeable at
/// run time. Clones share everything.
#[derive(Clone)]
pub struct FakeSecrets(Arc<SecretsInner>);

impl Default for FakeSecrets {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeSecrets {
    /// No receivers; the kubeconfig is [`KUBECONFIG`]; every call passes.
    pub fn new() -> Self {
        let inner = SecretsInner::default();
        *lock(&inner.kubeconfig) = KUBECONFIG.to_owned();
        FakeSecrets(Arc::new(inner))
    }

    /// Stores a receiver (replacing one with the same project and name, as a rotation would)
    /// and returns its URL token. `project` `""` makes a cluster-level receiver.
    pub fn add(&self, project: &str, name: &str, secret: &str, previous: Option<&str>) -> String {
        let receiver = ReceiverSecret {
            source: format!("fake/{project}/{name}"),
            project: project.to_owned(),
            receiver: name.to_owned(),
            secret: SecretString::new(secret),
            previous_secret: previous.map(SecretString::new),
        };
        let mut receivers = lock(&self.0.receivers);
        receivers.retain(|r| !(r.project == project && r.receiver == name));
        receivers.push(receiver);
        receiver_token(project, name, &SecretString::new(secret))
    }

    /// Removes a receiver; its tokens stop working once the receivers are fetched again.
    pub fn remove(&self, project: &str, name: &str) {
        lock(&self.0.receivers).retain(|r| !(r.project == project && r.receiver == name));
    }

    /// Replaces the secrets a fetch reports as unusable (next to the receivers).
    pub fn set_problems(&self, problems: Vec<SecretsError>) {
        *lock(&self.0.problems) = problems;
    }

    /// Replaces the kubeconfig text.
    pub fn set_kubeconfig(&self, text: &str) {
        *lock(&self.0.kubeconfig) = text.to_owned();
    }

    /// The script of [`SecretSource::receivers`] calls.
    pub fn on_receivers(&self) -> &Script<SecretsError> {
        &self.0.on_receivers
    }

    /// The script of [`SecretSource::kubeconfig`] calls.
    pub fn on_kubeconfig(&self) -> &Script<SecretsError> {
        &self.0.on_kubeconfig
    }

    /// How many times the receivers were fetched (failed calls included).
    pub fn receivers_calls(&self) -> usize {
        self.0.receivers_calls.load(Ordering::SeqCst)
    }

    /// How many times the kubeconfig was read (failed calls included).
    pub fn kubeconfig_calls(&self) -> usize {
        self.0.kubeconfig_calls.load(Ordering::SeqCst)
    }
}

impl SecretSource for FakeSecrets {
    async fn receivers(&self) -> Result<Receivers, SecretsError> {
        self.0.receivers_calls.fetch_add(1, Ordering::SeqCst);
        self.0.on_receivers.next().run().await?;
        Ok(Receivers {
            receivers: lock(&self.0.receivers).clone(),
            problems: lock(&self.0.problems).clone(),
        })
    }

    async fn kubeconfig(&self) -> Result<SecretString, SecretsError> {
        self.0.kubeconfig_calls.fetch_add(1, Ordering::SeqCst);
        self.0.on_kubeconfig.next().run().await?;
        Ok(SecretString::new(lock(&self.0.kubeconfig).clone()))
    }
}
