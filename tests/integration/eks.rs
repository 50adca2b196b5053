//! Keyless EKS access (src/eks.rs), tested in layers because moto's STS checks no presigned
//! signature: the token generator against botocore's presigner byte for byte (the golden
//! test); then deliveries in EKS mode over the local API server, whose EKS authenticator
//! checks tokens as aws-iam-authenticator does, verifies the signature for its own cluster
//! name, asks moto's STS who signed, and maps that role through an access entry to a user
//! that RBAC then judges; and DescribeCluster against moto's EKS.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use kargo_match::token::SecretString;
use quayhook::config::{Config, EksConfig, SecretsConfig};
use quayhook::eks::{EksAccess, EksError};
use quayhook::secrets::{ConfiguredSecrets, Receivers, SecretSource, SecretsError, SecretsManager};
use quayhook::state::State;
use quayhook_testkit::events::push;
use quayhook_testkit::fixtures::{QUAY_REPO, wh};
use quayhook_testkit::harness::{Harness, Setup, deliver};
use quayhook_testkit::moto;

const NS: &str = "kargo-demo";
const CLUSTER: &str = "quayhook-test";
const ROLE: &str = "arn:aws:iam::123456789012:role/quayhook-function";
/// The Kubernetes group deploy/eks-access-entry.sh maps the function's role to.
const GROUP: &str = "quayhook:warehouse-refreshers";

// ---- the golden test ----------------------------------------------------------------------

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The token botocore makes for the same inputs, by `eks/botocore_token.py`; `None` (the test
/// says it skipped) without the venv.
fn botocore_token(
    cluster: &str,
    region: &str,
    creds: &Credentials,
    at: SystemTime,
) -> Option<String> {
    let python = workspace().join(".venv/bin/python");
    if !python.exists() {
        return None;
    }
    let epoch = at.duration_since(UNIX_EPOCH).unwrap().as_secs().to_string();
    let out = std::process::Command::new(python)
        .arg(workspace().join("tests/integration/eks/botocore_token.py"))
        .args([
            cluster,
            region,
            creds.access_key_id(),
            creds.secret_access_key(),
            creds.session_token().unwrap_or("-"),
            &epoch,
        ])
        // Only the arguments count: no profile, region or credentials from this process.
        .env_clear()
        .env("HOME", "/nonexistent")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .output()
        .expect("run botocore_token.py");
    assert!(
        out.status.success(),
        "botocore_token.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap().trim().to_owned())
}

#[test]
fn tokens_are_botocore_s_byte_for_byte() {
    let at = |secs: u64| UNIX_EPOCH + Duration::from_secs(secs);
    let cases = [
        (
            "quayhook-test",
            "us-east-1",
            Credentials::new(
                "AKIDEXAMPLE",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                None,
                None,
                "test",
            ),
            at(1_767_225_600),
        ),
        (
            "prod_cluster-2",
            "eu-west-1",
            Credentials::new(
                "ASIAQUAYHOOKEXAMPLE1",
                "s3cr3t/+=key",
                Some("IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQ+/=&x".into()),
                None,
                "test",
            ),
            at(1_780_000_123),
        ),
        (
            "c",
            "cn-north-1",
            Credentials::new("ASIACN", "k", Some("t".into()), None, "test"),
            at(1_700_000_059),
        ),
    ];
    for (cluster, region, creds, at) in cases {
        let Some(expected) = botocore_token(cluster, region, &creds, at) else {
            eprintln!(
                "skipped: .venv/bin/python (botocore, installed with moto by `make venv`) not found"
            );
            return;
        };
        let ours = quayhook::eks::token(cluster, region, &creds, at).unwrap();
        assert_eq!(ours.expose(), expected, "{cluster} {region}");
    }
}

// ---- EKS mode against the local API server ------------------------------------------------

/// Counts kubeconfig reads and keeps the tokens it hands out, so the test can register them as
/// values that must never be logged.
struct Recording<S> {
    inner: S,
    reads: Arc<Mutex<Vec<String>>>,
}

impl<S: SecretSource> SecretSource for Recording<S> {
    async fn receivers(&self) -> Result<Receivers, SecretsError> {
        self.inner.receivers().await
    }

    async fn kubeconfig(&self) -> Result<SecretString, SecretsError> {
        let kubeconfig = self.inner.kubeconfig().await?;
        let doc: Value = serde_json::from_str(kubeconfig.expose()).expect("a JSON kubeconfig");
        let token = doc["users"][0]["user"]["token"]
            .as_str()
            .unwrap()
            .to_owned();
        self.reads.lock().unwrap().push(token);
        Ok(kubeconfig)
    }

    fn kubeconfig_max_age(&self) -> Option<Duration> {
        self.inner.kubeconfig_max_age()
    }
}

/// A test's cluster in EKS mode: the harness (for moto, receivers and leak checks), the
/// function role's moto credentials, and the state under test.
struct Eks {
    h: Harness,
    creds: moto::TemporaryCredentials,
    tokens: Arc<Mutex<Vec<String>>>,
}

fn eks_client() -> aws_sdk_eks::Client {
    let config = aws_sdk_eks::Config::builder()
        .behavior_version(aws_sdk_eks::config::BehaviorVersion::latest())
        .endpoint_url(moto::endpoint())
        .region(aws_sdk_eks::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_eks::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .build();
    aws_sdk_eks::Client::from_conf(config)
}

impl Eks {
    /// An API server that authenticates EKS tokens for [`CLUSTER`], with an access entry that
    /// maps [`ROLE`] to [`GROUP`] and an RBAC Role granting that group list, get and patch on
    /// Warehouses in [`NS`] (what deploy/eks-access-entry.sh sets up); the function's role
    /// assumed in moto; and a Warehouse subscribed to [`QUAY_REPO`].
    async fn start() -> Eks {
        let h = Harness::start(Setup {
            namespaces: vec![NS],
            warehouses: vec![wh(NS, "a").image(QUAY_REPO, json!({})).json()],
            ..Setup::default()
        })
        .await;
        h.api.enable_eks_auth(CLUSTER, &moto::endpoint());
        let creds = moto::assume_role(ROLE, "quayhook").await;
        h.sensitive(creds.secret_access_key.clone());
        h.sensitive(creds.session_token.clone());
        h.api
            .eks_signing_key(&creds.access_key_id, &creds.secret_access_key);
        h.api.eks_access_entry(ROLE, "quayhook", &[GROUP]);
        let rbac = "rbac.authorization.k8s.io/v1";
        h.api.apply(json!({
            "apiVersion": rbac, "kind": "Role",
            "metadata": {"name": "quayhook-warehouse-refresher", "namespace": NS},
            "rules": [{"apiGroups": ["kargo.akuity.io"], "resources": ["warehouses"], "verbs": ["get", "list", "patch"]}],
        }));
        h.api.apply(json!({
            "apiVersion": rbac, "kind": "RoleBinding",
            "metadata": {"name": "quayhook-warehouse-refresher", "namespace": NS},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "quayhook-warehouse-refresher"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": GROUP}],
        }));
        Eks {
            h,
            creds,
            tokens: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// The configuration of EKS mode with the endpoint and CA given (no DescribeCluster).
    fn config(&self, cluster: &str) -> Config {
        let vars = [
            (
                "QUAYHOOK_RECEIVER_SECRET_PREFIX",
                format!("{}/receivers/", self.h.prefix),
            ),
            ("QUAYHOOK_EKS_CLUSTER", cluster.to_owned()),
            ("QUAYHOOK_EKS_ENDPOINT", self.h.api.url()),
            ("QUAYHOOK_EKS_CA_DATA", STANDARD.encode(self.h.api.ca_pem())),
        ];
        Config::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
            .expect("EKS config")
    }

    /// The function role's credentials, expiring at `expiry` when given.
    fn credentials(&self, expiry: Option<SystemTime>) -> SharedCredentialsProvider {
        SharedCredentialsProvider::new(Credentials::new(
            &self.creds.access_key_id,
            &self.creds.secret_access_key,
            Some(self.creds.session_token.clone()),
            expiry,
            "moto AssumeRole",
        ))
    }

    fn access(&self, config: &Config, expiry: Option<SystemTime>) -> EksAccess {
        let SecretsConfig::Eks { cluster, .. } = &config.secrets else {
            panic!("EKS mode")
        };
        EksAccess::new(
            cluster.clone(),
            Some("us-east-1".into()),
            Some(self.credentials(expiry)),
            eks_client(),
        )
    }

    /// quayhook's state in EKS mode, reading kubeconfigs through [`Recording`].
    fn state(
        &self,
        config: Config,
        access: EksAccess,
    ) -> State<Recording<ConfiguredSecrets>, quayhook::cluster::KubeConnector> {
        let secrets = ConfiguredSecrets::Eks {
            receivers: SecretsManager::new(
                self.h.sm.clone(),
                Vec::new(),
                Some(format!("{}/receivers/", self.h.prefix)),
                String::new(),
            ),
            cluster: access,
        };
        let recording = Recording {
            inner: secrets,
            reads: self.tokens.clone(),
        };
        self.h.state_with(config, recording)
    }

    fn kubeconfig_reads(&self) -> usize {
        self.tokens.lock().unwrap().len()
    }

    /// Registers every token handed out, and each one's signature, as never to be logged.
    fn assert_no_leaks(&self) {
        for token in self.tokens.lock().unwrap().iter() {
            self.h.sensitive(token.clone());
            let url = URL_SAFE_NO_PAD
                .decode(token.strip_prefix("k8s-aws-v1.").unwrap())
                .unwrap();
            let url = String::from_utf8(url).unwrap();
            let signature = url.split("X-Amz-Signature=").nth(1).unwrap().to_owned();
            self.h.sensitive(signature);
        }
        self.h.assert_no_leaks();
    }

    fn statuses(&self) -> Vec<u16> {
        self.h.api.requests().iter().map(|r| r.status).collect()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn eks_mode_refreshes_warehouses_with_a_token_from_the_function_role() {
    let e = Eks::start().await;
    let config = e.config(CLUSTER);
    let access = e.access(&config, None);
    let state = e.state(config, access);
    let token = e.h.receiver(NS, "quay", "s3cret-eks", None).await;

    let (status, body) = deliver(&state, &token, &push(QUAY_REPO, &["v1.0.0"])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["msg"], "refreshed 1 warehouse(s)");
    assert!(e.h.refreshed_at(NS, "a").is_some());
    let users: Vec<String> = e.h.api.requests().iter().map(|r| r.user.clone()).collect();
    assert!(
        !users.is_empty() && users.iter().all(|u| u == "quayhook"),
        "every call authenticated as the access entry's user: {users:?}"
    );
    assert_eq!(e.kubeconfig_reads(), 1, "one token for a fresh client");
    assert!(e.tokens.lock().unwrap()[0].starts_with("k8s-aws-v1."));
    e.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_foreign_cluster_and_unmapped_tokens_get_401() {
    let e = Eks::start().await;
    let token = e.h.receiver(NS, "quay", "s3cret-401", None).await;

    // Signed 16 minutes ago: past the authenticator's 15.
    let config = e.config(CLUSTER);
    let access = e
        .access(&config, None)
        .with_clock(|| SystemTime::now() - Duration::from_secs(16 * 60));
    let expired = e.state(config, access);
    let (status, body) = deliver(&expired, &token, &push(QUAY_REPO, &["v1.0.0"])).await;
    assert!(status >= 500, "{status} {body}");
    assert!(e.statuses().iter().all(|s| *s == 401), "{:?}", e.statuses());
    assert!(
        e.kubeconfig_reads() >= 2,
        "the 401 made quayhook sign a new token"
    );
    let refusals = e.h.api.eks_refusals();
    assert!(
        !refusals.is_empty() && refusals.iter().all(|r| r.contains("expired")),
        "{refusals:?}"
    );
    let seen = refusals.len();

    // Signed for another cluster: the signature covers x-k8s-aws-id, so STS refuses it.
    e.h.api.reset_requests();
    let foreign = e.config("someone-elses-cluster");
    let access = e.access(&foreign, None);
    let foreign = e.state(foreign, access);
    let (status, _) = deliver(&foreign, &token, &push(QUAY_REPO, &["v1.0.0"])).await;
    assert!(status >= 500);
    assert!(
        !e.statuses().is_empty() && e.statuses().iter().all(|s| *s == 401),
        "{:?}",
        e.statuses()
    );
    let refusals = e.h.api.eks_refusals().split_off(seen);
    assert!(
        !refusals.is_empty() && refusals.iter().all(|r| r == "SignatureDoesNotMatch"),
        "{refusals:?}"
    );
    let seen = seen + refusals.len();

    // A role with no access entry: STS knows it, the cluster does not.
    e.h.api.reset_requests();
    let other = moto::assume_role("arn:aws:iam::123456789012:role/someone-else", "x").await;
    e.h.sensitive(other.secret_access_key.clone());
    e.h.sensitive(other.session_token.clone());
    e.h.api
        .eks_signing_key(&other.access_key_id, &other.secret_access_key);
    let config = e.config(CLUSTER);
    let SecretsConfig::Eks { cluster, .. } = &config.secrets else {
        unreachable!()
    };
    let access = EksAccess::new(
        cluster.clone(),
        Some("us-east-1".into()),
        Some(SharedCredentialsProvider::new(Credentials::new(
            other.access_key_id,
            other.secret_access_key,
            Some(other.session_token),
            None,
            "moto AssumeRole",
        ))),
        eks_client(),
    );
    let unmapped = e.state(config, access);
    let (status, _) = deliver(&unmapped, &token, &push(QUAY_REPO, &["v1.0.0"])).await;
    assert!(status >= 500);
    assert!(e.statuses().iter().all(|s| *s == 401));
    let refusals = e.h.api.eks_refusals().split_off(seen);
    assert!(
        !refusals.is_empty()
            && refusals
                .iter()
                .all(|r| r.contains("role/someone-else") && r.contains("not mapped")),
        "STS answered, no access entry matched: {refusals:?}"
    );
    assert!(e.h.refreshed_at(NS, "a").is_none(), "nothing was patched");
    e.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_is_replaced_before_its_max_age_without_waiting_for_a_401() {
    let e = Eks::start().await;
    let token = e.h.receiver(NS, "quay", "s3cret-age", None).await;
    // Credentials that expire in 7 s make a max age of 2 s (5 s of margin), so the test does
    // not wait 14 minutes; the rule itself is unit-tested in src/eks.rs.
    let config = e.config(CLUSTER);
    let access = e.access(&config, Some(SystemTime::now() + Duration::from_secs(7)));
    let state = e.state(config, access);

    let (status, _) = deliver(&state, &token, &push(QUAY_REPO, &["v1.0.0"])).await;
    assert_eq!(status, 200);
    let (status, _) = deliver(&state, &token, &push(QUAY_REPO, &["v1.0.1"])).await;
    assert_eq!(status, 200);
    assert_eq!(e.kubeconfig_reads(), 1, "young enough: the same client");

    tokio::time::sleep(Duration::from_millis(2_300)).await;
    let (status, _) = deliver(&state, &token, &push(QUAY_REPO, &["v1.0.2"])).await;
    assert_eq!(status, 200);
    assert_eq!(e.kubeconfig_reads(), 2, "aged out: a new token before use");
    assert!(
        e.statuses().iter().all(|s| *s == 200),
        "replaced ahead of time, not after a 401: {:?}",
        e.statuses()
    );
    assert!(e.h.api.eks_refusals().is_empty());
    e.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn quayhook_check_passes_in_eks_mode_with_the_role_s_credentials_from_the_environment() {
    let e = Eks::start().await;
    e.h.receiver(NS, "quay", "s3cret-check", None).await;
    let ca = STANDARD.encode(e.h.api.ca_pem());
    let receivers = format!("{}/receivers/", e.h.prefix);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_quayhook"))
        .arg("check")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", "/nonexistent")
        // aws-config's default chain, as in the Lambda: the role's session in the environment.
        .env("AWS_ACCESS_KEY_ID", &e.creds.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &e.creds.secret_access_key)
        .env("AWS_SESSION_TOKEN", &e.creds.session_token)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", moto::endpoint())
        .env("QUAYHOOK_RECEIVER_SECRET_PREFIX", &receivers)
        .env("QUAYHOOK_EKS_CLUSTER", CLUSTER)
        .env("QUAYHOOK_EKS_ENDPOINT", e.h.api.url())
        .env("QUAYHOOK_EKS_CA_DATA", &ca)
        .output()
        .expect("run quayhook check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("EKS cluster: {CLUSTER}")),
        "{stdout}"
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
    assert!(
        !stdout.contains("k8s-aws-v1.") && !stderr.contains("k8s-aws-v1."),
        "the token is never printed"
    );
    assert!(!stdout.contains(&e.creds.session_token) && !stderr.contains(&e.creds.session_token));
    let users: Vec<String> = e.h.api.requests().iter().map(|r| r.user.clone()).collect();
    assert!(
        !users.is_empty() && users.iter().all(|u| u == "quayhook"),
        "{users:?}"
    );
}

// ---- DescribeCluster against moto ----------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn describe_cluster_supplies_endpoint_and_ca_once() {
    let eks = eks_client();
    let name = format!("quayhook-{}-{}", std::process::id(), line!());
    let created = eks
        .create_cluster()
        .name(&name)
        .role_arn("arn:aws:iam::123456789012:role/eks-cluster")
        .resources_vpc_config(
            aws_sdk_eks::types::VpcConfigRequest::builder()
                .subnet_ids("subnet-1")
                .build(),
        )
        .send()
        .await
        .expect("moto CreateCluster");
    let cluster = created.cluster().expect("a cluster");
    let server = cluster
        .endpoint()
        .expect("moto gives an endpoint")
        .to_owned();
    let ca = cluster
        .certificate_authority()
        .and_then(|c| c.data())
        .expect("moto gives CA data")
        .to_owned();

    let creds = Credentials::new("AKIDEXAMPLE", "describe-s3cr3t-key", None, None, "test");
    let access = EksAccess::new(
        EksConfig {
            cluster: name.clone(),
            endpoint: None,
        },
        Some("us-east-1".into()),
        Some(SharedCredentialsProvider::new(creds)),
        eks.clone(),
    );
    let kubeconfig = access.kubeconfig().await.expect("kubeconfig");
    let doc: Value = serde_json::from_str(kubeconfig.expose()).unwrap();
    assert_eq!(doc["clusters"][0]["cluster"]["server"], server.as_str());
    assert_eq!(
        doc["clusters"][0]["cluster"]["certificate-authority-data"],
        ca.as_str()
    );
    assert!(
        doc["users"][0]["user"]["token"]
            .as_str()
            .unwrap()
            .starts_with("k8s-aws-v1.")
    );

    // Asked once per cold start: the endpoint stays known after the cluster is gone.
    eks.delete_cluster()
        .name(&name)
        .send()
        .await
        .expect("delete");
    access.kubeconfig().await.expect("cached endpoint");

    let missing = EksAccess::new(
        EksConfig {
            cluster: format!("{name}-missing"),
            endpoint: None,
        },
        Some("us-east-1".into()),
        Some(SharedCredentialsProvider::new(Credentials::new(
            "AKIDEXAMPLE",
            "describe-s3cr3t-key",
            None,
            None,
            "test",
        ))),
        eks,
    );
    let err = missing.kubeconfig().await.unwrap_err();
    assert!(matches!(err, EksError::Describe { .. }), "{err:?}");
    let shown = quayhook::cause::Chain(&SecretsError::Eks(err)).to_string();
    assert!(shown.contains("DescribeCluster"), "{shown}");
    assert!(!shown.contains("s3cr3t"), "{shown}");
}
