//! The operator commands (`url`, `check`, `secret new`, `secret put`, `redrive`) as a user
//! runs them: the real binary, configured by environment, against moto and the local API
//! server.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use quayhook_testkit::fixtures::{QUAY_REPO, wh};
use quayhook_testkit::harness::{Harness, Setup};
use quayhook_testkit::moto::sqs;

use aws_sdk_sqs::types::QueueAttributeName;

fn quayhook(h: &Harness, args: &[&str], stdin: Option<&str>) -> Output {
    quayhook_env(h, args, stdin, &[])
}

/// [`quayhook`] with extra variables; `QUAYHOOK_QUEUE_URL` is only what `env` sets.
fn quayhook_env(h: &Harness, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_quayhook"));
    cmd.env_remove("QUAYHOOK_QUEUE_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = h
        .operator_env(cmd.args(args))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run quayhook");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("quayhook output")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn url_prints_kargos_url_for_the_same_secret() {
    let h = Harness::start(Setup::default()).await;
    h.receiver("kargo-demo", "q-wh-receiver", "mysecret", None)
        .await;
    let out = quayhook(
        &h,
        &[
            "url",
            "--base-url",
            "https://webhooks.kargo.example.com/a//b/",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Reference §1.1, worked example: same project, receiver and secret as Kargo's.
    assert_eq!(
        text(&out.stdout),
        "kargo-demo\tq-wh-receiver\thttps://webhooks.kargo.example.com/a/b/quay/3e6315f59f25bc201ec77ebb7818c057c4406a4b58d930f27d651b6af36395a9\n"
    );
    let id = format!("{}/receivers/kargo-demo-q-wh-receiver", h.prefix);
    let out = quayhook(
        &h,
        &["url", "--base-url", "https://x.example", "--secret-id", &id],
        None,
    );
    assert!(
        text(&out.stdout)
            .ends_with("/quay/3e6315f59f25bc201ec77ebb7818c057c4406a4b58d930f27d651b6af36395a9\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_passes_and_lists_subscriptions_then_names_a_missing_permission() {
    let h = Harness::start(Setup {
        namespaces: vec!["kargo-demo"],
        warehouses: vec![wh("kargo-demo", "w").image(QUAY_REPO, json!({})).json()],
        ..Setup::default()
    })
    .await;
    h.receiver("kargo-demo", "quay", "s3cret-check", None).await;
    let out = quayhook(&h, &["check"], None);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("namespace kargo-demo: 1 warehouse(s)"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{QUAY_REPO} -> kargo-demo/w")),
        "{stdout}"
    );
    assert!(stdout.contains("all checks passed"));
    assert!(
        !stdout.contains("s3cret-check") && !stdout.contains(&h.sa_token),
        "no secret material"
    );

    // A receiver for a project the service account was not granted.
    h.receiver("elsewhere", "quay", "s3cret-else", None).await;
    let out = quayhook(&h, &["check"], None);
    let stdout = text(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout.contains("may not list warehouses.kargo.akuity.io in namespace elsewhere"),
        "{stdout}"
    );
    assert!(stdout.contains("may not patch"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn secret_new_stores_then_rotates_keeping_the_previous_secret() {
    let h = Harness::start(Setup::default()).await;
    let id = format!("{}/receivers/kargo-demo-quay", h.prefix);
    let args = [
        "secret",
        "new",
        "--project",
        "kargo-demo",
        "--receiver",
        "quay",
        "--store",
        &id,
    ];
    let out = quayhook(&h, &args, None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        out.stdout.is_empty(),
        "secret material is not printed unless asked"
    );
    let first: Value = h.secret_json(&id).await;
    let secret = first["secret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 32);
    assert!(secret.bytes().all(|c| c.is_ascii_alphanumeric()));

    let out = quayhook(&h, &args, None);
    assert!(out.status.success());
    let second: Value = h.secret_json(&id).await;
    assert_eq!(
        second["previousSecret"],
        json!(secret),
        "rotation keeps the old secret"
    );
    assert_ne!(second["secret"], json!(secret));

    let printed = quayhook(&h, &["secret", "new", "--receiver", "cluster"], None);
    let shown: Value = serde_json::from_slice(&printed.stdout).unwrap();
    assert_eq!(
        shown["project"], "",
        "no --project: a cluster-level receiver"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn secret_put_checks_a_kubeconfig_before_storing_it() {
    let h = Harness::start(Setup {
        namespaces: vec!["kargo-demo"],
        ..Setup::default()
    })
    .await;
    assert!(!h.sa_token.is_empty());
    let id = format!("{}/other-kubeconfig", h.prefix);
    let out = quayhook(
        &h,
        &["secret", "put", "--secret-id", &id, "--kubeconfig"],
        Some("users: [exec: {command: aws}]"),
    );
    assert!(!out.status.success());
    let good = h.api.kubeconfig_yaml(&h.sa_token, None);
    let out = quayhook(
        &h,
        &["secret", "put", "--secret-id", &id, "--kubeconfig"],
        Some(&good),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stored = h.sm.get_secret_value().secret_id(&id).send().await.unwrap();
    assert_eq!(stored.secret_string(), Some(good.as_str()));
    assert!(!text(&out.stderr).contains(&h.sa_token));
}

async fn queue_arn(url: &str) -> String {
    let out = sqs::client()
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes");
    out.attributes().unwrap()[&QueueAttributeName::QueueArn].clone()
}

/// A queue without a RedrivePolicy (so without a dead-letter queue).
async fn plain_queue(h: &Harness) -> String {
    let out = sqs::client()
        .create_queue()
        .queue_name(format!("{}-plain", h.prefix))
        .send()
        .await
        .expect("create a queue");
    out.queue_url().unwrap().to_owned()
}

async fn send(url: &str, n: usize) {
    for i in 0..n {
        sqs::client()
            .send_message()
            .queue_url(url)
            .message_body(
                json!({"v": 1, "project": "kargo-demo", "receiver": "quay", "n": i}).to_string(),
            )
            .send()
            .await
            .expect("send a message");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn check_reports_the_queue_and_its_dead_letter_queue() {
    let h = Harness::start(Setup {
        namespaces: vec!["kargo-demo"],
        warehouses: vec![wh("kargo-demo", "w").image(QUAY_REPO, json!({})).json()],
        ..Setup::default()
    })
    .await;
    h.receiver("kargo-demo", "quay", "s3cret-queue", None).await;
    let out = quayhook(&h, &["check"], None);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("durable path: off"), "{stdout}");

    let durable = sqs::create_queue_with_dlq(&sqs::client(), "check", 5).await;
    let (queue, dlq) = (durable.url, durable.dlq_url);
    send(&queue, 2).await;
    send(&dlq, 1).await;
    let out = quayhook_env(&h, &["check"], None, &[("QUAYHOOK_QUEUE_URL", &queue)]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains(&format!("durable path: queue {queue}")),
        "{stdout}"
    );
    assert!(
        stdout.contains("reachable: 2 message(s) waiting, 0 in flight or backing off, 0 delayed"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("dead-letter queue after 5 receives: {dlq}")),
        "the DLQ's URL, resolved from the RedrivePolicy's ARN: {stdout}"
    );
    assert!(
        stdout.contains("WARNING dead-letter queue: 1 message(s) waiting"),
        "{stdout}"
    );
    assert!(stdout.contains("quayhook redrive"), "{stdout}");
    assert!(
        stdout.contains("all checks passed"),
        "a dead-lettered delivery is reported, not a failure: {stdout}"
    );

    // A queue without a dead-letter queue passes with a warning.
    let plain = plain_queue(&h).await;
    let out = quayhook_env(&h, &["check"], None, &[("QUAYHOOK_QUEUE_URL", &plain)]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("WARNING no dead-letter queue"), "{stdout}");

    // A queue that does not exist fails the check, naming the queue and the permission, after
    // the cluster checks still ran.
    let missing = format!("{plain}-missing");
    let out = quayhook_env(&h, &["check"], None, &[("QUAYHOOK_QUEUE_URL", &missing)]);
    let stdout = text(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "FAILED cannot read the attributes of queue {missing}"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("sqs:GetQueueAttributes"), "{stdout}");
    assert!(
        stdout.contains("namespace kargo-demo: 1 warehouse(s)"),
        "{stdout}"
    );
    assert!(!stdout.contains("s3cret-queue") && !stdout.contains(&h.sa_token));
}

#[tokio::test(flavor = "multi_thread")]
async fn redrive_resolves_the_dead_letter_queue_and_asks_sqs_to_move_its_messages() {
    let h = Harness::start(Setup::default()).await;
    let durable = sqs::create_queue_with_dlq(&sqs::client(), "redrive", 5).await;
    let dlq_arn = queue_arn(&durable.dlq_url).await;
    let (queue, queue_arn, dlq) = (durable.url, durable.arn, durable.dlq_url);
    let with_queue = [("QUAYHOOK_QUEUE_URL", queue.as_str())];

    // Arguments: a queue is required; the rate is SQS's range.
    let out = quayhook(&h, &["redrive"], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--queue-url"),
        "{}",
        text(&out.stderr)
    );
    let out = quayhook_env(
        &h,
        &["redrive", "--max-per-second", "501"],
        None,
        &with_queue,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = quayhook_env(&h, &["redrive", "--status", "--dry-run"], None, &with_queue);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    // A queue without a RedrivePolicy has nothing to redrive from.
    let plain = plain_queue(&h).await;
    let out = quayhook(&h, &["redrive", "--queue-url", &plain], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("has no RedrivePolicy"),
        "{}",
        text(&out.stderr)
    );

    // An empty dead-letter queue: nothing to start.
    let out = quayhook_env(&h, &["redrive"], None, &with_queue);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("nothing to move"), "{stdout}");

    // The dry run resolves both ARNs (the DLQ's from the RedrivePolicy, its URL through
    // GetQueueUrl) and moves nothing.
    send(&dlq, 2).await;
    let out = quayhook_env(&h, &["redrive", "--dry-run"], None, &with_queue);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    for want in [&queue, &queue_arn, &dlq, &dlq_arn] {
        assert!(stdout.contains(want.as_str()), "{want} in {stdout}");
    }
    assert!(stdout.contains("2 message(s) waiting"), "{stdout}");
    assert!(stdout.contains("dry run"), "{stdout}");

    // The move itself is SQS's StartMessageMoveTask, which moto 5.2.5 does not implement (it
    // answers 500): the command gets as far as asking for it, names the call and the
    // permissions, and nothing moved. When moto implements it, this becomes the real test.
    let out = quayhook_env(
        &h,
        &["redrive", "--max-per-second", "10"],
        None,
        &with_queue,
    );
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(stderr.contains("StartMessageMoveTask failed"), "{stderr}");
    assert!(stderr.contains("sqs:StartMessageMoveTask"), "{stderr}");
    let out = quayhook_env(&h, &["redrive", "--status"], None, &with_queue);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("ListMessageMoveTasks failed"),
        "{}",
        text(&out.stderr)
    );
    let left = quayhook_env(&h, &["redrive", "--dry-run"], None, &with_queue);
    assert!(text(&left.stdout).contains("2 message(s) waiting"));
}
