//! A real `moto_server` (AWS protocol emulator, from PyPI) for the whole test binary.
//!
//! Started once per process on a free loopback port from `.venv/bin/moto_server` (installed
//! by `make venv`), or reused from `QUAYHOOK_TEST_MOTO_URL` when the Makefile already runs one.
//! The server is wrapped in a shell watchdog that stops it when this test process exits.
//!
//! Test support, I/O: spawns a process and talks to it over loopback HTTP. [`sqs`] holds the
//! SQS helpers of the durable path.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};

pub mod sqs;

static MOTO: OnceLock<String> = OnceLock::new();

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

fn moto_binary() -> PathBuf {
    if let Ok(path) = std::env::var("MOTO_SERVER") {
        return path.into();
    }
    // The venv sits at the workspace root, two levels above this crate.
    let venv =
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join(".venv/bin/moto_server");
    assert!(
        venv.exists(),
        "moto_server not found at {}: run `make venv` (make test does) or set MOTO_SERVER",
        venv.display()
    );
    venv
}

/// The endpoint URL of the shared moto server, starting it on first use.
pub fn endpoint() -> String {
    MOTO.get_or_init(|| {
        if let Ok(url) = std::env::var("QUAYHOOK_TEST_MOTO_URL") {
            return url;
        }
        let port = free_port();
        let binary = moto_binary();
        // The watchdog loop ends moto when the test process (the shell's parent) is gone.
        let script = format!(
            "'{}' -H 127.0.0.1 -p {port} >/dev/null 2>&1 & m=$!; \
             while kill -0 {parent} 2>/dev/null; do sleep 0.5; done; kill $m",
            binary.display(),
            parent = std::process::id()
        );
        // The watchdog outlives this function by design; it reaps moto itself.
        #[allow(clippy::zombie_processes)]
        let _watchdog = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        format!("http://127.0.0.1:{port}")
    })
    .clone()
}

/// An SDK client for `endpoint` with test credentials.
pub fn client_for(endpoint: &str) -> aws_sdk_secretsmanager::Client {
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .build();
    aws_sdk_secretsmanager::Client::from_conf(config)
}

/// A client of the shared moto server.
pub fn client() -> aws_sdk_secretsmanager::Client {
    client_for(&endpoint())
}

/// Creates or overwrites a secret.
pub async fn put_secret(client: &aws_sdk_secretsmanager::Client, name: &str, value: &str) {
    let created = client
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await;
    if created.is_err() {
        client
            .put_secret_value()
            .secret_id(name)
            .secret_string(value)
            .send()
            .await
            .expect("put secret value");
    }
}

/// Temporary credentials from moto's STS.
#[derive(Debug, Clone)]
pub struct TemporaryCredentials {
    /// `ASIA…`.
    pub access_key_id: String,
    /// The secret key: sensitive.
    pub secret_access_key: String,
    /// The session token: sensitive.
    pub session_token: String,
}

/// Assumes `role_arn` in moto as session `session`, as the Lambda service does for a function
/// role: moto's `GetCallerIdentity` then names `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`
/// for these credentials.
///
/// # Panics
/// When moto refuses (a test bug).
pub async fn assume_role(role_arn: &str, session: &str) -> TemporaryCredentials {
    let config = aws_sdk_sts::Config::builder()
        .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(aws_sdk_sts::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sts::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .build();
    let out = aws_sdk_sts::Client::from_conf(config)
        .assume_role()
        .role_arn(role_arn)
        .role_session_name(session)
        .send()
        .await
        .expect("moto AssumeRole");
    let creds = out.credentials().expect("AssumeRole returns credentials");
    TemporaryCredentials {
        access_key_id: creds.access_key_id().to_owned(),
        secret_access_key: creds.secret_access_key().to_owned(),
        session_token: creds.session_token().to_owned(),
    }
}
