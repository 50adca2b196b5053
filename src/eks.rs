//! Keyless access to Amazon EKS: the cluster credential is a bearer token made from the
//! function's own AWS credentials, the way `aws eks get-token` and aws-iam-authenticator make
//! it, so no kubeconfig is stored anywhere.
//!
//! A token is `k8s-aws-v1.` followed by the unpadded base64url of a presigned STS
//! `GetCallerIdentity` URL whose signature covers the `x-k8s-aws-id: {cluster}` header. The
//! cluster's authenticator replays that request to STS with its own cluster name in the header,
//! so STS accepts it only for that cluster and says who signed it; EKS then maps the IAM
//! principal to a Kubernetes user through an access entry. The authenticator accepts a token
//! for 15 minutes after its `X-Amz-Date`.
//!
//! Pure in the middle: [`token`], [`kubeconfig`] and [`max_age`] are functions of their
//! arguments, the clock included (aws-sigv4 computes the signature; nothing here touches the
//! network). The I/O shell, [`EksAccess`], asks aws-config's credential chain for credentials
//! each time it makes a token, and `eks:DescribeCluster` once for the endpoint and CA when the
//! configuration does not give them. A token leaves this module only inside the
//! [`SecretString`] kubeconfig; errors and logs never carry one.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use kargo_match::token::SecretString;

use crate::cause::Cause;
use crate::config::{EksConfig, EksEndpoint};

/// What every EKS token starts with.
pub const TOKEN_PREFIX: &str = "k8s-aws-v1.";

/// The header that binds a token to one cluster; its value is the cluster name.
pub const CLUSTER_ID_HEADER: &str = "x-k8s-aws-id";

/// How long the authenticator accepts a token after its signing time (`X-Amz-Date`),
/// whatever `X-Amz-Expires` says.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// When a token is replaced: a minute before it runs out, as `aws eks get-token` reports
/// (`expirationTimestamp` 14 minutes ahead) and client-go honours.
pub const REFRESH_AFTER: Duration = Duration::from_secs(14 * 60);

/// `X-Amz-Expires`: ignored by STS for this call, but aws-iam-authenticator 0.3 and older
/// require 0–60, so every generator sends 60.
const PRESIGN_EXPIRES: Duration = Duration::from_secs(60);

/// A token is replaced this long before the credentials that signed it expire: STS refuses a
/// presigned request once its session token has expired. Shorter than the SDK identity
/// cache's 10 s refresh buffer, so the replacement is signed with already renewed credentials.
const CREDENTIALS_MARGIN: Duration = Duration::from_secs(5);

/// STS `GetCallerIdentity`'s query, in the order botocore writes it.
const ACTION: &str = "Action=GetCallerIdentity&Version=2011-06-15";

/// Why a cluster credential could not be made. Never carries a token or credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EksError {
    /// Returned when no AWS region is configured: the token names the regional STS endpoint.
    #[error("no AWS region configured (AWS_REGION)")]
    NoRegion,
    /// Returned when the credential chain has no credentials to sign with.
    #[error("no AWS credentials to sign the cluster token with")]
    Credentials(#[source] Cause),
    /// Returned when aws-sigv4 refuses to presign the request (a malformed cluster name or
    /// region).
    #[error("cannot presign the STS request")]
    Signing(#[source] Cause),
    /// Returned when `eks:DescribeCluster` fails (IAM, network, unknown cluster).
    #[error("eks:DescribeCluster of {cluster} failed")]
    Describe {
        /// The cluster.
        cluster: String,
        /// The SDK's error.
        #[source]
        source: Cause,
    },
    /// Returned when `eks:DescribeCluster` answers without an endpoint or CA (a cluster still
    /// being created).
    #[error("cluster {cluster} has no {missing} yet (status {status})")]
    Incomplete {
        /// The cluster.
        cluster: String,
        /// `endpoint` or `certificate authority`.
        missing: &'static str,
        /// The cluster's status, as DescribeCluster reported it.
        status: String,
    },
}

/// The STS host a region's tokens name: the regional endpoint, as aws-cli v2 and the
/// authenticator's verifier use (`.amazonaws.com.cn` in the China regions).
pub fn sts_host(region: &str) -> String {
    if region.starts_with("cn-") {
        format!("sts.{region}.amazonaws.com.cn")
    } else {
        format!("sts.{region}.amazonaws.com")
    }
}

/// RFC 3986 percent-encoding of everything but the unreserved characters, as SigV4 and
/// botocore's `percent_encode_sequence` encode query values.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Makes the bearer token for `cluster`, signed at `now` with `credentials` for STS in
/// `region`: byte for byte what `aws eks get-token --cluster-name {cluster}` prints for the same
/// inputs.
///
/// The URL is `https://sts.{region}.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15`
/// plus the SigV4 query parameters (`X-Amz-Expires=60`, `X-Amz-SignedHeaders=host;x-k8s-aws-id`,
/// `X-Amz-Security-Token` for temporary credentials, `X-Amz-Signature` last), in botocore's
/// order. Pure: no clock and no network.
///
/// # Errors
/// [`EksError::Signing`] when aws-sigv4 refuses the inputs (e.g. a region that makes no valid
/// host).
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use aws_credential_types::Credentials;
/// let creds = Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
/// let at = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
/// let token = quayhook::eks::token("prod", "eu-west-1", &creds, at).unwrap();
/// assert!(token.expose().starts_with("k8s-aws-v1.aHR0cHM6Ly9zdHMuZXUtd2VzdC0xLmFtYXpvbmF3cy5jb20v"));
/// ```
pub fn token(
    cluster: &str,
    region: &str,
    credentials: &Credentials,
    now: SystemTime,
) -> Result<SecretString, EksError> {
    let signing = |e: &dyn fmt::Display| EksError::Signing(Cause::new(e.to_string()));
    let base = format!("https://{}/?{ACTION}", sts_host(region));
    let identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(PRESIGN_EXPIRES);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| signing(&e))?
        .into();
    let request = SignableRequest::new(
        "GET",
        base.as_str(),
        [(CLUSTER_ID_HEADER, cluster)].into_iter(),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| signing(&e))?;
    // aws-sigv4 traces the canonical request, whose query holds the session token when the
    // signature goes in the query: nothing may subscribe while it signs.
    let signed =
        tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
            sign(request, &params)
        });
    let (instructions, _signature) = signed.map_err(|e| signing(&e))?.into_parts();
    let signed: Vec<(&str, &str)> = instructions
        .params()
        .iter()
        .map(|(k, v)| (*k, v.as_ref()))
        .collect();
    // botocore's order: the operation's parameters, then the auth parameters with the
    // session token after the signed headers, and the signature appended last.
    let mut url = base;
    let mut written = 0;
    for name in [
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Security-Token",
        "X-Amz-Signature",
    ] {
        if let Some((_, value)) = signed.iter().find(|(k, _)| *k == name) {
            url.push('&');
            url.push_str(name);
            url.push('=');
            url.push_str(&encode(value));
            written += 1;
        }
    }
    if written != signed.len() {
        // A parameter this order does not know would be dropped, breaking the signature.
        return Err(signing(&"aws-sigv4 returned an unexpected query parameter"));
    }
    Ok(SecretString::new(format!(
        "{TOKEN_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(url.as_bytes())
    )))
}

/// A kubeconfig for `endpoint` that authenticates with `token`: one cluster (server and
/// inline CA data), one user, one context. JSON, which `Kubeconfig::from_yaml` reads as YAML,
/// so no value needs YAML quoting rules.
pub fn kubeconfig(cluster: &str, endpoint: &EksEndpoint, token: &SecretString) -> SecretString {
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": cluster,
            "cluster": {
                "server": endpoint.server,
                "certificate-authority-data": endpoint.ca_data,
            },
        }],
        "users": [{"name": "quayhook", "user": {"token": token.expose()}}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": "quayhook"}}],
        "current-context": cluster,
    });
    SecretString::new(doc.to_string())
}

/// How long a token signed at `now` may be used: [`REFRESH_AFTER`], or less when the signing
/// credentials expire sooner (minus a few seconds, so the next token is signed with renewed
/// credentials rather than the expiring ones).
pub fn max_age(credentials_expiry: Option<SystemTime>, now: SystemTime) -> Duration {
    match credentials_expiry {
        None => REFRESH_AFTER,
        Some(expiry) => expiry
            .duration_since(now)
            .unwrap_or_default()
            .saturating_sub(CREDENTIALS_MARGIN)
            .min(REFRESH_AFTER),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every write is one assignment: a poisoned lock still holds consistent data.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The I/O shell: makes kubeconfigs with fresh tokens for one EKS cluster.
///
/// Cloning is shallow: clones share the described endpoint and the last token's max age.
#[derive(Clone)]
pub struct EksAccess {
    config: EksConfig,
    region: Option<String>,
    credentials: Option<SharedCredentialsProvider>,
    eks: aws_sdk_eks::Client,
    /// The endpoint from the configuration, or from DescribeCluster once it answered.
    endpoint: Arc<Mutex<Option<EksEndpoint>>>,
    /// The max age of the last kubeconfig made, see [`max_age`].
    max_age: Arc<Mutex<Duration>>,
    clock: fn() -> SystemTime,
}

impl fmt::Debug for EksAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EksAccess")
            .field("cluster", &self.config.cluster)
            .field("region", &self.region)
            .field("endpoint", &*lock(&self.endpoint))
            .finish_non_exhaustive()
    }
}

impl EksAccess {
    /// Access to `config`'s cluster: tokens for STS in `region`, signed with `credentials`;
    /// `eks` answers DescribeCluster when the configuration gives no endpoint.
    pub fn new(
        config: EksConfig,
        region: Option<String>,
        credentials: Option<SharedCredentialsProvider>,
        eks: aws_sdk_eks::Client,
    ) -> Self {
        let endpoint = config.endpoint.clone();
        Self {
            config,
            region,
            credentials,
            eks,
            endpoint: Arc::new(Mutex::new(endpoint)),
            max_age: Arc::new(Mutex::new(REFRESH_AFTER)),
            clock: SystemTime::now,
        }
    }

    /// Access with the region, credential chain and EKS client of an SDK configuration
    /// (`aws_config::defaults(…).load()`: `AWS_REGION`, the function's role).
    pub fn from_sdk(sdk: &aws_config::SdkConfig, config: EksConfig) -> Self {
        Self::new(
            config,
            sdk.region().map(ToString::to_string),
            sdk.credentials_provider(),
            aws_sdk_eks::Client::new(sdk),
        )
    }

    /// The same access with another clock for signing times (tests: an expired token).
    pub fn with_clock(mut self, clock: fn() -> SystemTime) -> Self {
        self.clock = clock;
        self
    }

    /// The cluster name tokens are bound to.
    pub fn cluster(&self) -> &str {
        &self.config.cluster
    }

    /// A kubeconfig for the cluster with a token signed now.
    ///
    /// The endpoint and CA come from the configuration or, the first time, from
    /// `eks:DescribeCluster`; the credentials from the chain, every time (it caches and renews
    /// them). Afterwards [`EksAccess::max_age`] says how long this kubeconfig may be used.
    ///
    /// # Errors
    /// [`EksError`]: no region or credentials, a failed DescribeCluster, or a refused signing.
    pub async fn kubeconfig(&self) -> Result<SecretString, EksError> {
        let region = self.region.as_deref().ok_or(EksError::NoRegion)?;
        let endpoint = self.endpoint().await?;
        let provider = self.credentials.as_ref().ok_or_else(|| {
            EksError::Credentials(Cause::new("no credentials provider is configured"))
        })?;
        let credentials = provider
            .provide_credentials()
            .await
            .map_err(|e| EksError::Credentials(Cause::new(e)))?;
        let now = (self.clock)();
        let token = token(&self.config.cluster, region, &credentials, now)?;
        *lock(&self.max_age) = max_age(credentials.expiry(), now);
        Ok(kubeconfig(&self.config.cluster, &endpoint, &token))
    }

    /// How long the last kubeconfig from [`EksAccess::kubeconfig`] may be used.
    pub fn max_age(&self) -> Duration {
        *lock(&self.max_age)
    }

    /// The API server endpoint and CA: configured, cached, or asked from DescribeCluster.
    ///
    /// # Errors
    /// [`EksError::Describe`] or [`EksError::Incomplete`].
    pub async fn endpoint(&self) -> Result<EksEndpoint, EksError> {
        if let Some(known) = lock(&self.endpoint).clone() {
            return Ok(known);
        }
        let cluster = &self.config.cluster;
        let out = self
            .eks
            .describe_cluster()
            .name(cluster)
            .send()
            .await
            .map_err(|e| EksError::Describe {
                cluster: cluster.clone(),
                source: Cause::new(aws_sdk_eks::error::DisplayErrorContext(e).to_string()),
            })?;
        let described = out.cluster();
        let status = described
            .and_then(|c| c.status())
            .map_or_else(|| "unknown".to_owned(), |s| s.as_str().to_owned());
        let incomplete = |missing| EksError::Incomplete {
            cluster: cluster.clone(),
            missing,
            status: status.clone(),
        };
        let server = described
            .and_then(|c| c.endpoint())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| incomplete("endpoint"))?;
        let ca_data = described
            .and_then(|c| c.certificate_authority())
            .and_then(|ca| ca.data())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| incomplete("certificate authority"))?;
        let endpoint = EksEndpoint {
            server: server.to_owned(),
            ca_data: ca_data.to_owned(),
        };
        tracing::info!(cluster = %cluster, server = %endpoint.server, "cluster endpoint from eks:DescribeCluster");
        *lock(&self.endpoint) = Some(endpoint.clone());
        Ok(endpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn decoded(token: &SecretString) -> String {
        let b64 = token.expose().strip_prefix(TOKEN_PREFIX).expect("prefix");
        String::from_utf8(URL_SAFE_NO_PAD.decode(b64).expect("base64url")).expect("utf-8")
    }

    /// Generated by `tests/integration/eks/botocore_token.py quayhook-test us-east-1
    /// AKIDEXAMPLE wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY - 1767225600` (botocore 1.44, the
    /// `aws eks get-token` recipe); the integration suite compares more cases live.
    const BOTOCORE_URL: &str = "https://sts.us-east-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20260101%2Fus-east-1%2Fsts%2Faws4_request&X-Amz-Date=20260101T000000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host%3Bx-k8s-aws-id&X-Amz-Signature=417ab0de62489fda06d3d83bca38437bc8cd6164599a340d59ef7c61c25f6e08";

    #[test]
    fn the_token_is_what_botocore_presigns() {
        let creds = Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "test",
        );
        let token = token("quayhook-test", "us-east-1", &creds, at(1_767_225_600)).unwrap();
        assert_eq!(decoded(&token), BOTOCORE_URL);
        assert_eq!(
            token.expose(),
            format!(
                "{TOKEN_PREFIX}{}",
                URL_SAFE_NO_PAD.encode(BOTOCORE_URL.as_bytes())
            ),
            "unpadded base64url"
        );
    }

    #[test]
    fn temporary_credentials_sign_the_session_token_before_the_signature() {
        let creds = Credentials::new("ASIAEXAMPLE", "s", Some("Fwo//+a=b&c".into()), None, "t");
        let url = decoded(&token("prod", "eu-west-1", &creds, at(1_767_225_600)).unwrap());
        assert!(url.starts_with("https://sts.eu-west-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Algorithm=AWS4-HMAC-SHA256&"), "{url}");
        assert!(
            url.contains(
                "&X-Amz-SignedHeaders=host%3Bx-k8s-aws-id&X-Amz-Security-Token=Fwo%2F%2F%2Ba%3Db%26c&X-Amz-Signature="
            ),
            "{url}"
        );
    }

    #[test]
    fn the_token_depends_on_cluster_time_and_key() {
        let creds = Credentials::new("AKID", "secret", None, None, "test");
        let base = token("a", "us-east-1", &creds, at(1_000_000_000)).unwrap();
        let again = token("a", "us-east-1", &creds, at(1_000_000_000)).unwrap();
        assert_eq!(base, again, "deterministic");
        for other in [
            token("b", "us-east-1", &creds, at(1_000_000_000)).unwrap(),
            token("a", "us-east-1", &creds, at(1_000_000_001)).unwrap(),
            token(
                "a",
                "us-east-1",
                &Credentials::new("AKID", "other", None, None, "test"),
                at(1_000_000_000),
            )
            .unwrap(),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn china_regions_use_their_partition_s_sts_host() {
        assert_eq!(sts_host("cn-north-1"), "sts.cn-north-1.amazonaws.com.cn");
        assert_eq!(sts_host("eu-west-1"), "sts.eu-west-1.amazonaws.com");
    }

    #[test]
    fn max_age_is_fourteen_minutes_or_less_before_the_credentials_expire() {
        let now = at(1_000_000);
        assert_eq!(max_age(None, now), REFRESH_AFTER);
        assert_eq!(
            max_age(Some(now + Duration::from_secs(3600)), now),
            REFRESH_AFTER
        );
        assert_eq!(
            max_age(Some(now + Duration::from_secs(65)), now),
            Duration::from_secs(60)
        );
        assert_eq!(
            max_age(Some(now - Duration::from_secs(1)), now),
            Duration::ZERO,
            "already expired: replace at once"
        );
        assert!(REFRESH_AFTER < TOKEN_LIFETIME);
    }

    #[test]
    fn the_kubeconfig_holds_server_ca_and_token() {
        let endpoint = EksEndpoint {
            server: "https://ABC.gr7.eu-west-1.eks.amazonaws.com".into(),
            ca_data: "LS0tLS1CRUdJTg==".into(),
        };
        let text = kubeconfig("prod", &endpoint, &SecretString::new("k8s-aws-v1.x"));
        let parsed = kube::config::Kubeconfig::from_yaml(text.expose()).unwrap();
        let cluster = parsed.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some(endpoint.server.as_str()));
        assert_eq!(
            cluster.certificate_authority_data.as_deref(),
            Some("LS0tLS1CRUdJTg==")
        );
        assert_eq!(parsed.current_context.as_deref(), Some("prod"));
        let doc: serde_json::Value = serde_json::from_str(text.expose()).unwrap();
        assert_eq!(doc["users"][0]["user"]["token"], "k8s-aws-v1.x");
        assert_eq!(doc["contexts"][0]["context"]["user"], "quayhook");
    }
}
