//! The operator commands (`url`, `check`, `secret new`, `secret put`) as a user runs them:
//! the real binary, configured by environment, against moto and the local API server.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use quayhook_testkit::fixtures::{QUAY_REPO, wh};
use quayhook_testkit::harness::{Harness, Setup};

fn quayhook(h: &Harness, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_quayhook"));
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
