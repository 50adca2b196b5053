//! [`FakeQueue`]: the durable path's queue in memory, and the check that no queued message
//! carries a secret.
//!
//! Test support, no I/O.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quayhook::message::Message;
use quayhook::queue::{Queue, QueueError};

use super::{Script, lock};

/// Text of a kubeconfig, a PEM or an API Gateway path: none may appear in a queued message.
const FORBIDDEN: [&str; 6] = [
    "/quay/",
    "certificate-authority-data",
    "BEGIN CERTIFICATE",
    "current-context",
    "apiVersion: v1",
    super::KUBECONFIG,
];

/// Asserts that a queued message body holds none of `sensitive` (secrets, tokens, service
/// account tokens), no request path and no kubeconfig text.
///
/// # Panics
/// When it does, naming what kind of value leaked (never the value).
pub fn assert_clean_body(body: &str, sensitive: &[String]) {
    for value in sensitive.iter().filter(|v| !v.is_empty()) {
        assert!(
            !body.contains(value.as_str()),
            "a secret value or token appeared in a queued message"
        );
    }
    for text in FORBIDDEN {
        assert!(
            !body.contains(text),
            "{text:?} appeared in a queued message"
        );
    }
}

#[derive(Default)]
struct QueueInner {
    /// Every body accepted, with the message it encodes (`None`: an ECR event's body).
    sent: Mutex<Vec<(Option<Message>, String)>>,
    on_send: Script<QueueError>,
    on_change_visibility: Script<QueueError>,
    send_calls: AtomicUsize,
    visibility: Mutex<Vec<(String, Duration)>>,
}

/// An in-memory [`Queue`]: records every message it accepts (with its encoded body), every
/// other body (an ECR event's) and every visibility change; each call first takes the next step of its script. Clones share
/// everything.
#[derive(Clone, Default)]
pub struct FakeQueue(Arc<QueueInner>);

impl FakeQueue {
    /// Empty; every call passes.
    pub fn new() -> Self {
        Self::default()
    }

    /// The script of [`Queue::send`] calls.
    pub fn on_send(&self) -> &Script<QueueError> {
        &self.0.on_send
    }

    /// The script of [`Queue::change_visibility`] calls.
    pub fn on_change_visibility(&self) -> &Script<QueueError> {
        &self.0.on_change_visibility
    }

    /// How many sends were asked for (messages and other bodies, failed ones included).
    pub fn send_calls(&self) -> usize {
        self.0.send_calls.load(Ordering::SeqCst)
    }

    /// Every message accepted, in order (bodies sent with [`Queue::send_body`] left out).
    pub fn sent(&self) -> Vec<Message> {
        lock(&self.0.sent)
            .iter()
            .filter_map(|(m, _)| m.clone())
            .collect()
    }

    /// The body of everything accepted (messages and other bodies), as SQS would hold it.
    pub fn bodies(&self) -> Vec<String> {
        lock(&self.0.sent).iter().map(|(_, b)| b.clone()).collect()
    }

    /// Takes the bodies accepted so far (the next [`FakeQueue::bodies`] starts empty), as a
    /// worker's receive would.
    pub fn drain(&self) -> Vec<String> {
        lock(&self.0.sent).drain(..).map(|(_, b)| b).collect()
    }

    /// Every visibility change: receipt handle and timeout, in order (failed ones included).
    pub fn visibility_changes(&self) -> Vec<(String, Duration)> {
        lock(&self.0.visibility).clone()
    }

    /// [`assert_clean_body`] on every message accepted so far.
    ///
    /// # Panics
    /// As [`assert_clean_body`].
    pub fn assert_clean(&self, sensitive: &[String]) {
        for body in self.bodies() {
            assert_clean_body(&body, sensitive);
        }
    }
}

impl Queue for FakeQueue {
    /// Encodes the message as the SQS queue does (so a message too large fails the same way)
    /// and records it.
    async fn send(&self, message: &Message) -> Result<(), QueueError> {
        self.0.send_calls.fetch_add(1, Ordering::SeqCst);
        self.0.on_send.next().run().await?;
        let body = message.encode().map_err(QueueError::Message)?;
        lock(&self.0.sent).push((Some(message.clone()), body));
        Ok(())
    }

    /// Checks the size as the SQS queue does and records the body.
    async fn send_body(&self, body: &str) -> Result<(), QueueError> {
        self.0.send_calls.fetch_add(1, Ordering::SeqCst);
        self.0.on_send.next().run().await?;
        quayhook::queue::check_size(body)?;
        lock(&self.0.sent).push((None, body.to_owned()));
        Ok(())
    }

    async fn change_visibility(
        &self,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<(), QueueError> {
        lock(&self.0.visibility).push((receipt_handle.to_owned(), timeout));
        self.0.on_change_visibility.next().run().await
    }
}
