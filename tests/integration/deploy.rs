//! The deployment walkthrough's cluster and secret steps, run as a user would: `kubectl create
//! -f deploy/rbac.yaml`, `deploy/kubeconfig-secret.sh`, `deploy/receiver-secret.sh`,
//! `quayhook url`, then a delivery — against the local API server and moto.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::json;

use quayhook_testkit::events::push;
use quayhook_testkit::fixtures::{QUAY_REPO, wh};
use quayhook_testkit::harness::{Harness, Setup};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(h: &Harness, kubeconfig: &std::path::Path, program: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(program);
    h.operator_env(
        cmd.args(args)
            .current_dir(root())
            .env("KUBECONFIG", kubeconfig)
            .env("QUAYHOOK", env!("CARGO_BIN_EXE_quayhook")),
    )
    .output()
    .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread")]
async fn receiver_secret_script_is_idempotent_and_rotates_on_request() {
    let h = Harness::start(Setup::default()).await;
    let id = format!("{}/receivers/kargo-demo-quay", h.prefix);
    let script = "deploy/receiver-secret.sh";
    let args = [
        "--project",
        "kargo-demo",
        "--receiver",
        "quay",
        "--secret-id",
        id.as_str(),
    ];
    let none = std::path::Path::new("/nonexistent");
    assert_eq!(
        ok(&run(&h, none, script, &args)),
        "",
        "prints no secret material"
    );
    let first = h.secret_json(&id).await;
    ok(&run(&h, none, script, &args));
    assert_eq!(
        first,
        h.secret_json(&id).await,
        "re-running keeps the secret"
    );
    let mut rotate = args.to_vec();
    rotate.push("--rotate");
    ok(&run(&h, none, script, &rotate));
    let rotated: serde_json::Value = h.secret_json(&id).await;
    assert_eq!(rotated["previousSecret"], first["secret"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_deployment_walkthrough_works_end_to_end() {
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        eprintln!("kubectl not found: SKIPPING the kubectl part of the deployment walkthrough");
        return;
    }
    let h = Harness::start(Setup {
        warehouses: vec![wh("kargo-demo", "app").image(QUAY_REPO, json!({})).json()],
        ..Setup::default()
    })
    .await;
    let dir = std::env::temp_dir().join(format!("quayhook-deploy-{}", h.prefix));
    std::fs::create_dir_all(&dir).unwrap();
    let admin = dir.join("admin.kubeconfig");
    std::fs::write(&admin, h.api.kubeconfig_yaml(h.api.admin_token(), None)).unwrap();

    ok(&run(
        &h,
        &admin,
        "kubectl",
        &["create", "-f", "deploy/rbac.yaml", "--validate=false"],
    ));
    let kubeconfig_id = format!("{}/kubeconfig", h.prefix);
    let out = run(
        &h,
        &admin,
        "deploy/kubeconfig-secret.sh",
        &["--secret-id", &kubeconfig_id],
    );
    assert_eq!(ok(&out), "", "prints no kubeconfig unless --print");
    let stored =
        h.sm.get_secret_value()
            .secret_id(&kubeconfig_id)
            .send()
            .await
            .unwrap();
    let stored = stored.secret_string().unwrap().to_owned();
    assert!(
        !stored.contains(h.api.admin_token()),
        "the stored kubeconfig is the service account's"
    );
    assert!(stored.contains("certificate-authority-data"));

    let receiver_id = format!("{}/receivers/kargo-demo-quay", h.prefix);
    ok(&run(
        &h,
        &admin,
        "deploy/receiver-secret.sh",
        &[
            "--project",
            "kargo-demo",
            "--receiver",
            "quay",
            "--secret-id",
            &receiver_id,
        ],
    ));
    let url = ok(&run(
        &h,
        &admin,
        env!("CARGO_BIN_EXE_quayhook"),
        &["url", "--base-url", "https://hooks.example.com"],
    ));
    let token = url.trim().rsplit('/').next().unwrap().to_owned();
    let (status, body) = h.post(&token, &push(QUAY_REPO, &["v1"])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["refreshed"][0]["name"], "app");
    let _ = std::fs::remove_dir_all(&dir);
}
