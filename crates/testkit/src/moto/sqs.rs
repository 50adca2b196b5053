//! SQS on the shared moto server, through the real `aws-sdk-sqs`: a queue with a dead-letter
//! queue and a redrive policy, and what Lambda's SQS event source mapping does around a
//! worker invocation (receive, build the `SqsEvent`, delete what succeeded).
//!
//! Test support, I/O: talks to moto over loopback HTTP.

use std::sync::atomic::{AtomicU32, Ordering};

use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use lambda_http::aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// An SQS client for `endpoint` with test credentials.
pub fn client_for(endpoint: &str) -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

/// An SQS client of the shared moto server.
pub fn client() -> aws_sdk_sqs::Client {
    client_for(&super::endpoint())
}

/// A queue and its dead-letter queue.
#[derive(Clone, Debug)]
pub struct TestQueue {
    /// The queue's URL (`QUAYHOOK_QUEUE_URL`).
    pub url: String,
    /// The queue's ARN (the records' `eventSourceARN`).
    pub arn: String,
    /// The dead-letter queue's URL.
    pub dlq_url: String,
}

/// Creates a queue (a unique name starting with `name`) whose messages move to a new
/// dead-letter queue after `max_receive_count` receives.
///
/// # Panics
/// When moto refuses (a test bug or moto not running).
pub async fn create_queue_with_dlq(
    client: &aws_sdk_sqs::Client,
    name: &str,
    max_receive_count: u32,
) -> TestQueue {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let name = format!("{name}-{}-{n}", std::process::id());
    let dlq_url = create(client, &format!("{name}-dlq"), None).await;
    let dlq_arn = arn(client, &dlq_url).await;
    let policy = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": max_receive_count.to_string(),
    });
    let url = create(client, &name, Some(policy.to_string())).await;
    let arn = arn(client, &url).await;
    TestQueue { url, arn, dlq_url }
}

async fn create(client: &aws_sdk_sqs::Client, name: &str, redrive: Option<String>) -> String {
    let mut call = client
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::VisibilityTimeout, "30");
    if let Some(policy) = redrive {
        call = call.attributes(QueueAttributeName::RedrivePolicy, policy);
    }
    call.send()
        .await
        .expect("create queue")
        .queue_url()
        .expect("a queue URL")
        .to_owned()
}

async fn arn(client: &aws_sdk_sqs::Client, url: &str) -> String {
    client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes")
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .expect("a queue ARN")
        .clone()
}

/// Sends a raw body (a poison message, or one written by hand).
///
/// # Panics
/// When moto refuses.
pub async fn send_raw(client: &aws_sdk_sqs::Client, url: &str, body: &str) {
    client
        .send_message()
        .queue_url(url)
        .message_body(body)
        .send()
        .await
        .expect("send message");
}

/// Receives up to 10 visible messages with every system attribute, as the event source
/// mapping does (the queue's visibility timeout applies).
///
/// # Panics
/// When moto refuses.
pub async fn receive(client: &aws_sdk_sqs::Client, url: &str) -> Vec<aws_sdk_sqs::types::Message> {
    client
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(0)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .expect("receive")
        .messages()
        .to_vec()
}

/// The `SqsEvent` Lambda builds from `messages` of the queue `queue_arn`.
pub fn event(messages: &[aws_sdk_sqs::types::Message], queue_arn: &str) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = messages
        .iter()
        .map(|m| {
            let mut record = SqsMessage::default();
            record.message_id = m.message_id().map(str::to_owned);
            record.receipt_handle = m.receipt_handle().map(str::to_owned);
            record.body = m.body().map(str::to_owned);
            record.md5_of_body = m.md5_of_body().map(str::to_owned);
            record.attributes = m
                .attributes()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                .collect();
            record.event_source = Some("aws:sqs".into());
            record.event_source_arn = Some(queue_arn.to_owned());
            record.aws_region = Some("us-east-1".into());
            record
        })
        .collect();
    event
}

/// Deletes the messages the worker did not report as failed, as the event source mapping does
/// with `ReportBatchItemFailures`; the failed ones stay in flight until their visibility ends.
///
/// # Panics
/// When moto refuses.
pub async fn settle(
    client: &aws_sdk_sqs::Client,
    url: &str,
    messages: &[aws_sdk_sqs::types::Message],
    response: &SqsBatchResponse,
) {
    for m in messages {
        let id = m.message_id().unwrap_or_default();
        if response
            .batch_item_failures
            .iter()
            .any(|f| f.item_identifier == id)
        {
            continue;
        }
        client
            .delete_message()
            .queue_url(url)
            .receipt_handle(m.receipt_handle().unwrap_or_default())
            .send()
            .await
            .expect("delete message");
    }
}

/// Messages in the queue: visible, and in flight (received, not yet visible again).
///
/// # Panics
/// When moto refuses.
pub async fn depth(client: &aws_sdk_sqs::Client, url: &str) -> (u64, u64) {
    let out = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .expect("queue attributes");
    let count = |name: &QueueAttributeName| {
        out.attributes()
            .and_then(|a| a.get(name))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (
        count(&QueueAttributeName::ApproximateNumberOfMessages),
        count(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    )
}

/// quayhook's state over `secrets` and `connector`, with the durable path on moto's SQS when
/// the configuration names a queue (`QUAYHOOK_QUEUE_URL`).
pub fn state<S, C>(
    config: quayhook::config::Config,
    secrets: S,
    connector: C,
) -> quayhook::state::State<S, C>
where
    S: quayhook::secrets::SecretSource,
    C: quayhook::cluster::Connector,
{
    let queue = config
        .queue
        .as_ref()
        .map(|q| quayhook::queue::SqsQueue::new(client(), q.url.clone()));
    let state = quayhook::state::State::new(config, secrets, connector);
    match queue {
        Some(queue) => state.with_queue(queue),
        None => state,
    }
}
