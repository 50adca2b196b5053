//! `quayhook check`: everything a delivery needs, verified in order with the function's own
//! configuration, so an operator sees the first broken link with an actionable message.
//!
//! With the durable path configured (`QUAYHOOK_QUEUE_URL`) it also reports the queue: whether
//! it answers, its depth, and its dead-letter queue's depth. The queue helpers here are
//! shared with `quayhook redrive` ([`crate::cli`]).
//!
//! I/O. Prints a report to stdout (secret ids, never contents) and returns an error naming
//! the first failure that stops a delivery.

use std::fmt::Write as _;

use anyhow::{Context as _, anyhow, bail};
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::QueueAttributeName;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use crate::cause::Chain;
use crate::cluster::{KubeConnector, KubeStore, client_config, list_index};
use crate::config::{Config, SecretsConfig};
use crate::secrets::{ConfiguredSecrets, SecretSource};
use kargo_match::warehouse::{GROUP, PLURAL};

/// Runs every check and prints the report.
///
/// # Errors
/// The first problem that would make deliveries fail, with what to do about it.
pub async fn run(config: &Config, secrets: &ConfiguredSecrets) -> anyhow::Result<()> {
    println!("configuration");
    match &config.secrets {
        SecretsConfig::SecretsManager {
            receiver_ids,
            receiver_prefix,
            kubeconfig_id,
        } => {
            println!("  receiver secrets: ids {receiver_ids:?}, name prefix {receiver_prefix:?}");
            println!("  kubeconfig secret: {kubeconfig_id}");
        }
        SecretsConfig::Files {
            receivers,
            kubeconfig,
        } => {
            println!("  receivers file: {}", receivers.display());
            println!("  kubeconfig file: {}", kubeconfig.display());
        }
        SecretsConfig::Eks {
            receiver_ids,
            receiver_prefix,
            cluster,
        } => {
            println!("  receiver secrets: ids {receiver_ids:?}, name prefix {receiver_prefix:?}");
            let endpoint = cluster
                .endpoint
                .as_ref()
                .map_or("from eks:DescribeCluster".to_owned(), |e| e.server.clone());
            println!(
                "  EKS cluster: {} (token from the IAM role; endpoint {endpoint})",
                cluster.cluster
            );
        }
    }
    println!("  base path: {:?}", config.base_path);
    let queue_failure = match &config.queue {
        None => {
            println!(
                "  durable path: off (QUAYHOOK_QUEUE_URL unset: deliveries the cluster cannot take are answered 5xx)"
            );
            None
        }
        Some(queue) => {
            println!("  durable path: queue {}", queue.url);
            check_queue(&sqs_client().await, &queue.url).await
        }
    };

    println!("receivers");
    let fetched = secrets
        .receivers()
        .await
        .context("cannot read receiver secrets (check secretsmanager:BatchGetSecretValue, ListSecrets and GetSecretValue on them, and kms:Decrypt for a customer-managed key)")?;
    for problem in &fetched.problems {
        println!("  SKIPPED {}", Chain(problem));
    }
    if fetched.receivers.is_empty() {
        bail!(
            "no usable receiver secret: store one with `quayhook secret new --project P --receiver R --store ID`"
        );
    }
    for r in &fetched.receivers {
        let scope = if r.project.is_empty() {
            "cluster-level (all namespaces)".to_owned()
        } else {
            format!("project {}", r.project)
        };
        let rotation = if r.previous_secret.is_some() {
            ", previous secret still accepted"
        } else {
            ""
        };
        println!(
            "  {}: receiver {} for {scope}{rotation}",
            r.source, r.receiver
        );
    }

    println!("cluster");
    let kubeconfig = secrets
        .kubeconfig()
        .await
        .context("cannot read the kubeconfig secret (check secretsmanager:GetSecretValue on it)")?;
    let kube_config = client_config(&kubeconfig, config.connect_timeout, config.request_timeout)
        .await
        .context("the kubeconfig secret is not usable")?;
    println!("  API server: {}", kube_config.cluster_url);
    report_token_lifetime(&kubeconfig, std::time::SystemTime::now())?;
    let connector = KubeConnector::from_config(config);
    let store: KubeStore = crate::cluster::Connector::connect(&connector, &kubeconfig)
        .await
        .context("cannot build a client from the kubeconfig")?;
    let version = store
        .client()
        .apiserver_version()
        .await
        .context("cannot reach the API server (network path from the Lambda: VPC, security groups, endpoint access)")?;
    println!(
        "  reachable: Kubernetes {}.{}",
        version.major, version.minor
    );

    let mut scopes: Vec<Option<String>> = fetched
        .receivers
        .iter()
        .map(|r| (!r.project.is_empty()).then(|| r.project.clone()))
        .collect();
    scopes.sort();
    scopes.dedup();
    let mut failures = Vec::new();
    for scope in &scopes {
        let ns = scope.as_deref();
        let label = ns.map_or("all namespaces".to_owned(), |n| format!("namespace {n}"));
        // The verbs the function uses (deploy/rbac.sh grants exactly these): list for the
        // index, patch for the refresh annotation. Nothing GETs a single Warehouse, so `get`
        // is neither granted nor asked for.
        for verb in ["list", "patch"] {
            let allowed = access_review(store.client(), ns, verb)
                .await
                .with_context(|| format!("SelfSubjectAccessReview for {verb} in {label}"))?;
            if !allowed {
                failures.push(format!("the service account may not {verb} {PLURAL}.{GROUP} in {label}: grant it with deploy/rbac.sh"));
            }
        }
        match list_index(&store, ns, config.list_page_size).await {
            Ok(index) => {
                println!(
                    "  {label}: {} warehouse(s), {} subscribed repositories",
                    index.len(),
                    index.url_count()
                );
                for u in index.unreadable() {
                    println!("    UNREADABLE {}: {}", u.name, u.error);
                }
                let mut lines = String::new();
                for (url, keys) in index.urls() {
                    let names: Vec<String> = keys.iter().map(ToString::to_string).collect();
                    let _ = writeln!(lines, "    {url} -> {}", names.join(", "));
                }
                print!("{lines}");
            }
            Err(e) => failures.push(format!("cannot list warehouses in {label}: {}", Chain(&e))),
        }
    }
    failures.extend(queue_failure);
    if !failures.is_empty() {
        for f in &failures {
            println!("  FAILED {f}");
        }
        bail!("{} check(s) failed", failures.len());
    }
    println!("all checks passed");
    Ok(())
}

async fn access_review(
    client: &kube::Client,
    namespace: Option<&str>,
    verb: &str,
) -> Result<bool, kube::Error> {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                group: Some(GROUP.into()),
                resource: Some(PLURAL.into()),
                verb: Some(verb.into()),
                namespace: namespace.map(str::to_owned),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let answer = api.create(&PostParams::default(), &review).await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// Prints the queue section; returns the failure, if any. A non-empty dead-letter queue is
/// reported but does not fail the check: deliveries keep working, and the alarm and
/// `quayhook redrive` deal with it.
async fn check_queue(client: &aws_sdk_sqs::Client, url: &str) -> Option<String> {
    println!("queue");
    let status = match queue_status(client, url).await {
        Ok(status) => status,
        Err(e) => {
            let failure = format!("{e:#}");
            println!("  FAILED {failure}");
            return Some(failure);
        }
    };
    println!("  reachable: {}", status.depth);
    let Some(dlq) = &status.dead_letter else {
        println!(
            "  WARNING no dead-letter queue (no RedrivePolicy): a delivery that keeps failing is retried until the queue's retention ends"
        );
        return None;
    };
    let receives = dlq
        .max_receive_count
        .map_or(String::new(), |n| format!(" after {n} receives"));
    println!("  dead-letter queue{receives}: {}", dlq.url);
    match depth(client, &dlq.url).await {
        Ok(d) if d.total() == 0 => {
            println!("  dead-letter queue: empty");
            None
        }
        Ok(d) => {
            println!(
                "  WARNING dead-letter queue: {d}; once the cluster takes deliveries again: quayhook redrive (make redrive)"
            );
            None
        }
        Err(e) => {
            let failure = format!("{e:#}");
            println!("  FAILED {failure}");
            Some(failure)
        }
    }
}

/// An SQS client from the environment's AWS configuration (region, credentials,
/// `AWS_ENDPOINT_URL`), with the Secrets Manager client's timeouts.
pub async fn sqs_client() -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&crate::secrets::sdk_config().await)
}

/// One line for a failed SQS call: the service's error code and message (e.g.
/// `AWS.SimpleQueueService.NonExistentQueue: The specified queue does not exist.`), the HTTP
/// status of an answer without one, or the SDK's own account (timeouts, connections).
pub(crate) fn sqs_error<E>(e: SdkError<E>) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if let Some(code) = e.code() {
        return anyhow!("{code}: {}", e.message().unwrap_or("(no message)"));
    }
    if let Some(raw) = e.raw_response() {
        return anyhow!("HTTP {} without an AWS error code", raw.status().as_u16());
    }
    anyhow!("{}", DisplayErrorContext(e))
}

/// How many messages a queue holds (SQS's approximate counts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Depth {
    /// Waiting to be received (`ApproximateNumberOfMessages`).
    pub visible: u64,
    /// Received and not yet deleted: being processed, or waiting for a retry after the
    /// worker's backoff (`ApproximateNumberOfMessagesNotVisible`).
    pub not_visible: u64,
    /// Sent with a delay that has not passed (`ApproximateNumberOfMessagesDelayed`).
    pub delayed: u64,
}

impl Depth {
    /// Every message the queue holds.
    pub fn total(&self) -> u64 {
        self.visible + self.not_visible + self.delayed
    }
}

impl std::fmt::Display for Depth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} message(s) waiting, {} in flight or backing off, {} delayed",
            self.visible, self.not_visible, self.delayed
        )
    }
}

/// A queue's dead-letter queue, from its `RedrivePolicy`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its ARN (`deadLetterTargetArn`).
    pub arn: String,
    /// Its URL (`GetQueueUrl`).
    pub url: String,
    /// Receives before SQS moves a message there (`maxReceiveCount`).
    pub max_receive_count: Option<u64>,
}

/// A queue's ARN, depth and dead-letter queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueStatus {
    /// The queue's ARN.
    pub arn: String,
    /// Its depth.
    pub depth: Depth,
    /// Its dead-letter queue, when it has a `RedrivePolicy`.
    pub dead_letter: Option<DeadLetter>,
}

const DEPTH_ATTRIBUTES: [QueueAttributeName; 3] = [
    QueueAttributeName::ApproximateNumberOfMessages,
    QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
    QueueAttributeName::ApproximateNumberOfMessagesDelayed,
];

async fn attributes(
    client: &aws_sdk_sqs::Client,
    url: &str,
    names: &[QueueAttributeName],
) -> anyhow::Result<std::collections::HashMap<QueueAttributeName, String>> {
    let mut request = client.get_queue_attributes().queue_url(url);
    for name in names {
        request = request.attribute_names(name.clone());
    }
    let out = request
        .send()
        .await
        .map_err(sqs_error)
        .with_context(|| {
            format!("cannot read the attributes of queue {url} (check the URL, the region and sqs:GetQueueAttributes on it)")
        })?;
    Ok(out.attributes.unwrap_or_default())
}

fn depth_of(attributes: &std::collections::HashMap<QueueAttributeName, String>) -> Depth {
    let count = |name: &QueueAttributeName| {
        attributes
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Depth {
        visible: count(&QueueAttributeName::ApproximateNumberOfMessages),
        not_visible: count(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        delayed: count(&QueueAttributeName::ApproximateNumberOfMessagesDelayed),
    }
}

/// A queue's depth (`GetQueueAttributes`).
///
/// # Errors
/// When the queue cannot be read, naming the permission.
pub async fn depth(client: &aws_sdk_sqs::Client, url: &str) -> anyhow::Result<Depth> {
    Ok(depth_of(&attributes(client, url, &DEPTH_ATTRIBUTES).await?))
}

/// A queue's ARN and depth, and its dead-letter queue's ARN and URL (resolved with
/// `GetQueueUrl`) when it has a `RedrivePolicy`.
///
/// # Errors
/// When either queue cannot be read, or the redrive policy does not parse.
pub async fn queue_status(client: &aws_sdk_sqs::Client, url: &str) -> anyhow::Result<QueueStatus> {
    let mut names = DEPTH_ATTRIBUTES.to_vec();
    names.extend([
        QueueAttributeName::QueueArn,
        QueueAttributeName::RedrivePolicy,
    ]);
    let attrs = attributes(client, url, &names).await?;
    let arn = attrs
        .get(&QueueAttributeName::QueueArn)
        .cloned()
        .ok_or_else(|| anyhow!("queue {url} reported no QueueArn"))?;
    let dead_letter = match attrs.get(&QueueAttributeName::RedrivePolicy) {
        None => None,
        Some(policy) if policy.trim().is_empty() => None,
        Some(policy) => {
            let (dlq_arn, max_receive_count) = parse_redrive_policy(policy)
                .with_context(|| format!("the RedrivePolicy of queue {url}"))?;
            let (account, name) = queue_arn_parts(&dlq_arn).ok_or_else(|| {
                anyhow!("the dead-letter target {dlq_arn:?} is not an SQS queue ARN")
            })?;
            let dlq_url = client
                .get_queue_url()
                .queue_name(name)
                .queue_owner_aws_account_id(account)
                .send()
                .await
                .map_err(sqs_error)
                .with_context(|| {
                    format!(
                        "cannot find the dead-letter queue {dlq_arn} (check sqs:GetQueueUrl on it)"
                    )
                })?
                .queue_url
                .ok_or_else(|| anyhow!("GetQueueUrl returned no URL for {dlq_arn}"))?;
            Some(DeadLetter {
                arn: dlq_arn,
                url: dlq_url,
                max_receive_count,
            })
        }
    };
    Ok(QueueStatus {
        arn,
        depth: depth_of(&attrs),
        dead_letter,
    })
}

/// The dead-letter queue's ARN and `maxReceiveCount` of a `RedrivePolicy` attribute
/// (`{"deadLetterTargetArn": "arn:…", "maxReceiveCount": 5}`; SQS has written the count both
/// as a number and as a string).
fn parse_redrive_policy(policy: &str) -> anyhow::Result<(String, Option<u64>)> {
    let value: serde_json::Value =
        serde_json::from_str(policy).context("RedrivePolicy is not JSON")?;
    let arn = value
        .get("deadLetterTargetArn")
        .and_then(serde_json::Value::as_str)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| anyhow!("RedrivePolicy has no deadLetterTargetArn"))?;
    let count = value.get("maxReceiveCount").and_then(|c| {
        c.as_u64()
            .or_else(|| c.as_str().and_then(|s| s.trim().parse().ok()))
    });
    Ok((arn.to_owned(), count))
}

/// The account id and queue name of an SQS queue ARN, `arn:PARTITION:sqs:REGION:ACCOUNT:NAME`.
fn queue_arn_parts(arn: &str) -> Option<(&str, &str)> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(_partition), Some("sqs"), Some(_region), Some(account), Some(name)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    (!account.is_empty() && !name.is_empty() && !name.contains(':')).then_some((account, name))
}

/// Prints how long the stored kubeconfig's bearer token has left, from the JWT's `exp` claim
/// read without verifying the token (base64url of its middle part). Never prints the token.
///
/// # Errors
/// When the token has expired: every delivery fails with 401 until a new one is stored
/// (`deploy/kubeconfig-secret.sh`).
fn report_token_lifetime(
    kubeconfig: &kargo_match::token::SecretString,
    now: std::time::SystemTime,
) -> anyhow::Result<()> {
    use crate::cluster::{TokenExpiry, token_expiry};
    const REISSUE: &str = "deploy/kubeconfig-secret.sh";
    let exp = match token_expiry(kubeconfig) {
        TokenExpiry::At(exp) => exp,
        TokenExpiry::NoToken => {
            println!("  token: none in the kubeconfig's current context; expiry not checked");
            return Ok(());
        }
        TokenExpiry::Eks => {
            println!("  token: an EKS token, made afresh from the function's IAM role");
            return Ok(());
        }
        TokenExpiry::NotJwt => {
            println!("  token: not a JWT, so its expiry is unknown");
            return Ok(());
        }
        TokenExpiry::Never => {
            println!(
                "  token: never expires (a legacy service-account token): prefer a bound, expiring one from {REISSUE}"
            );
            return Ok(());
        }
    };
    let now_secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let at = k8s_openapi::jiff::Timestamp::from_second(exp)
        .map_or_else(|_| format!("{exp} (Unix time)"), |t| t.to_string());
    let span = |secs: i64| {
        let (d, h, m) = (secs / 86_400, secs % 86_400 / 3_600, secs % 3_600 / 60);
        match (d, h, m) {
            (0, 0, 0) => "less than a minute".to_owned(),
            (0, 0, m) => format!("{m}m"),
            (0, h, m) => format!("{h}h {m}m"),
            (d, h, _) => format!("{d}d {h}h"),
        }
    };
    let left = exp - now_secs;
    if left <= 0 {
        bail!(
            "the stored token expired at {at} ({} ago): issue a new one with {REISSUE}",
            span(-left)
        );
    }
    let soon = if left < 86_400 {
        format!("; re-issue it soon with {REISSUE}")
    } else {
        String::new()
    };
    println!("  token: expires {at} (in {}){soon}", span(left));
    Ok(())
}

#[cfg(test)]
mod token_lifetime_tests {
    use super::report_token_lifetime;
    use base64::Engine as _;
    use kargo_match::token::SecretString;
    use std::time::{Duration, UNIX_EPOCH};

    fn kubeconfig(token: &str) -> SecretString {
        SecretString::new(format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:6443\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context:\n    cluster: k\n    user: u\n"
        ))
    }

    fn jwt(claims: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.c2ln", b64(r#"{"alg":"RS256"}"#), b64(claims))
    }

    #[test]
    fn an_expired_token_fails_the_check_and_a_live_one_does_not() {
        let now = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let token = jwt(r#"{"exp":2000003600,"sub":"system:serviceaccount:quayhook:quayhook"}"#);
        assert!(report_token_lifetime(&kubeconfig(&token), now).is_ok());
        let late = now + Duration::from_secs(7_200);
        let err = report_token_lifetime(&kubeconfig(&token), late).unwrap_err();
        assert!(
            err.to_string()
                .contains("expired at 2033-05-18T04:33:20Z (1h 0m ago)"),
            "{err}"
        );
        assert!(!err.to_string().contains(&token), "never the token");
    }

    #[test]
    fn tokens_without_a_readable_expiry_are_reported_not_failed() {
        let now = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        for token in [
            jwt(r#"{"sub":"legacy"}"#),
            "opaque-token".to_owned(),
            "a.%%%.c".to_owned(),
            "k8s-aws-v1.aHR0cHM6Ly9zdHM".to_owned(),
        ] {
            assert!(
                report_token_lifetime(&kubeconfig(&token), now).is_ok(),
                "{token}"
            );
        }
        let garbage = SecretString::new("not: [a kubeconfig");
        assert!(report_token_lifetime(&garbage, now).is_ok());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redrive_policies_name_the_dead_letter_queue() {
        assert_eq!(
            parse_redrive_policy(
                r#"{"deadLetterTargetArn":"arn:aws:sqs:eu-west-1:123456789012:dlq","maxReceiveCount":5}"#
            )
            .unwrap(),
            ("arn:aws:sqs:eu-west-1:123456789012:dlq".to_owned(), Some(5))
        );
        assert_eq!(
            parse_redrive_policy(
                r#"{"deadLetterTargetArn":"arn:aws:sqs:r:1:d","maxReceiveCount":"7"}"#
            )
            .unwrap()
            .1,
            Some(7)
        );
        assert!(parse_redrive_policy(r#"{"maxReceiveCount":5}"#).is_err());
        assert!(parse_redrive_policy("not json").is_err());
    }

    #[test]
    fn queue_arns_split_into_account_and_name() {
        assert_eq!(
            queue_arn_parts("arn:aws:sqs:us-east-1:123456789012:quayhook-DeadLetterQueue-AbC"),
            Some(("123456789012", "quayhook-DeadLetterQueue-AbC"))
        );
        assert_eq!(
            queue_arn_parts("arn:aws-cn:sqs:cn-north-1:123456789012:q.fifo"),
            Some(("123456789012", "q.fifo"))
        );
        for bad in [
            "",
            "arn:aws:sns:us-east-1:123456789012:topic",
            "arn:aws:sqs:us-east-1::q",
            "arn:aws:sqs:us-east-1:123456789012:",
            "https://sqs.us-east-1.amazonaws.com/123456789012/q",
        ] {
            assert_eq!(queue_arn_parts(bad), None, "{bad}");
        }
    }

    #[test]
    fn depth_counts_every_state() {
        let d = Depth {
            visible: 2,
            not_visible: 1,
            delayed: 3,
        };
        assert_eq!(d.total(), 6);
        assert_eq!(
            d.to_string(),
            "2 message(s) waiting, 1 in flight or backing off, 3 delayed"
        );
    }
}
