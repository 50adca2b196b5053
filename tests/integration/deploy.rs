//! The deployment walkthrough's cluster and secret steps, run as a user would: `deploy/rbac.sh`
//! piped to `kubectl create`, `deploy/kubeconfig-secret.sh` (bound tokens, rotation),
//! `deploy/receiver-secret.sh`, `quayhook url` and `quayhook check`, then a delivery — against
//! the local API server and moto. The kubectl parts are skipped (said loudly) where kubectl is
//! not installed, the KMS parts where the aws CLI is not.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{Value, json};

use quayhook_testkit::events::push;
use quayhook_testkit::fixtures::{QUAY_REPO, wh};
use quayhook_testkit::harness::{Harness, Setup};
use quayhook_testkit::moto;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn command(h: &Harness, kubeconfig: &Path, program: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    h.operator_env(
        cmd.args(args)
            .current_dir(root())
            .env("KUBECONFIG", kubeconfig)
            .env("QUAYHOOK", env!("CARGO_BIN_EXE_quayhook")),
    );
    cmd
}

fn run(h: &Harness, kubeconfig: &Path, program: &str, args: &[&str]) -> Output {
    command(h, kubeconfig, program, args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

/// A shell pipeline (`deploy/rbac.sh … | kubectl create -f -`) in the operator's environment.
fn sh(h: &Harness, kubeconfig: &Path, script: &str) -> Output {
    run(h, kubeconfig, "bash", &["-c", script])
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

fn failed(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "expected a failure\n{}\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

/// Whether `program` runs (`program args…` succeeds); says what is skipped when it does not.
fn have(program: &str, args: &[&str], what: &str) -> bool {
    let found = Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("{program} not found: SKIPPING {what}");
    }
    found
}

fn have_kubectl(what: &str) -> bool {
    have("kubectl", &["version", "--client"], what)
}

async fn secret_text(sm: &aws_sdk_secretsmanager::Client, id: &str) -> String {
    let out = sm
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .expect("secret readable");
    out.secret_string().expect("a text secret").to_owned()
}

/// The bearer token of a kubeconfig the scripts wrote.
fn token_of(kubeconfig: &str) -> String {
    kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("token: "))
        .expect("a token in the kubeconfig")
        .to_owned()
}

/// The claims of a JWT, read without verifying it.
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url claims");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

fn now_secs() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// A scratch directory with an admin kubeconfig for the harness's API server.
fn admin_kubeconfig(h: &Harness, name: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("quayhook-{name}-{}", h.prefix));
    std::fs::create_dir_all(&dir).unwrap();
    let admin = dir.join("admin.kubeconfig");
    std::fs::write(&admin, h.api.kubeconfig_yaml(h.api.admin_token(), None)).unwrap();
    (dir, admin)
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

/// Only ResourceNotFoundException means "no receiver yet": a secret holding something else,
/// another receiver, or one marked for deletion is left as it is, and so is everything when
/// Secrets Manager cannot be reached; the script fails with the cause.
#[tokio::test(flavor = "multi_thread")]
async fn receiver_secret_script_leaves_what_it_cannot_read_as_a_receiver_alone() {
    let h = Harness::start(Setup::default()).await;
    let none = Path::new("/nonexistent");
    let script = "deploy/receiver-secret.sh";
    let args = |id: &str, extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "--project",
            "kargo-demo",
            "--receiver",
            "quay",
            "--secret-id",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        v.push(id.to_owned());
        v.extend(extra.iter().map(|s| (*s).to_owned()));
        v
    };
    let call = |id: &str, extra: &[&str]| {
        let a = args(id, extra);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        run(&h, none, script, &a)
    };

    // A secret that holds something else (here a kubeconfig: a wrong --secret-id).
    let other = format!("{}/kubeconfig-by-mistake", h.prefix);
    let content = "apiVersion: v1\nkind: Config\n";
    moto::put_secret(&h.sm, &other, content).await;
    for extra in [&[][..], &["--rotate"][..]] {
        let stderr = failed(&call(&other, extra));
        assert!(stderr.contains("is not a receiver"), "{stderr}");
        assert!(stderr.contains("left as it is"), "{stderr}");
        assert_eq!(secret_text(&h.sm, &other).await, content, "not overwritten");
    }

    // Another receiver's secret.
    let theirs = format!("{}/receivers/other-project-quay", h.prefix);
    let held = json!({"project": "other-project", "receiver": "quay", "secret": "theirs"});
    moto::put_secret(&h.sm, &theirs, &held.to_string()).await;
    for extra in [&[][..], &["--rotate"][..]] {
        let stderr = failed(&call(&theirs, extra));
        assert!(stderr.contains("of project \"other-project\""), "{stderr}");
        assert_eq!(h.secret_json(&theirs).await, held, "not overwritten");
    }

    // A receiver secret marked for deletion: InvalidRequestException, not "not found".
    let deleted = format!("{}/receivers/kargo-demo-deleted", h.prefix);
    let mine = json!({"project": "kargo-demo", "receiver": "quay", "secret": "mine"});
    moto::put_secret(&h.sm, &deleted, &mine.to_string()).await;
    h.sm.delete_secret()
        .secret_id(&deleted)
        .recovery_window_in_days(7)
        .send()
        .await
        .unwrap();
    let stderr = failed(&call(&deleted, &[]));
    assert!(stderr.contains("InvalidRequestException"), "{stderr}");
    h.sm.restore_secret()
        .secret_id(&deleted)
        .send()
        .await
        .unwrap();
    assert_eq!(h.secret_json(&deleted).await, mine, "not overwritten");

    // Secrets Manager unreachable: nothing is created.
    let unreachable = format!("{}/receivers/kargo-demo-unreachable", h.prefix);
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let a = args(&unreachable, &[]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let out = command(&h, none, script, &a)
        .env("AWS_ENDPOINT_URL", &dead_url)
        .env("AWS_MAX_ATTEMPTS", "1")
        .output()
        .unwrap();
    let stderr = failed(&out);
    assert!(stderr.contains("cannot tell whether"), "{stderr}");
    assert!(
        h.sm.describe_secret()
            .secret_id(&unreachable)
            .send()
            .await
            .is_err(),
        "nothing created"
    );
}

/// A moto server of its own with IAM enforced (moto's `INITIAL_NO_AUTH_ACTION_COUNT`): the
/// first requests create an admin and an operator whose policy denies reading secret values
/// but allows writing them. Stopped when dropped.
struct IamMoto {
    child: Child,
    url: String,
    admin: (String, String),
    operator: (String, String),
}

impl Drop for IamMoto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl IamMoto {
    fn start() -> Option<IamMoto> {
        let venv = root().join(".venv/bin");
        let (server, python) = (venv.join("moto_server"), venv.join("python"));
        if !server.exists() || !python.exists() {
            eprintln!("no .venv with moto_server: SKIPPING the IAM-denied receiver secret test");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Six unauthenticated calls: two users, their policies and their access keys.
        let child = Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "6")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let url = format!("http://127.0.0.1:{port}");
        let mut moto = IamMoto {
            child,
            url,
            admin: Default::default(),
            operator: Default::default(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let setup = r#"
import json, sys, boto3
iam = boto3.client("iam", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="testing", aws_secret_access_key="testing")
policies = {
    "admin": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
    "operator": [
        {"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"},
        {"Effect": "Deny", "Action": ["secretsmanager:GetSecretValue",
                                      "secretsmanager:BatchGetSecretValue"], "Resource": "*"},
    ],
}
keys = {}
for user, statements in policies.items():
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": statements}))
    k = iam.create_access_key(UserName=user)["AccessKey"]
    keys[user] = [k["AccessKeyId"], k["SecretAccessKey"]]
print(json.dumps(keys))
"#;
        let out = Command::new(&python)
            .args(["-c", setup, &moto.url])
            .output()
            .expect("run the IAM setup");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let keys: Value = serde_json::from_slice(&out.stdout).expect("keys");
        let pair = |user: &str| {
            (
                keys[user][0].as_str().unwrap().to_owned(),
                keys[user][1].as_str().unwrap().to_owned(),
            )
        };
        moto.admin = pair("admin");
        moto.operator = pair("operator");
        Some(moto)
    }

    fn client(&self, (id, secret): &(String, String)) -> aws_sdk_secretsmanager::Client {
        use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
        let config = aws_sdk_secretsmanager::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&self.url)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(id, secret, None, None, "iam-moto"))
            .build();
        aws_sdk_secretsmanager::Client::from_conf(config)
    }

    fn as_user(&self, cmd: &mut Command, (id, secret): &(String, String)) -> Output {
        cmd.env("AWS_ENDPOINT_URL", &self.url)
            .env("AWS_ACCESS_KEY_ID", id)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_MAX_ATTEMPTS", "1")
            .output()
            .expect("run as a moto IAM user")
    }
}

/// An operator who may write secrets but not read them (an IAM policy denying GetSecretValue
/// and BatchGetSecretValue): the script stops with AccessDenied instead of taking the denied
/// read for "no receiver yet" and overwriting the live receiver.
#[tokio::test(flavor = "multi_thread")]
async fn receiver_secret_script_does_not_overwrite_a_receiver_it_may_not_read() {
    let Some(moto) = IamMoto::start() else {
        return;
    };
    let h = Harness::start(Setup::default()).await;
    let none = Path::new("/nonexistent");
    let id = "quayhook/receivers/kargo-demo-quay";
    let args = [
        "--project",
        "kargo-demo",
        "--receiver",
        "quay",
        "--secret-id",
        id,
    ];
    let script = "deploy/receiver-secret.sh";
    ok(&moto.as_user(&mut command(&h, none, script, &args), &moto.admin));
    let admin = moto.client(&moto.admin);
    let live = secret_text(&admin, id).await;

    for rotate in [false, true] {
        let mut a = args.to_vec();
        if rotate {
            a.push("--rotate");
        }
        let out = moto.as_user(&mut command(&h, none, script, &a), &moto.operator);
        let stderr = failed(&out);
        // moto answers the denial in XML, which the SDK reports as an unparsable error; AWS
        // says AccessDeniedException. Either way the read failed for another reason than
        // ResourceNotFoundException.
        assert!(
            stderr.contains("cannot tell whether") && stderr.contains("secret store unavailable"),
            "{stderr}"
        );
        assert_eq!(
            secret_text(&admin, id).await,
            live,
            "the live receiver stays"
        );
    }
    // What the old script did after the denied read (`quayhook secret new --store`): this
    // operator may write, so a live receiver would have been replaced.
    let victim = "quayhook/receivers/kargo-demo-victim";
    let mut a = args.to_vec();
    a[5] = victim;
    ok(&moto.as_user(&mut command(&h, none, script, &a), &moto.admin));
    let before = secret_text(&admin, victim).await;
    let new = [
        "secret",
        "new",
        "--project",
        "kargo-demo",
        "--receiver",
        "quay",
        "--store",
        victim,
    ];
    let quayhook = env!("CARGO_BIN_EXE_quayhook");
    ok(&moto.as_user(&mut command(&h, none, quayhook, &new), &moto.operator));
    assert_ne!(secret_text(&admin, victim).await, before);
}

/// `--kms-key-id`: both scripts create their secret encrypted with the given key.
#[tokio::test(flavor = "multi_thread")]
async fn scripts_create_their_secrets_with_the_given_kms_key() {
    if !have(
        "aws",
        &["--version"],
        "the --kms-key-id tests (the scripts create the secret with it)",
    ) {
        return;
    }
    let h = Harness::start(Setup {
        warehouses: vec![wh("kargo-demo", "app").image(QUAY_REPO, json!({})).json()],
        ..Setup::default()
    })
    .await;
    let none = Path::new("/nonexistent");
    let key = ok(&run(
        &h,
        none,
        "aws",
        &[
            "--region",
            "us-east-1",
            "kms",
            "create-key",
            "--query",
            "KeyMetadata.KeyId",
            "--output",
            "text",
        ],
    ))
    .trim()
    .to_owned();
    let id = format!("{}/receivers/kargo-demo-kms", h.prefix);
    let args = [
        "--project",
        "kargo-demo",
        "--receiver",
        "quay",
        "--secret-id",
        id.as_str(),
        "--kms-key-id",
        key.as_str(),
    ];
    ok(&run(&h, none, "deploy/receiver-secret.sh", &args));
    let described = h.sm.describe_secret().secret_id(&id).send().await.unwrap();
    assert_eq!(described.kms_key_id(), Some(key.as_str()));
    assert_eq!(h.secret_json(&id).await["receiver"], "quay");
    // Re-running keeps it; an existing secret on the AWS managed key is refused.
    ok(&run(&h, none, "deploy/receiver-secret.sh", &args));
    let plain = format!("{}/receivers/kargo-demo-plain", h.prefix);
    ok(&run(
        &h,
        none,
        "deploy/receiver-secret.sh",
        &[
            "--project",
            "kargo-demo",
            "--receiver",
            "plain",
            "--secret-id",
            &plain,
        ],
    ));
    let before = secret_text(&h.sm, &plain).await;
    let stderr = failed(&run(
        &h,
        none,
        "deploy/receiver-secret.sh",
        &[
            "--project",
            "kargo-demo",
            "--receiver",
            "plain",
            "--secret-id",
            &plain,
            "--rotate",
            "--kms-key-id",
            &key,
        ],
    ));
    assert!(stderr.contains("AWS managed key"), "{stderr}");
    assert_eq!(secret_text(&h.sm, &plain).await, before);

    if !have_kubectl("the kubeconfig part of the --kms-key-id test") {
        return;
    }
    let (dir, admin) = admin_kubeconfig(&h, "kms");
    ok(&sh(
        &h,
        &admin,
        "deploy/rbac.sh --project kargo-demo | kubectl create --validate=false -f -",
    ));
    let kubeconfig_id = format!("{}/kubeconfig-kms", h.prefix);
    ok(&run(
        &h,
        &admin,
        "deploy/kubeconfig-secret.sh",
        &["--secret-id", &kubeconfig_id, "--kms-key-id", &key],
    ));
    let described =
        h.sm.describe_secret()
            .secret_id(&kubeconfig_id)
            .send()
            .await
            .unwrap();
    assert_eq!(described.kms_key_id(), Some(key.as_str()));
    assert!(secret_text(&h.sm, &kubeconfig_id).await.contains("token: "));
    let _ = std::fs::remove_dir_all(&dir);
}

/// deploy/rbac.sh: exactly the verbs quayhook uses, per project, and nothing that mints tokens.
#[test]
fn rbac_script_grants_list_and_patch_per_project_and_nothing_else() {
    let out = Command::new("deploy/rbac.sh")
        .args(["--project", "kargo-demo", "--project", "team-b"])
        .current_dir(root())
        .output()
        .unwrap();
    let yaml = ok(&out);
    assert_eq!(yaml.matches("\nkind: Role\n").count(), 2, "{yaml}");
    assert_eq!(yaml.matches("\nkind: RoleBinding\n").count(), 2);
    assert!(yaml.contains("  namespace: kargo-demo\n") && yaml.contains("  namespace: team-b\n"));
    assert_eq!(
        yaml.matches(r#"verbs: ["list", "patch"]"#).count(),
        2,
        "{yaml}"
    );
    assert!(yaml.contains("automountServiceAccountToken: false"));
    for absent in [
        "\"get\"",
        "serviceaccounts",
        "kubernetes.io/service-account-token",
        "ValidatingAdmissionPolicy",
    ] {
        assert!(!yaml.contains(absent), "{absent} in {yaml}");
    }

    let out = Command::new("deploy/rbac.sh")
        .args([
            "--cluster",
            "--namespace",
            "hooks",
            "--service-account",
            "qh",
            "--admission-policy",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    let yaml = ok(&out);
    assert!(
        yaml.contains("\nkind: ClusterRole\n") && yaml.contains("\nkind: ClusterRoleBinding\n")
    );
    assert!(!yaml.contains("\nkind: Role\n"));
    assert!(
        yaml.contains("request.userInfo.username == 'system:serviceaccount:hooks:qh'"),
        "{yaml}"
    );
    assert!(!yaml.contains("system:serviceaccount:quayhook:quayhook"));
    assert_eq!(
        yaml.matches("quayhook-refresh-only-hooks-qh").count(),
        3,
        "policy, binding and the binding's policyName: {yaml}"
    );

    let legacy = Command::new("deploy/rbac.sh")
        .args(["--project", "kargo-demo", "--legacy-token-secret"])
        .current_dir(root())
        .output()
        .unwrap();
    let yaml = ok(&legacy);
    assert!(yaml.contains("type: kubernetes.io/service-account-token"));
    assert!(yaml.contains("NOT recommended"));

    for refused in [&[][..], &["--project", "p", "--", "--validate=false"][..]] {
        let out = Command::new("deploy/rbac.sh")
            .args(refused)
            .current_dir(root())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{refused:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_deployment_walkthrough_works_end_to_end() {
    if !have_kubectl("the kubectl part of the deployment walkthrough") {
        return;
    }
    let h = Harness::start(Setup {
        warehouses: vec![wh("kargo-demo", "app").image(QUAY_REPO, json!({})).json()],
        ..Setup::default()
    })
    .await;
    let (dir, admin) = admin_kubeconfig(&h, "deploy");

    // The local API server serves no OpenAPI document for kubectl's client-side validation.
    ok(&run(
        &h,
        &admin,
        "deploy/rbac.sh",
        &[
            "--project",
            "kargo-demo",
            "--apply",
            "--",
            "--validate=false",
        ],
    ));
    let sa = h
        .api
        .get("serviceaccounts", Some("quayhook"), "quayhook")
        .unwrap();
    assert_eq!(sa["automountServiceAccountToken"], false);
    let kubeconfig_id = format!("{}/kubeconfig", h.prefix);
    let out = run(
        &h,
        &admin,
        "deploy/kubeconfig-secret.sh",
        &["--secret-id", &kubeconfig_id],
    );
    assert_eq!(ok(&out), "", "prints no kubeconfig unless --print");
    let stored = secret_text(&h.sm, &kubeconfig_id).await;
    assert!(
        !stored.contains(h.api.admin_token()),
        "the stored kubeconfig is the service account's"
    );
    assert!(stored.contains("certificate-authority-data"));
    let token = token_of(&stored);
    h.sensitive(token.clone());
    let c = claims(&token);
    assert_eq!(c["sub"], "system:serviceaccount:quayhook:quayhook");
    assert_eq!(
        c["kubernetes.io"]["secret"]["name"], "quayhook-token-binding-1",
        "bound to the binding Secret"
    );
    let left = c["exp"].as_i64().unwrap() - now_secs();
    assert!(
        (7 * 86_400 - 120..=7 * 86_400).contains(&left),
        "7 days by default: {left}s"
    );

    // quayhook's own identity cannot mint tokens.
    let sa_kubeconfig = dir.join("quayhook.kubeconfig");
    std::fs::write(&sa_kubeconfig, &stored).unwrap();
    let out = run(
        &h,
        &sa_kubeconfig,
        "bash",
        &[
            "-c",
            r#"echo '{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{}}' |
               kubectl create --raw /api/v1/namespaces/quayhook/serviceaccounts/quayhook/token -f -"#,
        ],
    );
    let stderr = failed(&out);
    assert!(stderr.contains("forbidden"), "{stderr}");
    let denied = h
        .api
        .requests()
        .into_iter()
        .rfind(|r| r.resource == "serviceaccounts/token")
        .unwrap();
    assert_eq!(
        (denied.status, denied.user.as_str()),
        (403, "system:serviceaccount:quayhook:quayhook")
    );

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

    // `quayhook check` passes with list and patch only, and says how long the token has.
    let check = run(&h, &admin, env!("CARGO_BIN_EXE_quayhook"), &["check"]);
    let report = ok(&check);
    assert!(report.contains("all checks passed"), "{report}");
    assert!(report.contains("  token: expires "), "{report}");
    assert!(
        report.contains("(in 6d 23h)") || report.contains("(in 7d 0h)"),
        "{report}"
    );
    assert!(!report.contains(&token), "never the token");

    let receiver_token = url.trim().rsplit('/').next().unwrap().to_owned();
    let (status, body) = h.post(&receiver_token, &push(QUAY_REPO, &["v1"])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["refreshed"][0]["name"], "app");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Re-running deploy/kubeconfig-secret.sh rotates make-before-break: the new token is minted
/// and stored before the old one's binding Secret is deleted (during --grace both work); a
/// failed store revokes only the new token; another kubeconfig secret's token is untouched.
#[tokio::test(flavor = "multi_thread")]
async fn kubeconfig_rotation_stores_the_new_token_before_revoking_the_old() {
    if !have_kubectl("the token rotation test") {
        return;
    }
    let h = Harness::start(Setup {
        warehouses: vec![wh("kargo-demo", "app").image(QUAY_REPO, json!({})).json()],
        ..Setup::default()
    })
    .await;
    let (dir, admin) = admin_kubeconfig(&h, "rotate");
    ok(&sh(
        &h,
        &admin,
        "deploy/rbac.sh --project kargo-demo | kubectl create --validate=false -f -",
    ));
    let id = format!("{}/kubeconfig", h.prefix);
    let script = "deploy/kubeconfig-secret.sh";
    let binding = |n: u32| {
        h.api
            .get(
                "secrets",
                Some("quayhook"),
                &format!("quayhook-token-binding-{n}"),
            )
            .is_some()
    };

    ok(&run(&h, &admin, script, &["--secret-id", &id]));
    let t1 = token_of(&secret_text(&h.sm, &id).await);
    h.sensitive(t1.clone());
    assert!(h.api.authenticates(&t1) && binding(1));
    let receiver = h
        .receiver("kargo-demo", "quay", "s3cret-rotate", None)
        .await;
    let (status, body) = h.post(&receiver, &push(QUAY_REPO, &["v1"])).await;
    assert_eq!(status, 200, "the function uses the first token: {body}");
    let b1 = h
        .api
        .get("secrets", Some("quayhook"), "quayhook-token-binding-1")
        .unwrap();
    assert_eq!(b1["type"], "Opaque");
    assert!(
        b1.get("data")
            .is_none_or(|d| d.as_object().is_none_or(|m| m.is_empty()))
    );

    // Another Lambda's kubeconfig secret for the same ServiceAccount: its own binding.
    let other_id = format!("{}/kubeconfig-other-stack", h.prefix);
    ok(&run(&h, &admin, script, &["--secret-id", &other_id]));
    let other = token_of(&secret_text(&h.sm, &other_id).await);
    h.sensitive(other.clone());
    assert!(binding(2));

    // Rotation with a grace period: the new token is stored while the old one still works.
    h.api.reset_requests();
    let mut rotation = command(
        &h,
        &admin,
        script,
        &["--secret-id", &id, "--rotate", "--grace", "4s"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let t2 = loop {
        let t = token_of(&secret_text(&h.sm, &id).await);
        if t != t1 {
            break t;
        }
        assert!(Instant::now() < deadline, "the new token was not stored");
        assert!(
            rotation.try_wait().unwrap().is_none(),
            "rotation ended early"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    h.sensitive(t2.clone());
    assert!(
        h.api.authenticates(&t1) && binding(1),
        "the old token works until the grace period ends"
    );
    assert!(h.api.authenticates(&t2));
    let status = wait(&mut rotation, Duration::from_secs(60));
    let mut stderr = String::new();
    rotation
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("revoked the previous token(s): deleted quayhook-token-binding-1"));
    assert!(
        !h.api.authenticates(&t1) && !binding(1),
        "then it is revoked"
    );
    assert!(h.api.authenticates(&t2) && binding(3));
    assert!(
        h.api.authenticates(&other) && binding(2),
        "another kubeconfig secret's token is not revoked"
    );
    // In the API server's log: the new token is minted before the old binding is deleted.
    let log = h.api.requests();
    let minted = log
        .iter()
        .position(|r| r.resource == "serviceaccounts/token" && r.status == 201)
        .unwrap();
    let revoked = log
        .iter()
        .position(|r| r.verb == "delete" && r.name.as_deref() == Some("quayhook-token-binding-1"))
        .unwrap();
    assert!(minted < revoked);
    // The function, warm with the revoked token, gets a 401, re-reads the kubeconfig secret
    // and delivers with the new token.
    let (status, body) = h.post(&receiver, &push(QUAY_REPO, &["v2"])).await;
    assert_eq!(status, 200, "{body}");
    let patches: Vec<u16> = h
        .api
        .requests()
        .iter()
        .filter(|r| r.verb == "list" || r.verb == "patch")
        .filter(|r| r.resource == "warehouses")
        .map(|r| r.status)
        .collect();
    assert!(
        patches.contains(&401) && patches.last() == Some(&200),
        "{patches:?}"
    );

    // A store that fails (Secrets Manager unreachable): the new binding, and so the new token,
    // is deleted; the stored kubeconfig and the current token stay.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let out = command(&h, &admin, script, &["--secret-id", &id])
        .env("AWS_ENDPOINT_URL", &dead_url)
        .env("AWS_MAX_ATTEMPTS", "1")
        .output()
        .unwrap();
    let stderr = failed(&out);
    assert!(
        stderr.contains("not stored: deleting quayhook/quayhook-token-binding-4"),
        "{stderr}"
    );
    assert!(!binding(4), "the new token is revoked");
    assert_eq!(token_of(&secret_text(&h.sm, &id).await), t2);
    assert!(
        h.api.authenticates(&t2) && binding(3),
        "the current token stays"
    );

    // --expiry: a shorter lifetime; below the TokenRequest minimum is refused.
    ok(&run(
        &h,
        &admin,
        script,
        &["--secret-id", &id, "--expiry", "2h"],
    ));
    let t5 = token_of(&secret_text(&h.sm, &id).await);
    h.sensitive(t5.clone());
    let left = claims(&t5)["exp"].as_i64().unwrap() - now_secs();
    assert!((7_000..=7_200).contains(&left), "{left}");
    let check = run(&h, &admin, env!("CARGO_BIN_EXE_quayhook"), &["check"]);
    let report = String::from_utf8_lossy(&check.stdout).into_owned();
    assert!(
        (report.contains("(in 1h 59m)") || report.contains("(in 2h 0m)"))
            && report.contains("; re-issue it soon with deploy/kubeconfig-secret.sh"),
        "{report}"
    );
    let stderr = failed(&run(
        &h,
        &admin,
        script,
        &["--secret-id", &id, "--expiry", "5m"],
    ));
    assert!(stderr.contains("at least 10m"), "{stderr}");

    // Deleting the binding Secret revokes the token at once.
    let bound_to = claims(&t5)["kubernetes.io"]["secret"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(h.api.authenticates(&t5));
    ok(&run(
        &h,
        &admin,
        "kubectl",
        &["-n", "quayhook", "delete", "secret", &bound_to],
    ));
    assert!(!h.api.authenticates(&t5));
    let _ = std::fs::remove_dir_all(&dir);
}

fn wait(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the script did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The local API server's TokenRequest binds tokens as kube-apiserver does (what the rotation
/// relies on, tested here without kubectl): `boundObjectRef` to a Secret that must exist (404),
/// with the uid given (409), of a kind tokens bind to (400); the token stops authenticating
/// when that Secret is deleted, and when it expires.
#[tokio::test(flavor = "multi_thread")]
async fn bound_tokens_are_revoked_with_their_secret_and_expire() {
    use k8s_openapi::api::authentication::v1::{
        BoundObjectReference, TokenRequest, TokenRequestSpec,
    };
    use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
    use kube::api::{Api, DeleteParams, PostParams};

    let h = Harness::start(Setup {
        namespaces: vec!["kargo-demo"],
        ..Setup::default()
    })
    .await;
    let admin = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::from_yaml(&h.api.kubeconfig_yaml(h.api.admin_token(), None))
                .unwrap(),
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .unwrap(),
    )
    .unwrap();
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), "quayhook");
    let binding: Secret = serde_json::from_value(json!({
        "metadata": {"name": "quayhook-token-binding-1"}, "type": "Opaque",
    }))
    .unwrap();
    let binding = secrets
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let uid = binding.metadata.uid.clone().unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), "quayhook");
    let request = |kind: &str, name: &str, uid: Option<&str>| TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(600),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some(kind.into()),
                name: Some(name.into()),
                uid: uid.map(str::to_owned),
            }),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let code = |r: Result<TokenRequest, kube::Error>| match r {
        Err(kube::Error::Api(s)) => s.code,
        other => panic!("expected an API error: {other:?}"),
    };
    let post = PostParams::default();
    let issued = sas
        .create_token_request("quayhook", &post, &request("Secret", &binding_name(), None))
        .await
        .unwrap();
    let echoed = issued.spec.and_then(|s| s.bound_object_ref).unwrap();
    assert_eq!(echoed.uid.as_deref(), Some(uid.as_str()), "uid filled in");
    let token = issued.status.and_then(|s| s.token).unwrap();
    h.sensitive(token.clone());
    assert!(h.api.authenticates(&token));
    assert_eq!(
        claims(&token)["kubernetes.io"]["secret"],
        json!({"name": "quayhook-token-binding-1", "uid": uid})
    );
    let missing = sas
        .create_token_request("quayhook", &post, &request("Secret", "nope", None))
        .await;
    assert_eq!(code(missing), 404);
    let recreated = sas
        .create_token_request(
            "quayhook",
            &post,
            &request("Secret", &binding_name(), Some("another-uid")),
        )
        .await;
    assert_eq!(code(recreated), 409);
    let wrong_kind = sas
        .create_token_request("quayhook", &post, &request("ConfigMap", "x", None))
        .await;
    assert_eq!(code(wrong_kind), 400);

    secrets
        .delete(&binding_name(), &DeleteParams::default())
        .await
        .unwrap();
    assert!(!h.api.authenticates(&token), "deleting the Secret revokes");
    // A ServiceAccount token with a short life (TokenRequest's minimum is 10 minutes).
    let short = h
        .api
        .issue_token("quayhook", "quayhook", Duration::from_millis(300));
    assert!(h.api.authenticates(&short));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!h.api.authenticates(&short), "expired");
}

fn binding_name() -> String {
    "quayhook-token-binding-1".to_owned()
}
