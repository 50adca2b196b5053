//! Receiver secrets and the cluster kubeconfig: the [`SecretSource`] trait, its AWS Secrets
//! Manager implementation, and a file implementation for `quayhook serve` outside AWS. In EKS
//! mode the kubeconfig is made in memory with a fresh token instead (see [`crate::eks`]).
//!
//! I/O at the edge, pure in the middle: [`parse_receiver`] turns a secret's text into a
//! [`ReceiverSecret`] without touching the network. Errors name the secret, never its value.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
use serde::Deserialize;

use kargo_match::token::SecretString;

use crate::cause::Cause;

/// One Kargo-style webhook receiver, as stored in its secret.
///
/// Stored as JSON: `{"project": "kargo-demo", "receiver": "quay", "secret": "…",
/// "previousSecret": "…"}`. `project` must be present; `""` makes a cluster-level receiver
/// (every namespace), like Kargo's `ClusterConfig` receivers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiverSecret {
    /// The secret's name (or the file it came from), for messages.
    pub source: String,
    /// Kargo project (= namespace); `""` for a cluster-level receiver.
    pub project: String,
    /// Receiver name, as in the ProjectConfig's `spec.webhookReceivers[].name`.
    pub receiver: String,
    /// The receiver's secret; its hash is the token in the URL.
    pub secret: SecretString,
    /// The secret before the last rotation, accepted until removed.
    pub previous_secret: Option<SecretString>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ReceiverJson {
    project: String,
    receiver: String,
    secret: SecretString,
    #[serde(default)]
    previous_secret: Option<SecretString>,
}

/// What a receiver fetch returned: the usable receivers and, separately, the secrets that
/// could not be used (each fails on its own; the others keep working).
#[derive(Clone, Debug, Default)]
pub struct Receivers {
    /// Receivers that parsed.
    pub receivers: Vec<ReceiverSecret>,
    /// Secrets that were missing, unreadable or malformed.
    pub problems: Vec<SecretsError>,
}

/// Why secrets could not be read. Never carries secret material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretsError {
    /// Returned when the secret store cannot be reached or refuses the call as a whole.
    #[error("secret store unavailable")]
    Unavailable(#[source] Cause),
    /// Returned when a named secret does not exist.
    #[error("secret {0} not found")]
    NotFound(String),
    /// Returned when the caller may not read a secret (IAM or KMS).
    #[error("access to secret {id} denied ({code})")]
    AccessDenied {
        /// The secret.
        id: String,
        /// The service's error code, e.g. `AccessDeniedException`.
        code: String,
    },
    /// Returned when a secret holds no text (a binary secret).
    #[error("secret {0} has no SecretString")]
    NotText(String),
    /// Returned when a receiver secret's text is not the expected JSON.
    #[error("secret {id} is not a receiver: {reason}")]
    Malformed {
        /// The secret.
        id: String,
        /// What is wrong, in terms of fields (never values).
        reason: String,
    },
    /// Returned when a local file cannot be read.
    #[error("cannot read {path}")]
    File {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: Cause,
    },
    /// Returned in EKS mode when no token can be made (credentials, region, DescribeCluster).
    #[error("cannot make the EKS cluster credential")]
    Eks(#[source] crate::eks::EksError),
}

/// Parses one receiver secret's text.
///
/// # Errors
/// [`SecretsError::Malformed`] when the text is not a JSON object with string fields
/// `project`, `receiver` (non-empty), `secret` (non-empty) and optional `previousSecret`, or has
/// any other field (a misspelt `previousSecret` must not be silently ignored).
pub fn parse_receiver(source: &str, text: &str) -> Result<ReceiverSecret, SecretsError> {
    let malformed = |reason: String| SecretsError::Malformed {
        id: source.to_owned(),
        reason,
    };
    let raw: ReceiverJson = serde_json::from_str(text).map_err(|e| {
        // serde's messages name fields and positions; values never appear for these types
        // except in "invalid type" errors, which quote only non-string scalars.
        malformed(crate::cause::serde_reason(&e))
    })?;
    if raw.receiver.is_empty() {
        return Err(malformed("receiver is empty".into()));
    }
    if raw.secret.expose().is_empty() {
        return Err(malformed("secret is empty".into()));
    }
    Ok(ReceiverSecret {
        source: source.to_owned(),
        project: raw.project,
        receiver: raw.receiver,
        secret: raw.secret,
        previous_secret: raw.previous_secret.filter(|s| !s.expose().is_empty()),
    })
}

/// Where receiver secrets and the kubeconfig are read from.
///
/// `'static` because receiver fetches run as tasks of their own (see [`crate::receivers`]).
pub trait SecretSource: Send + Sync + 'static {
    /// Reads every configured receiver secret, in as few round trips as the store allows.
    ///
    /// # Errors
    /// [`SecretsError::Unavailable`] only when the store as a whole failed; per-secret problems
    /// land in [`Receivers::problems`].
    fn receivers(&self) -> impl Future<Output = Result<Receivers, SecretsError>> + Send;

    /// Reads the kubeconfig text.
    ///
    /// # Errors
    /// Any [`SecretsError`]; the caller cannot reach the cluster without it.
    fn kubeconfig(&self) -> impl Future<Output = Result<SecretString, SecretsError>> + Send;

    /// How long the kubeconfig the last [`SecretSource::kubeconfig`] call returned may be
    /// used before it is read again; asked right after that call. `None` (the default): until
    /// the cluster rejects it with a 401. An EKS token says about 14 minutes.
    fn kubeconfig_max_age(&self) -> Option<Duration> {
        None
    }
}

/// AWS Secrets Manager: receivers by id list and/or name prefix through
/// `BatchGetSecretValue`, the kubeconfig through `GetSecretValue`.
///
/// The receiver secrets and the kubeconfig do not depend on each other, so the first
/// receivers read (the init prefetch, or a cold request) asks for the kubeconfig in the same
/// `BatchGetSecretValue` (its id added to the id list, or its name to the name filter, whose
/// values AWS ORs) and keeps it for the first [`SecretSource::kubeconfig`] call: a cold
/// request is then secrets, list, patch. Every later kubeconfig read (the 401 re-read, a
/// renewal) is a single `GetSecretValue`.
#[derive(Clone, Debug)]
pub struct SecretsManager {
    client: Client,
    receiver_ids: Vec<String>,
    receiver_prefix: Option<String>,
    kubeconfig_id: String,
    /// The kubeconfig read with the first receivers, until the first kubeconfig read takes it.
    prefetched: std::sync::Arc<std::sync::Mutex<Prefetch>>,
}

/// Where the one-call prefetch of the kubeconfig stands.
#[derive(Debug, Default)]
enum Prefetch {
    /// Not tried yet: the next receivers read asks for the kubeconfig too.
    #[default]
    Pending,
    /// Read with the receivers, waiting for the first kubeconfig read.
    Ready(SecretString),
    /// Taken, or not possible: kubeconfig reads go to `GetSecretValue`.
    Done,
}

/// `BatchGetSecretValue` takes at most 20 ids per call.
const BATCH_IDS: usize = 20;

impl SecretsManager {
    /// Wraps a client with the secrets to read.
    pub fn new(
        client: Client,
        receiver_ids: Vec<String>,
        receiver_prefix: Option<String>,
        kubeconfig_id: String,
    ) -> Self {
        Self {
            client,
            receiver_ids,
            receiver_prefix,
            kubeconfig_id,
            prefetched: std::sync::Arc::default(),
        }
    }

    fn prefetch_state(&self) -> std::sync::MutexGuard<'_, Prefetch> {
        self.prefetched
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the kubeconfig is this entry of a batch answer.
    fn is_kubeconfig(&self, name: Option<&str>, arn: Option<&str>) -> bool {
        !self.kubeconfig_id.is_empty()
            && (name == Some(self.kubeconfig_id.as_str())
                || arn == Some(self.kubeconfig_id.as_str()))
    }

    /// The underlying client (for `quayhook secret` commands that write).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// One `BatchGetSecretValue` series: by `ids`, or by the receiver prefix (plus the exact
    /// name `also_named`, ORed). The kubeconfig found among the answers lands in `kubeconfig`.
    async fn batch(
        &self,
        ids: Option<&[String]>,
        also_named: Option<&str>,
        out: &mut Receivers,
        kubeconfig: &mut Option<SecretString>,
    ) -> Result<(), SecretsError> {
        let mut next: Option<String> = None;
        loop {
            let mut call = self
                .client
                .batch_get_secret_value()
                .set_next_token(next.take());
            call = match (ids, &self.receiver_prefix) {
                (Some(ids), _) => call.set_secret_id_list(Some(ids.to_vec())),
                (None, Some(prefix)) => call.filters(
                    Filter::builder()
                        .key(FilterNameStringType::Name)
                        .set_values(Some(
                            std::iter::once(prefix.clone())
                                .chain(also_named.map(str::to_owned))
                                .collect(),
                        ))
                        .build(),
                ),
                (None, None) => return Ok(()),
            };
            let page = call.send().await.map_err(unavailable)?;
            for entry in page.secret_values() {
                let id = entry
                    .name()
                    .or(entry.arn())
                    .unwrap_or("(unnamed)")
                    .to_owned();
                if self.is_kubeconfig(entry.name(), entry.arn()) {
                    if let Some(text) = entry.secret_string() {
                        *kubeconfig = Some(SecretString::new(text));
                    }
                    continue;
                }
                if ids.is_none()
                    && !self
                        .receiver_prefix
                        .as_deref()
                        .is_some_and(|p| id.starts_with(p))
                {
                    // The name filter is a prefix match in AWS; keep that promise locally too.
                    continue;
                }
                match entry.secret_string() {
                    Some(text) => match parse_receiver(&id, text) {
                        Ok(r) => out.receivers.push(r),
                        Err(e) => out.problems.push(e),
                    },
                    None => out.problems.push(SecretsError::NotText(id)),
                }
            }
            for err in page.errors() {
                let id = err.secret_id().unwrap_or("(unknown)").to_owned();
                if id == self.kubeconfig_id {
                    // Left to `GetSecretValue`, which reports it as it always has.
                    continue;
                }
                out.problems.push(match err.error_code() {
                    Some("ResourceNotFoundException") => SecretsError::NotFound(id),
                    code => SecretsError::AccessDenied {
                        id,
                        code: code.unwrap_or("error").to_owned(),
                    },
                });
            }
            match page.next_token() {
                Some(token) if !token.is_empty() => next = Some(token.to_owned()),
                _ => return Ok(()),
            }
        }
    }
}

fn unavailable<E: std::error::Error + Send + Sync + 'static>(e: E) -> SecretsError {
    SecretsError::Unavailable(Cause::new(e))
}

impl SecretSource for SecretsManager {
    async fn receivers(&self) -> Result<Receivers, SecretsError> {
        let mut out = Receivers::default();
        let want_kubeconfig =
            !self.kubeconfig_id.is_empty() && matches!(*self.prefetch_state(), Prefetch::Pending);
        let mut kubeconfig = None;
        let mut chunks: Vec<Vec<String>> = self
            .receiver_ids
            .chunks(BATCH_IDS)
            .map(<[String]>::to_vec)
            .collect();
        let mut also_named = None;
        if want_kubeconfig {
            // The kubeconfig rides along: in an id chunk with room, else in the name filter
            // (a name, not an ARN: the filter matches names).
            match chunks.iter_mut().find(|c| c.len() < BATCH_IDS) {
                Some(chunk) => chunk.push(self.kubeconfig_id.clone()),
                None if self.receiver_prefix.is_some()
                    && !self.kubeconfig_id.starts_with("arn:") =>
                {
                    also_named = Some(self.kubeconfig_id.as_str());
                }
                None => {}
            }
        }
        for chunk in &chunks {
            self.batch(Some(chunk), None, &mut out, &mut kubeconfig)
                .await?;
        }
        if self.receiver_prefix.is_some() {
            self.batch(None, also_named, &mut out, &mut kubeconfig)
                .await?;
        }
        if want_kubeconfig {
            let mut state = self.prefetch_state();
            if matches!(*state, Prefetch::Pending) {
                *state = kubeconfig.map_or(Prefetch::Done, Prefetch::Ready);
            }
        }
        // A secret named both by id and by prefix counts once.
        out.receivers.sort_by(|a, b| a.source.cmp(&b.source));
        out.receivers.dedup_by(|a, b| a.source == b.source);
        Ok(out)
    }

    async fn kubeconfig(&self) -> Result<SecretString, SecretsError> {
        // The copy read with the first receivers serves the first read only; from then on
        // (a 401's re-read) the secret is read again.
        if let Prefetch::Ready(text) =
            std::mem::replace(&mut *self.prefetch_state(), Prefetch::Done)
        {
            return Ok(text);
        }
        let id = &self.kubeconfig_id;
        let out = self
            .client
            .get_secret_value()
            .secret_id(id)
            .send()
            .await
            .map_err(|e| match e.as_service_error().and_then(|s| s.code()) {
                Some("ResourceNotFoundException") => SecretsError::NotFound(id.clone()),
                Some(code @ ("AccessDeniedException" | "DecryptionFailure")) => {
                    SecretsError::AccessDenied {
                        id: id.clone(),
                        code: code.to_owned(),
                    }
                }
                _ => unavailable(e),
            })?;
        out.secret_string()
            .map(SecretString::new)
            .ok_or_else(|| SecretsError::NotText(id.clone()))
    }
}

/// Local files: a receivers JSON file (one object or an array) and a kubeconfig file.
/// Re-read on every fetch, so edits apply without a restart.
#[derive(Clone, Debug)]
pub struct FileSecrets {
    receivers: PathBuf,
    kubeconfig: PathBuf,
}

impl FileSecrets {
    /// Reads receivers and the kubeconfig from these files.
    pub fn new(receivers: PathBuf, kubeconfig: PathBuf) -> Self {
        Self {
            receivers,
            kubeconfig,
        }
    }
}

async fn read_file(path: &PathBuf) -> Result<String, SecretsError> {
    tokio::fs::read_to_string(path)
        .await
        .map_err(|e| SecretsError::File {
            path: path.display().to_string(),
            source: Cause::new(e),
        })
}

impl SecretSource for FileSecrets {
    async fn receivers(&self) -> Result<Receivers, SecretsError> {
        let text = read_file(&self.receivers).await?;
        let source = self.receivers.display().to_string();
        let items: Vec<serde_json::Value> = match serde_json::from_str(&text) {
            Ok(serde_json::Value::Array(items)) => items,
            Ok(one @ serde_json::Value::Object(_)) => vec![one],
            _ => {
                return Err(SecretsError::Malformed {
                    id: source,
                    reason: "expected a JSON object or an array of objects".into(),
                });
            }
        };
        let mut out = Receivers::default();
        for (i, item) in items.iter().enumerate() {
            match parse_receiver(&format!("{source}[{i}]"), &item.to_string()) {
                Ok(r) => out.receivers.push(r),
                Err(e) => out.problems.push(e),
            }
        }
        Ok(out)
    }

    async fn kubeconfig(&self) -> Result<SecretString, SecretsError> {
        read_file(&self.kubeconfig).await.map(SecretString::new)
    }
}

/// The AWS SDK configuration from the environment (region, credentials, `AWS_ENDPOINT_URL`
/// and the per-service `AWS_ENDPOINT_URL_*`), with [`sdk_timeouts`]. Loaded once per process
/// and shared by its clients: each load builds its own credentials chain and HTTP client
/// (with its TLS roots), which a cold start pays for.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(sdk_timeouts())
        .load()
        .await
}

/// Secrets Manager calls must end well inside Quay's 10 s, like the cluster calls: without
/// these the SDK waits as long as the connection stays open.
pub fn sdk_timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(2))
        .operation_attempt_timeout(std::time::Duration::from_secs(2))
        .operation_timeout(std::time::Duration::from_secs(4))
        .build()
}

/// The secret source the configuration names: Secrets Manager, or files for `serve`.
#[derive(Clone, Debug)]
pub enum ConfiguredSecrets {
    /// AWS Secrets Manager.
    Aws(SecretsManager),
    /// Local files.
    Files(FileSecrets),
    /// Receivers from Secrets Manager, the kubeconfig made with an EKS token.
    Eks {
        /// Reads the receiver secrets (its kubeconfig id is unused).
        receivers: SecretsManager,
        /// Makes the kubeconfig.
        cluster: crate::eks::EksAccess,
    },
}

impl ConfiguredSecrets {
    /// Builds the source for `config`; for Secrets Manager this loads the AWS SDK
    /// configuration (region, credentials, `AWS_ENDPOINT_URL`) from the environment.
    /// Local files need no SDK configuration, and none is loaded for them.
    pub async fn from_config(config: &crate::config::SecretsConfig) -> Self {
        match config {
            crate::config::SecretsConfig::Files {
                receivers,
                kubeconfig,
            } => ConfiguredSecrets::Files(FileSecrets::new(receivers.clone(), kubeconfig.clone())),
            _ => Self::with_sdk(config, &sdk_config().await),
        }
    }

    /// Builds the source for `config` on an SDK configuration already loaded (see
    /// [`sdk_config`]), so every AWS client of the process shares its credentials provider
    /// and HTTP client.
    pub fn with_sdk(config: &crate::config::SecretsConfig, sdk: &aws_config::SdkConfig) -> Self {
        match config {
            crate::config::SecretsConfig::SecretsManager {
                receiver_ids,
                receiver_prefix,
                kubeconfig_id,
            } => ConfiguredSecrets::Aws(SecretsManager::new(
                Client::new(sdk),
                receiver_ids.clone(),
                receiver_prefix.clone(),
                kubeconfig_id.clone(),
            )),
            crate::config::SecretsConfig::Files {
                receivers,
                kubeconfig,
            } => ConfiguredSecrets::Files(FileSecrets::new(receivers.clone(), kubeconfig.clone())),
            crate::config::SecretsConfig::Eks {
                receiver_ids,
                receiver_prefix,
                cluster,
            } => ConfiguredSecrets::Eks {
                receivers: SecretsManager::new(
                    Client::new(sdk),
                    receiver_ids.clone(),
                    receiver_prefix.clone(),
                    String::new(),
                ),
                cluster: crate::eks::EksAccess::from_sdk(sdk, cluster.clone()),
            },
        }
    }
}

impl SecretSource for ConfiguredSecrets {
    async fn receivers(&self) -> Result<Receivers, SecretsError> {
        match self {
            ConfiguredSecrets::Aws(s) => s.receivers().await,
            ConfiguredSecrets::Files(s) => s.receivers().await,
            ConfiguredSecrets::Eks { receivers, .. } => receivers.receivers().await,
        }
    }

    async fn kubeconfig(&self) -> Result<SecretString, SecretsError> {
        match self {
            ConfiguredSecrets::Aws(s) => s.kubeconfig().await,
            ConfiguredSecrets::Files(s) => s.kubeconfig().await,
            ConfiguredSecrets::Eks { cluster, .. } => {
                cluster.kubeconfig().await.map_err(SecretsError::Eks)
            }
        }
    }

    fn kubeconfig_max_age(&self) -> Option<Duration> {
        match self {
            ConfiguredSecrets::Eks { cluster, .. } => Some(cluster.max_age()),
            ConfiguredSecrets::Aws(_) | ConfiguredSecrets::Files(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receiver_secret_parses_with_optional_previous_secret() {
        let r = parse_receiver(
            "s",
            r#"{"project":"kargo-demo","receiver":"quay","secret":"abc","previousSecret":"old"}"#,
        )
        .unwrap();
        assert_eq!(
            (r.project.as_str(), r.receiver.as_str()),
            ("kargo-demo", "quay")
        );
        assert_eq!(r.secret.expose(), "abc");
        assert_eq!(
            r.previous_secret.as_ref().map(SecretString::expose),
            Some("old")
        );
        let r = parse_receiver(
            "s",
            r#"{"project":"","receiver":"q","secret":"x","previousSecret":""}"#,
        )
        .unwrap();
        assert_eq!(r.project, "", "empty project = cluster-level receiver");
        assert!(r.previous_secret.is_none());
    }

    #[test]
    fn malformed_receivers_are_rejected_without_echoing_values() {
        for text in [
            r#"{"receiver":"q","secret":"hunter2"}"#,
            r#"{"project":"p","receiver":"","secret":"hunter2"}"#,
            r#"{"project":"p","receiver":"q","secret":""}"#,
            r#"{"project":"p","receiver":"q","secret":"hunter2","previous_secret":"hunter3"}"#,
            r#"{"project":"p","receiver":"q","secret":7}"#,
            r#"{"project":"p","receiver":"q","secret":["hunter2"]}"#,
            r#"not json hunter2"#,
            r#"["hunter2"]"#,
        ] {
            let err = parse_receiver("quayhook/r", text).unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(matches!(err, SecretsError::Malformed { .. }), "{text}");
            assert!(shown.contains("quayhook/r"), "{shown}");
            assert!(!shown.contains("hunter"), "leaked a value: {shown}");
        }
    }
}
