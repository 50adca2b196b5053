//! EKS bearer tokens (`k8s-aws-v1.…`), authenticated as an EKS control plane does: the checks
//! of aws-iam-authenticator's `pkg/token` verifier, then the presigned `GetCallerIdentity` is
//! replayed to STS, and the caller's IAM principal is mapped to a Kubernetes user through an
//! access entry; RBAC decides the rest, as for any user.
//!
//! STS here is two things, because moto's STS checks no presigned signature: this module
//! verifies the SigV4 signature itself, with the cluster name the server is configured for in
//! `x-k8s-aws-id` (so a token made for another cluster fails exactly where real STS would fail
//! it) and with the secret keys the test says STS knows; moto then answers who the access key
//! belongs to (an assumed role's session after `AssumeRole` there). Moto routes a request and
//! identifies its caller only by an `Authorization` header, so the replay restates the
//! presigned credential, signed headers and signature as one, over plain HTTP to moto's port.
//!
//! Test support, I/O: one HTTP request to moto per token; the checks are pure functions.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use hyper::header::{AUTHORIZATION, HeaderMap};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::auth::Identity;
use super::route::percent_decode;
use super::{Shared, lock};

/// aws-iam-authenticator's `v1Prefix`.
const PREFIX: &str = "k8s-aws-v1.";
/// `maxTokenLenBytes`.
const MAX_TOKEN_LEN: usize = 4 * 1024;
/// `presignedURLExpiration`: tokens are good for 15 minutes after `X-Amz-Date`.
const VALIDITY: Duration = Duration::from_secs(15 * 60);
/// `parameterWhitelist`, lower-cased.
const ALLOWED_PARAMS: [&str; 9] = [
    "action",
    "version",
    "x-amz-algorithm",
    "x-amz-credential",
    "x-amz-date",
    "x-amz-expires",
    "x-amz-security-token",
    "x-amz-signature",
    "x-amz-signedheaders",
];
/// SHA-256 of the empty body: the payload hash of a GET.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// How the server authenticates EKS tokens: which cluster it is, where STS (moto) answers,
/// which secret keys STS knows, and the access entries.
#[derive(Debug, Clone, Default)]
pub(super) struct EksAuth {
    /// The cluster name a token must be signed for.
    pub cluster: String,
    /// moto's `http://host:port`.
    pub sts_endpoint: String,
    /// Access key id → secret access key, for the signature check.
    pub keys: HashMap<String, String>,
    /// Canonical principal ARN (`arn:aws:iam::ACCOUNT:role/NAME`) → user name and groups.
    pub access_entries: HashMap<String, (String, Vec<String>)>,
    /// Why each refused token was refused, in order (for assertions; the client sees 401).
    pub refusals: Vec<String>,
}

/// Why a token was refused (the authenticator's `FormatError`/`STSError`); only for tests'
/// assertions on the pure checks, the server answers 401 whatever it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refused(pub String);

fn refused<T>(why: impl Into<String>) -> Result<T, Refused> {
    Err(Refused(why.into()))
}

/// The presigned request a token carries, after the format checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Presigned {
    pub host: String,
    /// The raw query string, as signed.
    pub query: String,
    /// Decoded query parameters, keys lower-cased.
    pub params: HashMap<String, String>,
}

impl Presigned {
    fn param(&self, name: &str) -> &str {
        self.params.get(name).map_or("", String::as_str)
    }
}

/// Whether `host` is an STS endpoint: global or regional, in the aws or aws-cn partition.
fn sts_host(host: &str) -> bool {
    if host == "sts.amazonaws.com" {
        return true;
    }
    let regional = |rest: &str| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    host.strip_prefix("sts.").is_some_and(|rest| {
        rest.strip_suffix(".amazonaws.com").is_some_and(regional)
            || rest
                .strip_suffix(".amazonaws.com.cn")
                .is_some_and(|r| r.starts_with("cn-") && regional(r))
    })
}

fn uri_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `X-Amz-Date` (`20060102T150405Z`) as a time.
fn amz_date(text: &str) -> Option<SystemTime> {
    if text.len() != 16 || &text[8..9] != "T" || !text.ends_with('Z') {
        return None;
    }
    let n = |r: std::ops::Range<usize>| text.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (h, mi, s) = (n(9..11)?, n(11..13)?, n(13..15)?);
    let ts = jiff::civil::datetime(
        i16::try_from(y).ok()?,
        i8::try_from(mo).ok()?,
        i8::try_from(d).ok()?,
        i8::try_from(h).ok()?,
        i8::try_from(mi).ok()?,
        i8::try_from(s).ok()?,
        0,
    )
    .to_zoned(jiff::tz::TimeZone::UTC)
    .ok()?
    .timestamp();
    let secs = u64::try_from(ts.as_second()).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// aws-iam-authenticator's `Verify` up to the STS call: size, prefix, base64url, https, an STS
/// host, path `/`, only allowed query parameters (once each), `Action=GetCallerIdentity`,
/// `x-k8s-aws-id` among the signed headers, `X-Amz-Expires` 0–900 and an `X-Amz-Date` less
/// than 15 minutes old at `now`.
pub(super) fn check_format(token: &str, now: SystemTime) -> Result<Presigned, Refused> {
    if token.len() > MAX_TOKEN_LEN {
        return refused("token is too large");
    }
    let Some(encoded) = token.strip_prefix(PREFIX) else {
        return refused("token is missing expected \"k8s-aws-v1.\" prefix");
    };
    let Some(url) = URL_SAFE_NO_PAD
        .decode(encoded)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
    else {
        return refused("token is not base64url");
    };
    let Some(rest) = url.strip_prefix("https://") else {
        return refused("unexpected scheme in pre-signed URL");
    };
    let (authority, path_query) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    if !sts_host(authority) {
        return refused(format!(
            "unexpected hostname {authority:?} in pre-signed URL"
        ));
    }
    let (path, query) = path_query.split_once('?').unwrap_or((path_query, ""));
    if path != "/" {
        return refused("unexpected path in pre-signed URL");
    }
    let mut params = HashMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(k), Some(v)) = (percent_decode(k, true), percent_decode(v, true)) else {
            return refused("malformed query parameter");
        };
        let k = k.to_ascii_lowercase();
        if !ALLOWED_PARAMS.contains(&k.as_str()) {
            return refused(format!("non-whitelisted query parameter {k:?}"));
        }
        if params.insert(k, v).is_some() {
            return refused("query parameter with multiple values not supported");
        }
    }
    let p = Presigned {
        host: authority.to_owned(),
        query: query.to_owned(),
        params,
    };
    if p.param("action") != "GetCallerIdentity" {
        return refused("unexpected action parameter in pre-signed URL");
    }
    if !p
        .param("x-amz-signedheaders")
        .split(';')
        .any(|h| h.eq_ignore_ascii_case("x-k8s-aws-id"))
    {
        return refused("client did not sign the x-k8s-aws-id header in the pre-signed URL");
    }
    match p.param("x-amz-expires").parse::<i64>() {
        Ok(e) if (0..=900).contains(&e) => {}
        _ => return refused("invalid X-Amz-Expires parameter in pre-signed URL"),
    }
    let Some(date) = amz_date(p.param("x-amz-date")) else {
        return refused("X-Amz-Date parameter must be present and well-formed");
    };
    if now > date + VALIDITY {
        return refused("X-Amz-Date parameter is expired (15 minute expiration)");
    }
    Ok(p)
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What STS checks before it answers: the SigV4 query signature, recomputed with the host and
/// `x-k8s-aws-id: cluster` as the only headers and the secret key STS holds for the access key.
/// Returns the access key id.
pub(super) fn check_signature(
    p: &Presigned,
    cluster: &str,
    keys: &HashMap<String, String>,
) -> Result<String, Refused> {
    if p.param("x-amz-algorithm") != "AWS4-HMAC-SHA256" {
        return refused("unsupported signing algorithm");
    }
    let credential = p.param("x-amz-credential");
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key, day, region, "sts", "aws4_request"] = scope.as_slice() else {
        return refused("malformed X-Amz-Credential");
    };
    let Some(secret) = keys.get(*access_key) else {
        return refused(
            "InvalidClientTokenId: the security token included in the request is invalid",
        );
    };
    let signed_headers = p.param("x-amz-signedheaders");
    let mut headers = String::new();
    for name in signed_headers.split(';') {
        let value = match name {
            "host" => p.host.as_str(),
            "x-k8s-aws-id" => cluster,
            // The verifier sends no other header: a signature over one cannot match.
            _ => return refused("SignatureDoesNotMatch"),
        };
        headers.push_str(&format!("{name}:{value}\n"));
    }
    let mut query: Vec<(String, String)> = p
        .query
        .split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((percent_decode(k, true)?, percent_decode(v, true)?))
        })
        .filter(|(k, _)| k != "X-Amz-Signature")
        .map(|(k, v)| (uri_encode(&k), uri_encode(&v)))
        .collect();
    query.sort();
    let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let canonical = format!(
        "GET\n/\n{}\n{headers}\n{signed_headers}\n{EMPTY_SHA256}",
        query.join("&")
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{day}/{region}/sts/aws4_request\n{}",
        p.param("x-amz-date"),
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), day);
    for part in [*region, "sts", "aws4_request"] {
        key = hmac(&key, part);
    }
    if hex(&hmac(&key, &string_to_sign)) != p.param("x-amz-signature") {
        return refused("SignatureDoesNotMatch");
    }
    Ok((*access_key).to_owned())
}

/// `arn.Canonicalize`: an assumed role's session becomes its role; IAM users and roles stay.
pub(super) fn canonical_arn(arn: &str) -> Result<String, Refused> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, "", account, resource] = parts.as_slice() else {
        return refused(format!("arn {arn:?} is invalid"));
    };
    if *prefix != "arn" {
        return refused(format!("arn {arn:?} is invalid"));
    }
    let pieces: Vec<&str> = resource.split('/').collect();
    match (*service, pieces.as_slice()) {
        ("sts", ["assumed-role", role, _session]) => {
            Ok(format!("arn:{partition}:iam::{account}:role/{role}"))
        }
        ("iam", ["user" | "role", ..]) => Ok(arn.to_owned()),
        _ => refused(format!("arn {arn:?} is not a user or a role session")),
    }
}

/// The caller's ARN from STS's answer (XML, or JSON when it honours `Accept`).
fn caller_arn(body: &str) -> Option<String> {
    if let Some(start) = body.find("<Arn>") {
        let rest = &body[start + "<Arn>".len()..];
        return Some(rest[..rest.find("</Arn>")?].to_owned());
    }
    let json: serde_json::Value = serde_json::from_str(body).ok()?;
    json.pointer("/GetCallerIdentityResponse/GetCallerIdentityResult/Arn")?
        .as_str()
        .map(str::to_owned)
}

/// Replays the presigned request to moto, as the authenticator replays it to STS.
async fn get_caller_identity(auth: &EksAuth, p: &Presigned) -> Result<String, Refused> {
    let Some(address) = auth.sts_endpoint.strip_prefix("http://") else {
        return refused("the STS stand-in must be a plain http:// endpoint");
    };
    let address = address.trim_end_matches('/');
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={}, SignedHeaders={}, Signature={}",
        p.param("x-amz-credential"),
        p.param("x-amz-signedheaders"),
        p.param("x-amz-signature")
    );
    let request = format!(
        "GET /?{} HTTP/1.1\r\nHost: {address}\r\nx-k8s-aws-id: {}\r\nAccept: application/json\r\nAuthorization: {authorization}\r\nConnection: close\r\n\r\n",
        p.query, auth.cluster
    );
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = match tokio::time::timeout(Duration::from_secs(5), exchange).await {
        Ok(Ok(a)) => String::from_utf8_lossy(&a).into_owned(),
        _ => return refused("error during GET to STS"),
    };
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return refused(format!(
            "error from AWS (expected 200): {}",
            head.lines().next().unwrap_or("")
        ));
    }
    let Some(arn) = caller_arn(body) else {
        return refused("no Arn in the GetCallerIdentity answer");
    };
    Ok(arn)
}

/// The whole authenticator: checks, STS, access entry.
pub(super) async fn verify(auth: &EksAuth, token: &str) -> Result<Identity, Refused> {
    let presigned = check_format(token, SystemTime::now())?;
    check_signature(&presigned, &auth.cluster, &auth.keys)?;
    let arn = get_caller_identity(auth, &presigned).await?;
    let canonical = canonical_arn(&arn)?;
    let Some((user, groups)) = auth.access_entries.get(&canonical) else {
        return refused(format!("ARN {canonical:?} is not mapped"));
    };
    let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
    let mut who = Identity::new(user, &groups);
    who.uid = format!("aws-iam-authenticator:{canonical}");
    Ok(who)
}

/// The identity of an EKS bearer token in `headers`, when EKS authentication is on and the
/// token passes; `None` otherwise (the request is then unauthenticated: 401).
pub(super) async fn authenticate(shared: &Shared, headers: &HeaderMap) -> Option<Identity> {
    let auth = lock(&shared.eks).clone()?;
    let header = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || !token.starts_with(PREFIX) {
        return None;
    }
    match verify(&auth, token).await {
        Ok(who) => Some(who),
        Err(Refused(why)) => {
            if let Some(auth) = lock(&shared.eks).as_mut() {
                auth.refusals.push(why);
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_for(url: &str) -> String {
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(url))
    }

    /// botocore's presigned URL for cluster `quayhook-test` with `AKIDEXAMPLE` /
    /// `wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY` at 2026-01-01T00:00:00Z
    /// (tests/integration/eks/botocore_token.py).
    const URL: &str = "https://sts.us-east-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20260101%2Fus-east-1%2Fsts%2Faws4_request&X-Amz-Date=20260101T000000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host%3Bx-k8s-aws-id&X-Amz-Signature=417ab0de62489fda06d3d83bca38437bc8cd6164599a340d59ef7c61c25f6e08";

    fn signed_at() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_767_225_600)
    }

    fn keys() -> HashMap<String, String> {
        HashMap::from([(
            "AKIDEXAMPLE".to_owned(),
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_owned(),
        )])
    }

    #[test]
    fn a_botocore_token_passes_for_its_cluster_and_only_for_it() {
        let p = check_format(&token_for(URL), signed_at() + Duration::from_secs(60)).unwrap();
        assert_eq!(p.host, "sts.us-east-1.amazonaws.com");
        assert_eq!(
            check_signature(&p, "quayhook-test", &keys()).unwrap(),
            "AKIDEXAMPLE"
        );
        assert_eq!(
            check_signature(&p, "another-cluster", &keys()),
            refused("SignatureDoesNotMatch")
        );
        assert!(check_signature(&p, "quayhook-test", &HashMap::new()).is_err());
    }

    #[test]
    fn the_format_checks_refuse_what_aws_iam_authenticator_refuses() {
        let ok = signed_at() + Duration::from_secs(60);
        let bad = |token: String, at: SystemTime| check_format(&token, at).unwrap_err().0;
        assert!(
            bad(
                token_for(URL),
                signed_at() + VALIDITY + Duration::from_secs(1)
            )
            .contains("expired")
        );
        assert!(bad(URL.to_owned(), ok).contains("prefix"));
        assert!(bad(format!("{PREFIX}{}", "A".repeat(5000)), ok).contains("too large"));
        assert!(bad(token_for(&URL.replace("https://", "http://")), ok).contains("scheme"));
        assert!(
            bad(token_for(&URL.replace("sts.us-east-1", "evil.example")), ok).contains("hostname")
        );
        assert!(bad(token_for(&URL.replace(".com/?", ".com/x?")), ok).contains("path"));
        assert!(bad(token_for(&format!("{URL}&Foo=1")), ok).contains("non-whitelisted"));
        assert!(
            bad(token_for(&format!("{URL}&Action=GetCallerIdentity")), ok).contains("multiple")
        );
        assert!(
            bad(
                token_for(&URL.replace("=GetCallerIdentity", "=AssumeRole")),
                ok
            )
            .contains("action")
        );
        assert!(
            bad(token_for(&URL.replace("host%3Bx-k8s-aws-id", "host")), ok)
                .contains("x-k8s-aws-id")
        );
        assert!(bad(token_for(&URL.replace("Expires=60", "Expires=901")), ok).contains("Expires"));
    }

    #[test]
    fn sts_hosts_and_canonical_arns() {
        for host in [
            "sts.amazonaws.com",
            "sts.eu-west-1.amazonaws.com",
            "sts.cn-north-1.amazonaws.com.cn",
        ] {
            assert!(sts_host(host), "{host}");
        }
        for host in [
            "sts.amazonaws.com.evil",
            "x.sts.amazonaws.com",
            "sts..amazonaws.com",
            "sts.eu-west-1.amazonaws.com:8443",
        ] {
            assert!(!sts_host(host), "{host}");
        }
        assert_eq!(
            canonical_arn("arn:aws:sts::123456789012:assumed-role/quayhook/i-123").unwrap(),
            "arn:aws:iam::123456789012:role/quayhook"
        );
        assert_eq!(
            canonical_arn("arn:aws:iam::123456789012:user/ops").unwrap(),
            "arn:aws:iam::123456789012:user/ops"
        );
        assert!(canonical_arn("arn:aws:sts::123456789012:federated-user/x").is_err());
    }
}
