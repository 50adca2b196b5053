//! The durable path's queue: the [`Queue`] trait (send a [`Message`] or an ECR event's body,
//! change a received message's visibility), its Amazon SQS implementation, and [`AnyQueue`],
//! which lets [`crate::state::State`] hold any of them.
//!
//! I/O. The HTTP function sends what a delivery could not finish ([`crate::handler`]); the
//! worker ([`crate::worker`]) receives it through Lambda's SQS event source and backs off a
//! failed message with [`Queue::change_visibility`]. Errors carry the SDK's error as their
//! source; a message body is never logged or put in an error.

use std::future::Future;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::cause::Cause;
use crate::message::{Message, MessageError};

/// SQS's longest visibility timeout (12 hours).
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);

/// Why a queue call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// Returned when the message cannot be written (too large for the queue).
    #[error("cannot queue the message")]
    Message(#[source] MessageError),
    /// Returned when the queue cannot be reached or refuses the call (the source has the
    /// service's error code, e.g. `AWS.SimpleQueueService.NonExistentQueue`).
    #[error("the queue is unavailable")]
    Unavailable(#[source] Cause),
    /// Returned when the call did not finish within the request's time budget.
    #[error("the queue did not answer in time")]
    Timeout,
}

/// Where deliveries the cluster could not take wait for the worker.
pub trait Queue: Send + Sync + 'static {
    /// Sends one message.
    ///
    /// # Errors
    /// [`QueueError`]; the caller then answers as if there were no queue.
    fn send(&self, message: &Message) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// Sends one body the worker reads that is not a [`Message`]: an ECR push event, as the
    /// EventBridge rule itself would put it on the queue ([`crate::ecr`]).
    ///
    /// # Errors
    /// [`QueueError`] ([`QueueError::Message`] for a body over [`crate::message::MAX_BYTES`]);
    /// the caller then answers as if there were no queue.
    fn send_body(&self, body: &str) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// Makes a received message visible again after `timeout` (zero: at once), so a failed
    /// message is retried later (`ChangeMessageVisibility`). Longer than [`MAX_VISIBILITY`]
    /// is cut to it.
    ///
    /// # Errors
    /// [`QueueError`], e.g. for a receipt handle that is no longer valid.
    fn change_visibility(
        &self,
        receipt_handle: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// Amazon SQS: `SendMessage` and `ChangeMessageVisibility` on one queue URL.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    /// Wraps a client and the queue's URL.
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }

    /// A client for `url` from the environment's AWS configuration (region, credentials,
    /// `AWS_ENDPOINT_URL` or `AWS_ENDPOINT_URL_SQS`), with the same timeouts as the Secrets
    /// Manager client ([`crate::secrets::sdk_timeouts`]).
    pub async fn from_env(url: impl Into<String>) -> Self {
        Self::with_sdk(&crate::secrets::sdk_config().await, url)
    }

    /// A client for `url` on an SDK configuration already loaded
    /// ([`crate::secrets::sdk_config`]).
    pub fn with_sdk(sdk: &aws_config::SdkConfig, url: impl Into<String>) -> Self {
        Self::new(aws_sdk_sqs::Client::new(sdk), url)
    }

    /// The underlying client (for `quayhook check`).
    pub fn client(&self) -> &aws_sdk_sqs::Client {
        &self.client
    }

    /// The queue URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// A body within [`crate::message::MAX_BYTES`], which every queue accepts.
///
/// # Errors
/// [`QueueError::Message`] with [`MessageError::TooLarge`] beyond it.
pub fn check_size(body: &str) -> Result<(), QueueError> {
    if body.len() > crate::message::MAX_BYTES {
        return Err(QueueError::Message(MessageError::TooLarge {
            bytes: body.len(),
        }));
    }
    Ok(())
}

fn unavailable<E: std::error::Error + Send + Sync + 'static>(e: E) -> QueueError {
    QueueError::Unavailable(Cause::new(e))
}

impl Queue for SqsQueue {
    async fn send(&self, message: &Message) -> Result<(), QueueError> {
        let body = message.encode().map_err(QueueError::Message)?;
        Queue::send_body(self, &body).await
    }

    async fn send_body(&self, body: &str) -> Result<(), QueueError> {
        check_size(body)?;
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn change_visibility(
        &self,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<(), QueueError> {
        let seconds = timeout.min(MAX_VISIBILITY).as_secs();
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(i32::try_from(seconds).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

/// Any [`Queue`], behind one type, so `State` keeps its two type parameters whatever queue a
/// process uses (SQS, or a fake in tests). Each call boxes its future: one allocation next to
/// a network round trip.
pub struct AnyQueue(Box<dyn Erased>);

impl AnyQueue {
    /// Wraps a queue.
    pub fn new(queue: impl Queue) -> Self {
        AnyQueue(Box::new(queue))
    }
}

impl std::fmt::Debug for AnyQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AnyQueue")
    }
}

impl Queue for AnyQueue {
    async fn send(&self, message: &Message) -> Result<(), QueueError> {
        self.0.send(message).await
    }

    async fn send_body(&self, body: &str) -> Result<(), QueueError> {
        self.0.send_body(body).await
    }

    async fn change_visibility(
        &self,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<(), QueueError> {
        self.0.change_visibility(receipt_handle, timeout).await
    }
}

/// The object-safe twin of [`Queue`] (`impl Future` returns cannot be called through `dyn`).
trait Erased: Send + Sync {
    fn send<'a>(&'a self, message: &'a Message) -> BoxFuture<'a, Result<(), QueueError>>;
    fn send_body<'a>(&'a self, body: &'a str) -> BoxFuture<'a, Result<(), QueueError>>;
    fn change_visibility<'a>(
        &'a self,
        receipt_handle: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), QueueError>>;
}

impl<Q: Queue> Erased for Q {
    fn send<'a>(&'a self, message: &'a Message) -> BoxFuture<'a, Result<(), QueueError>> {
        Box::pin(Queue::send(self, message))
    }

    fn send_body<'a>(&'a self, body: &'a str) -> BoxFuture<'a, Result<(), QueueError>> {
        Box::pin(Queue::send_body(self, body))
    }

    fn change_visibility<'a>(
        &'a self,
        receipt_handle: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), QueueError>> {
        Box::pin(Queue::change_visibility(self, receipt_handle, timeout))
    }
}
