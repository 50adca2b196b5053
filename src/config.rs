//! Configuration: every environment variable quayhook reads, parsed and validated in one place.
//!
//! Pure: [`Config::from_lookup`] takes a lookup function (tests pass a map), and
//! [`Config::from_env`] is the only reader of the process environment. The README's
//! configuration table lists these variables in the order of the struct's fields.

use std::path::PathBuf;
use std::time::Duration;

/// Where receiver secrets and the kubeconfig come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretsConfig {
    /// AWS Secrets Manager (the Lambda's normal mode).
    SecretsManager {
        /// Receiver secrets named one by one (ids or ARNs).
        receiver_ids: Vec<String>,
        /// Every secret whose name starts with this is a receiver secret.
        receiver_prefix: Option<String>,
        /// The secret holding the cluster kubeconfig.
        kubeconfig_id: String,
    },
    /// Local files, for `quayhook serve` without AWS.
    Files {
        /// A JSON file holding one receiver object or an array of them.
        receivers: PathBuf,
        /// A kubeconfig file (token and CA data inline).
        kubeconfig: PathBuf,
    },
    /// Receivers from AWS Secrets Manager; no kubeconfig secret: the cluster credential is an
    /// EKS token signed with the function's own IAM credentials (see [`crate::eks`]).
    Eks {
        /// Receiver secrets named one by one (ids or ARNs).
        receiver_ids: Vec<String>,
        /// Every secret whose name starts with this is a receiver secret.
        receiver_prefix: Option<String>,
        /// The cluster.
        cluster: EksConfig,
    },
}

/// Keyless access to an EKS cluster (`QUAYHOOK_EKS_*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EksConfig {
    /// The cluster's name, signed into every token (`QUAYHOOK_EKS_CLUSTER`).
    pub cluster: String,
    /// The API server and its CA; `None`: read with `eks:DescribeCluster` at cold start.
    pub endpoint: Option<EksEndpoint>,
}

/// Where an EKS cluster's API server is and how to trust it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EksEndpoint {
    /// The API server URL, `https://…` (`QUAYHOOK_EKS_ENDPOINT`).
    pub server: String,
    /// The cluster CA, base64 of its PEM as DescribeCluster returns it
    /// (`QUAYHOOK_EKS_CA_DATA`).
    pub ca_data: String,
}

/// Limits of `quayhook serve`, the plain HTTP front (Go's `http.Server` timeouts, plus a
/// connection cap and a shutdown grace period).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeConfig {
    /// Connections served at once; further ones wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Time allowed for the request head (line and headers) to arrive.
    pub header_timeout: Duration,
    /// Time allowed for a whole request, head and body, to arrive.
    pub read_timeout: Duration,
    /// How long an idle keep-alive connection is kept open.
    pub idle_timeout: Duration,
    /// On SIGTERM, how long requests in flight may take before the process exits anyway.
    pub shutdown_grace: Duration,
}

/// What a Lambda invocation of this binary serves, from the function's `Handler` setting
/// (the `provided` runtimes pass it as `_HANDLER`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LambdaHandler {
    /// API Gateway deliveries from Quay (`Handler: http`, or unset).
    Http,
    /// The durable path's SQS worker (`Handler: worker`).
    Worker,
}

/// The durable path: deliveries the cluster could not take in time are queued for the worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    /// The SQS queue URL (`QUAYHOOK_QUEUE_URL`).
    pub url: String,
    /// The worker's first retry delay for a message (`ChangeMessageVisibility`), doubled on
    /// every further receive.
    pub backoff_base: Duration,
    /// The longest retry delay.
    pub backoff_max: Duration,
}

/// Which Kargo projects an ECR push event may refresh (`QUAYHOOK_ECR_PROJECTS`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EcrProjects {
    /// `*`: Warehouses in every namespace, as a cluster-level receiver would (the cluster
    /// credential then needs cluster-wide list and patch on Warehouses).
    All,
    /// The Warehouses of these projects (namespaces) only: sorted, deduplicated, at least one.
    Only(Vec<String>),
}

/// ECR push events from EventBridge ([`crate::ecr`]): what they may refresh.
///
/// An ECR event carries no token: IAM is its authentication (only the EventBridge rule may
/// invoke the function or send to its queue), so the scope a Quay receiver gets from its
/// project is configuration here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EcrConfig {
    /// The projects whose Warehouses an event may refresh.
    pub projects: EcrProjects,
    /// Repository-name prefixes (`QUAYHOOK_ECR_REPOSITORY_PREFIXES`): an event for a
    /// repository whose name starts with none of them is ignored. Empty: every repository.
    pub repository_prefixes: Vec<String>,
}

impl EcrConfig {
    /// Whether an event for the repository named `repository_name` (ECR's `repository-name`,
    /// without registry) is in scope: there are no prefixes, or it starts with one of them.
    pub fn covers(&self, repository_name: &str) -> bool {
        self.repository_prefixes.is_empty()
            || self
                .repository_prefixes
                .iter()
                .any(|p| repository_name.starts_with(p.as_str()))
    }
}

/// The whole runtime configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Source of receiver secrets and the kubeconfig.
    pub secrets: SecretsConfig,
    /// Path prefix before `/quay/{token}` (Kargo's base URL path), cleaned; `""` for none.
    pub base_path: String,
    /// How long fetched receiver secrets are trusted before a re-fetch.
    pub secrets_ttl: Duration,
    /// Minimum time between two re-fetches caused by unknown tokens.
    pub secrets_miss_interval: Duration,
    /// How long a Warehouse list is trusted before it is listed again.
    pub index_ttl: Duration,
    /// Minimum time between two re-lists caused by a push with no subscriber in the cache.
    pub index_miss_interval: Duration,
    /// Page size of Warehouse lists (`limit`).
    pub list_page_size: u32,
    /// At most this many PATCH requests in flight for one push: concurrent HTTP/2 streams on
    /// one connection, so a push selecting up to 100 Warehouses is one wave (kube-apiserver
    /// allows 250 streams per connection unless `--http2-max-streams-per-connection` says
    /// otherwise).
    pub patch_concurrency: usize,
    /// Whole-request budget; Quay gives up after 10 s.
    pub request_timeout: Duration,
    /// TCP+TLS connect timeout to the cluster API.
    pub connect_timeout: Duration,
    /// How long an idle connection to the cluster API is kept for the next push (hyper's
    /// default, 90 s, would drop it between pushes).
    pub cluster_idle_timeout: Duration,
    /// Attempts per cluster call on 429/5xx/transport errors (1 = no retry).
    pub max_attempts: u32,
    /// Fetch secrets and list Warehouses during init, before the first request.
    pub prefetch: bool,
    /// Distinct tags of one push that are considered; the rest are reported as a count.
    pub max_tags: usize,
    /// Limits of `quayhook serve`.
    pub serve: ServeConfig,
    /// The durable path; `None` (no queue configured) answers 5xx when the cluster cannot be
    /// reached, as Kargo does.
    pub queue: Option<QueueConfig>,
    /// What a Lambda invocation serves.
    pub lambda_handler: LambdaHandler,
    /// Write a CloudWatch embedded-metric-format record per delivery to stdout
    /// (`QUAYHOOK_METRICS`; by default on inside Lambda, where `AWS_LAMBDA_FUNCTION_NAME` is
    /// set, and off for `quayhook serve`).
    pub metrics: bool,
    /// ECR push events from EventBridge; `None` (`QUAYHOOK_ECR_PROJECTS` unset): they are
    /// refused, logged and not processed.
    pub ecr: Option<EcrConfig>,
}

/// A configuration problem, naming the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Returned when a required variable is missing.
    #[error("{var} is required: {hint}")]
    Missing {
        /// The variable.
        var: &'static str,
        /// What to set.
        hint: &'static str,
    },
    /// Returned when a variable's value does not parse or is out of range.
    #[error("{var} is invalid: {reason}")]
    Invalid {
        /// The variable.
        var: &'static str,
        /// Why.
        reason: String,
    },
}

/// Receiver secret ids, comma separated.
pub const RECEIVER_SECRET_IDS: &str = "QUAYHOOK_RECEIVER_SECRET_IDS";
/// Receiver secret name prefix.
pub const RECEIVER_SECRET_PREFIX: &str = "QUAYHOOK_RECEIVER_SECRET_PREFIX";
/// Kubeconfig secret id.
pub const KUBECONFIG_SECRET_ID: &str = "QUAYHOOK_KUBECONFIG_SECRET_ID";
/// Receivers JSON file (file mode).
pub const RECEIVERS_FILE: &str = "QUAYHOOK_RECEIVERS_FILE";
/// Kubeconfig file (file mode).
pub const KUBECONFIG_FILE: &str = "QUAYHOOK_KUBECONFIG_FILE";
/// EKS cluster name (EKS mode: no kubeconfig secret).
pub const EKS_CLUSTER: &str = "QUAYHOOK_EKS_CLUSTER";
/// EKS API server URL (EKS mode; with [`EKS_CA_DATA`], skips DescribeCluster).
pub const EKS_ENDPOINT: &str = "QUAYHOOK_EKS_ENDPOINT";
/// EKS cluster CA, base64 PEM (EKS mode; with [`EKS_ENDPOINT`]).
pub const EKS_CA_DATA: &str = "QUAYHOOK_EKS_CA_DATA";
/// The projects ECR push events may refresh: a comma-separated list, or `*`.
pub const ECR_PROJECTS: &str = "QUAYHOOK_ECR_PROJECTS";
/// Repository-name prefixes ECR push events must have, comma separated.
pub const ECR_REPOSITORY_PREFIXES: &str = "QUAYHOOK_ECR_REPOSITORY_PREFIXES";

impl Config {
    /// Reads the configuration from the process environment.
    ///
    /// # Errors
    /// See [`Config::from_lookup`].
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|k| std::env::var(k).ok())
    }

    /// Parses and validates the configuration from `lookup` (variable name → value).
    ///
    /// Empty values count as unset.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first variable that is missing or invalid.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |k: &str| {
            lookup(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let secs = |var: &'static str, default: f64| -> Result<Duration, ConfigError> {
            match get(var) {
                None => Ok(Duration::from_secs_f64(default)),
                Some(v) => {
                    parse_duration(&v).map_err(|reason| ConfigError::Invalid { var, reason })
                }
            }
        };
        let number =
            |var: &'static str, default: u64, min: u64, max: u64| -> Result<u64, ConfigError> {
                let Some(v) = get(var) else {
                    return Ok(default);
                };
                match v.parse::<u64>() {
                    Ok(n) if (min..=max).contains(&n) => Ok(n),
                    _ => Err(ConfigError::Invalid {
                        var,
                        reason: format!("expected a whole number from {min} to {max}, got {v:?}"),
                    }),
                }
            };

        let eks = eks_config(&get)?;
        if eks.is_some() && (get(RECEIVERS_FILE).is_some() || get(KUBECONFIG_FILE).is_some()) {
            return Err(ConfigError::Invalid {
                var: EKS_CLUSTER,
                reason: "EKS mode reads receivers from Secrets Manager: unset QUAYHOOK_RECEIVERS_FILE and QUAYHOOK_KUBECONFIG_FILE".into(),
            });
        }
        let secrets = match (get(RECEIVERS_FILE), get(KUBECONFIG_FILE)) {
            (Some(receivers), Some(kubeconfig)) => SecretsConfig::Files {
                receivers: receivers.into(),
                kubeconfig: kubeconfig.into(),
            },
            (Some(_), None) => {
                return Err(ConfigError::Missing {
                    var: KUBECONFIG_FILE,
                    hint: "file mode needs both a receivers file and a kubeconfig file",
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError::Missing {
                    var: RECEIVERS_FILE,
                    hint: "file mode needs both a receivers file and a kubeconfig file",
                });
            }
            (None, None) => {
                let receiver_ids: Vec<String> = get(RECEIVER_SECRET_IDS)
                    .map(|v| {
                        v.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
                let receiver_prefix = get(RECEIVER_SECRET_PREFIX);
                if receiver_ids.is_empty() && receiver_prefix.is_none() {
                    return Err(ConfigError::Missing {
                        var: RECEIVER_SECRET_IDS,
                        hint: "name the receiver secrets (comma-separated ids) or set QUAYHOOK_RECEIVER_SECRET_PREFIX",
                    });
                }
                match eks {
                    Some(_) if get(KUBECONFIG_SECRET_ID).is_some() => {
                        return Err(ConfigError::Invalid {
                            var: KUBECONFIG_SECRET_ID,
                            reason: "QUAYHOOK_EKS_CLUSTER is set too: in EKS mode the cluster credential comes from IAM; unset one of them".into(),
                        });
                    }
                    Some(cluster) => SecretsConfig::Eks {
                        receiver_ids,
                        receiver_prefix,
                        cluster,
                    },
                    None => {
                        let kubeconfig_id =
                            get(KUBECONFIG_SECRET_ID).ok_or(ConfigError::Missing {
                                var: KUBECONFIG_SECRET_ID,
                                hint: "the id or ARN of the secret holding the cluster kubeconfig (or set QUAYHOOK_EKS_CLUSTER for keyless EKS access)",
                            })?;
                        SecretsConfig::SecretsManager {
                            receiver_ids,
                            receiver_prefix,
                            kubeconfig_id,
                        }
                    }
                }
            }
        };

        let config = Config {
            secrets,
            base_path: clean_base_path(&get("QUAYHOOK_BASE_PATH").unwrap_or_default()),
            secrets_ttl: secs("QUAYHOOK_SECRETS_TTL", 300.0)?,
            secrets_miss_interval: secs("QUAYHOOK_SECRETS_MISS_INTERVAL", 10.0)?,
            index_ttl: secs("QUAYHOOK_INDEX_TTL", 60.0)?,
            index_miss_interval: secs("QUAYHOOK_INDEX_MISS_INTERVAL", 1.0)?,
            list_page_size: number("QUAYHOOK_LIST_PAGE_SIZE", 500, 1, 10_000)? as u32,
            patch_concurrency: number("QUAYHOOK_PATCH_CONCURRENCY", 100, 1, 512)? as usize,
            request_timeout: secs("QUAYHOOK_REQUEST_TIMEOUT", 8.0)?,
            connect_timeout: secs("QUAYHOOK_CONNECT_TIMEOUT", 2.0)?,
            cluster_idle_timeout: secs("QUAYHOOK_CLUSTER_IDLE_TIMEOUT", 600.0)?,
            max_attempts: number("QUAYHOOK_MAX_ATTEMPTS", 3, 1, 10)? as u32,
            prefetch: match get("QUAYHOOK_PREFETCH").as_deref() {
                None | Some("true" | "1" | "yes") => true,
                Some("false" | "0" | "no") => false,
                Some(other) => {
                    return Err(ConfigError::Invalid {
                        var: "QUAYHOOK_PREFETCH",
                        reason: format!("expected true or false, got {other:?}"),
                    });
                }
            },
            max_tags: number("QUAYHOOK_MAX_TAGS", 256, 1, 10_000)? as usize,
            serve: ServeConfig {
                max_connections: number("QUAYHOOK_SERVE_MAX_CONNECTIONS", 512, 1, 65_536)? as usize,
                header_timeout: secs("QUAYHOOK_SERVE_HEADER_TIMEOUT", 10.0)?,
                read_timeout: secs("QUAYHOOK_SERVE_READ_TIMEOUT", 30.0)?,
                idle_timeout: secs("QUAYHOOK_SERVE_IDLE_TIMEOUT", 60.0)?,
                shutdown_grace: secs("QUAYHOOK_SERVE_SHUTDOWN_GRACE", 10.0)?,
            },
            queue: match get("QUAYHOOK_QUEUE_URL") {
                None => None,
                Some(url) if url.starts_with("https://") || url.starts_with("http://") => {
                    Some(QueueConfig {
                        url,
                        backoff_base: secs("QUAYHOOK_WORKER_BACKOFF_BASE", 30.0)?,
                        // SQS caps a message's visibility timeout at 12 hours.
                        backoff_max: secs("QUAYHOOK_WORKER_BACKOFF_MAX", 900.0)?
                            .min(Duration::from_secs(12 * 3600)),
                    })
                }
                Some(other) => {
                    return Err(ConfigError::Invalid {
                        var: "QUAYHOOK_QUEUE_URL",
                        reason: format!("expected an SQS queue URL (https://…), got {other:?}"),
                    });
                }
            },
            lambda_handler: match get("_HANDLER").as_deref() {
                None | Some("http" | "bootstrap") => LambdaHandler::Http,
                Some("worker") => LambdaHandler::Worker,
                Some(other) => {
                    return Err(ConfigError::Invalid {
                        var: "_HANDLER",
                        reason: format!(
                            "the function's Handler must be http or worker, got {other:?}"
                        ),
                    });
                }
            },
            metrics: match get("QUAYHOOK_METRICS").as_deref() {
                None => get("AWS_LAMBDA_FUNCTION_NAME").is_some(),
                Some("true" | "1" | "yes") => true,
                Some("false" | "0" | "no") => false,
                Some(other) => {
                    return Err(ConfigError::Invalid {
                        var: "QUAYHOOK_METRICS",
                        reason: format!("expected true or false, got {other:?}"),
                    });
                }
            },
            ecr: ecr_config(&get)?,
        };
        if config.lambda_handler == LambdaHandler::Worker && config.queue.is_none() {
            return Err(ConfigError::Missing {
                var: "QUAYHOOK_QUEUE_URL",
                hint: "the worker (_HANDLER=worker) backs off failed messages on its queue; set the queue's URL",
            });
        }
        if let Some(queue) = &config.queue
            && (queue.backoff_base.is_zero() || queue.backoff_max < queue.backoff_base)
        {
            return Err(ConfigError::Invalid {
                var: "QUAYHOOK_WORKER_BACKOFF_MAX",
                reason: "the backoff must be positive and the maximum at least the base".into(),
            });
        }
        for (var, value) in [
            ("QUAYHOOK_SERVE_HEADER_TIMEOUT", config.serve.header_timeout),
            ("QUAYHOOK_SERVE_READ_TIMEOUT", config.serve.read_timeout),
            ("QUAYHOOK_SERVE_IDLE_TIMEOUT", config.serve.idle_timeout),
            ("QUAYHOOK_CLUSTER_IDLE_TIMEOUT", config.cluster_idle_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Invalid {
                    var,
                    reason: "must be greater than zero".into(),
                });
            }
        }
        if config.request_timeout.is_zero() {
            return Err(ConfigError::Invalid {
                var: "QUAYHOOK_REQUEST_TIMEOUT",
                reason: "must be greater than zero".into(),
            });
        }
        Ok(config)
    }
}

/// The `QUAYHOOK_EKS_*` variables: `None` without a cluster name.
///
/// The cluster name follows EKS's rule (1–100 letters, digits, `-` and `_`, starting with a
/// letter or digit); the endpoint must be `https://`; the CA data must be base64. Endpoint and
/// CA come together or not at all (then DescribeCluster supplies both).
fn eks_config(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<EksConfig>, ConfigError> {
    let (endpoint, ca_data) = (get(EKS_ENDPOINT), get(EKS_CA_DATA));
    let Some(cluster) = get(EKS_CLUSTER) else {
        if endpoint.is_some() || ca_data.is_some() {
            return Err(ConfigError::Missing {
                var: EKS_CLUSTER,
                hint: "QUAYHOOK_EKS_ENDPOINT and QUAYHOOK_EKS_CA_DATA belong to EKS mode, which needs the cluster name",
            });
        }
        return Ok(None);
    };
    let name_ok = cluster.len() <= 100
        && cluster.starts_with(|c: char| c.is_ascii_alphanumeric())
        && cluster
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !name_ok {
        return Err(ConfigError::Invalid {
            var: EKS_CLUSTER,
            reason: format!("{cluster:?} is not an EKS cluster name (letters, digits, - and _)"),
        });
    }
    let endpoint = match (endpoint, ca_data) {
        (None, None) => None,
        (Some(server), Some(ca_data)) => {
            if !server.starts_with("https://") || server.len() <= "https://".len() {
                return Err(ConfigError::Invalid {
                    var: EKS_ENDPOINT,
                    reason: format!("expected the API server's https:// URL, got {server:?}"),
                });
            }
            let base64 = ca_data
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
            if !base64 {
                return Err(ConfigError::Invalid {
                    var: EKS_CA_DATA,
                    reason: "expected base64 of the CA's PEM, as `aws eks describe-cluster --query cluster.certificateAuthority.data` prints it".into(),
                });
            }
            Some(EksEndpoint { server, ca_data })
        }
        (Some(_), None) => {
            return Err(ConfigError::Missing {
                var: EKS_CA_DATA,
                hint: "QUAYHOOK_EKS_ENDPOINT needs the cluster CA too (`aws eks describe-cluster --query cluster.certificateAuthority.data`), or unset both to use eks:DescribeCluster",
            });
        }
        (None, Some(_)) => {
            return Err(ConfigError::Missing {
                var: EKS_ENDPOINT,
                hint: "QUAYHOOK_EKS_CA_DATA needs the API server URL too (`aws eks describe-cluster --query cluster.endpoint`), or unset both to use eks:DescribeCluster",
            });
        }
    };
    Ok(Some(EksConfig { cluster, endpoint }))
}

/// The `QUAYHOOK_ECR_*` variables: `None` without `QUAYHOOK_ECR_PROJECTS`.
///
/// Projects are Kubernetes namespace names (DNS-1123 labels), or `*` alone for every
/// namespace. Prefixes use the characters of ECR repository names (lowercase letters,
/// digits, `.`, `_`, `-`, `/`) and need `QUAYHOOK_ECR_PROJECTS`: without it every event is
/// refused, so a prefix alone is a mistake worth failing init for.
fn ecr_config(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<EcrConfig>, ConfigError> {
    let list = |text: String| -> Vec<String> {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let prefixes = get(ECR_REPOSITORY_PREFIXES).map(list);
    let Some(projects) = get(ECR_PROJECTS).map(list) else {
        if prefixes.is_some() {
            return Err(ConfigError::Missing {
                var: ECR_PROJECTS,
                hint: "QUAYHOOK_ECR_REPOSITORY_PREFIXES scopes ECR events, which are refused unless QUAYHOOK_ECR_PROJECTS names the projects they may refresh (or `*`)",
            });
        }
        return Ok(None);
    };
    let invalid = |var, reason: String| ConfigError::Invalid { var, reason };
    let projects = match projects.as_slice() {
        [] => {
            return Err(invalid(
                ECR_PROJECTS,
                "no project named: list projects, comma separated, or `*` for all".into(),
            ));
        }
        [all] if all == "*" => EcrProjects::All,
        _ => {
            let mut names = Vec::with_capacity(projects.len());
            for name in projects {
                if name == "*" {
                    return Err(invalid(
                        ECR_PROJECTS,
                        "`*` (every project) cannot be combined with project names".into(),
                    ));
                }
                if !is_namespace_name(&name) {
                    return Err(invalid(
                        ECR_PROJECTS,
                        format!("{name:?} is not a project (namespace) name"),
                    ));
                }
                names.push(name);
            }
            names.sort_unstable();
            names.dedup();
            EcrProjects::Only(names)
        }
    };
    let mut repository_prefixes = prefixes.unwrap_or_default();
    if get(ECR_REPOSITORY_PREFIXES).is_some() && repository_prefixes.is_empty() {
        return Err(invalid(
            ECR_REPOSITORY_PREFIXES,
            "no prefix named: list repository-name prefixes, comma separated, or unset it".into(),
        ));
    }
    for prefix in &repository_prefixes {
        let ecr_chars = prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/".contains(&b));
        if !ecr_chars || prefix.len() > 256 {
            return Err(invalid(
                ECR_REPOSITORY_PREFIXES,
                format!(
                    "{prefix:?} is not the start of an ECR repository name (lowercase letters, digits, . _ - /)"
                ),
            ));
        }
    }
    repository_prefixes.sort_unstable();
    repository_prefixes.dedup();
    Ok(Some(EcrConfig {
        projects,
        repository_prefixes,
    }))
}

/// Whether `name` is a Kubernetes namespace name: a DNS-1123 label (1–63 lowercase letters,
/// digits and `-`, starting and ending with a letter or digit).
fn is_namespace_name(name: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    (1..=63).contains(&name.len())
        && name.starts_with(alnum)
        && name.ends_with(alnum)
        && name.chars().all(|c| alnum(c) || c == '-')
}

/// Parses `90`, `1.5`, `250ms`, `10s`, `5m` or `1h` into a duration.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("unknown unit in {text:?}; use ms, s, m or h")),
    };
    match number.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 && n * scale < 86_400.0 * 365.0 => {
            Ok(Duration::from_secs_f64(n * scale))
        }
        _ => Err(format!("{text:?} is not a duration like 10s, 250ms or 5m")),
    }
}

/// Go `path.Clean` of a base path, without the trailing `/`: `""` and `/` become `""`.
pub fn clean_base_path(path: &str) -> String {
    let cleaned = kargo_match::path::clean(&format!("/{path}"));
    if cleaned == "/" {
        String::new()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    const MINIMAL: [(&str, &str); 2] = [
        (
            RECEIVER_SECRET_IDS,
            "quayhook/receiver/a, quayhook/receiver/b,",
        ),
        (KUBECONFIG_SECRET_ID, "quayhook/kubeconfig"),
    ];

    #[test]
    fn minimal_secrets_manager_config_has_documented_defaults() {
        let c = parse(&MINIMAL).unwrap();
        assert_eq!(
            c.secrets,
            SecretsConfig::SecretsManager {
                receiver_ids: vec!["quayhook/receiver/a".into(), "quayhook/receiver/b".into()],
                receiver_prefix: None,
                kubeconfig_id: "quayhook/kubeconfig".into(),
            }
        );
        assert_eq!(c.base_path, "");
        assert_eq!(c.secrets_ttl, Duration::from_secs(300));
        assert_eq!(c.secrets_miss_interval, Duration::from_secs(10));
        assert_eq!(c.index_ttl, Duration::from_secs(60));
        assert_eq!(c.index_miss_interval, Duration::from_secs(1));
        assert_eq!(c.list_page_size, 500);
        assert_eq!(c.patch_concurrency, 100);
        assert_eq!(c.request_timeout, Duration::from_secs(8));
        assert_eq!(c.connect_timeout, Duration::from_secs(2));
        assert_eq!(c.cluster_idle_timeout, Duration::from_secs(600));
        assert_eq!(c.max_attempts, 3);
        assert!(c.prefetch);
    }

    #[test]
    fn a_prefix_alone_names_the_receivers() {
        let c = parse(&[
            (RECEIVER_SECRET_PREFIX, "quayhook/receivers/"),
            (KUBECONFIG_SECRET_ID, "k"),
        ])
        .unwrap();
        assert!(
            matches!(c.secrets, SecretsConfig::SecretsManager { receiver_prefix: Some(p), .. } if p == "quayhook/receivers/")
        );
    }

    #[test]
    fn missing_sources_name_the_variable() {
        assert!(matches!(
            parse(&[]),
            Err(ConfigError::Missing {
                var: RECEIVER_SECRET_IDS,
                ..
            })
        ));
        assert!(matches!(
            parse(&[(RECEIVER_SECRET_IDS, "a")]),
            Err(ConfigError::Missing {
                var: KUBECONFIG_SECRET_ID,
                ..
            })
        ));
        assert!(matches!(
            parse(&[(RECEIVERS_FILE, "r.json")]),
            Err(ConfigError::Missing {
                var: KUBECONFIG_FILE,
                ..
            })
        ));
        assert!(matches!(
            parse(&[(KUBECONFIG_FILE, "k")]),
            Err(ConfigError::Missing {
                var: RECEIVERS_FILE,
                ..
            })
        ));
    }

    #[test]
    fn file_mode_needs_no_aws() {
        let c = parse(&[(RECEIVERS_FILE, "r.json"), (KUBECONFIG_FILE, "/k/config")]).unwrap();
        assert_eq!(
            c.secrets,
            SecretsConfig::Files {
                receivers: "r.json".into(),
                kubeconfig: "/k/config".into()
            }
        );
    }

    #[test]
    fn durations_accept_units_and_reject_garbage() {
        let with = |k: &'static str, v: &'static str| {
            let mut vars = MINIMAL.to_vec();
            vars.push((k, v));
            parse(&vars)
        };
        assert_eq!(
            with("QUAYHOOK_INDEX_TTL", "90").unwrap().index_ttl,
            Duration::from_secs(90)
        );
        assert_eq!(
            with("QUAYHOOK_INDEX_TTL", "250ms").unwrap().index_ttl,
            Duration::from_millis(250)
        );
        assert_eq!(
            with("QUAYHOOK_INDEX_TTL", "5m").unwrap().index_ttl,
            Duration::from_secs(300)
        );
        assert_eq!(
            with("QUAYHOOK_INDEX_TTL", "0").unwrap().index_ttl,
            Duration::ZERO,
            "zero disables caching"
        );
        for bad in ["-1", "ten", "5d", "1e400", "NaN"] {
            assert!(
                matches!(
                    with("QUAYHOOK_INDEX_TTL", bad),
                    Err(ConfigError::Invalid {
                        var: "QUAYHOOK_INDEX_TTL",
                        ..
                    })
                ),
                "{bad}"
            );
        }
        assert!(with("QUAYHOOK_REQUEST_TIMEOUT", "0").is_err());
        assert!(with("QUAYHOOK_PATCH_CONCURRENCY", "0").is_err());
        assert!(with("QUAYHOOK_PATCH_CONCURRENCY", "many").is_err());
        let idle = with("QUAYHOOK_CLUSTER_IDLE_TIMEOUT", "30m").unwrap();
        assert_eq!(idle.cluster_idle_timeout, Duration::from_secs(1800));
        assert!(with("QUAYHOOK_CLUSTER_IDLE_TIMEOUT", "0s").is_err());
        assert!(with("QUAYHOOK_PREFETCH", "maybe").is_err());
        assert!(!with("QUAYHOOK_PREFETCH", "false").unwrap().prefetch);
        assert!(with("QUAYHOOK_MAX_TAGS", "0").is_err());
        assert_eq!(with("QUAYHOOK_MAX_TAGS", "10").unwrap().max_tags, 10);
        assert!(with("QUAYHOOK_SERVE_HEADER_TIMEOUT", "0s").is_err());
        assert!(with("QUAYHOOK_SERVE_MAX_CONNECTIONS", "0").is_err());
        let serve = with("QUAYHOOK_SERVE_SHUTDOWN_GRACE", "0s").unwrap().serve;
        assert_eq!(serve.shutdown_grace, Duration::ZERO, "no grace is allowed");
        assert_eq!(serve.max_connections, 512);
        assert_eq!(serve.header_timeout, Duration::from_secs(10));
        assert_eq!(with("QUAYHOOK_PREFETCH", "true").unwrap().queue, None);
        let queue = with(
            "QUAYHOOK_QUEUE_URL",
            "https://sqs.eu-west-1.amazonaws.com/1/q",
        )
        .unwrap()
        .queue
        .expect("durable path on");
        assert_eq!(queue.backoff_base, Duration::from_secs(30));
        assert_eq!(queue.backoff_max, Duration::from_secs(900));
        assert!(with("QUAYHOOK_QUEUE_URL", "my-queue").is_err());
        assert!(matches!(
            with("_HANDLER", "worker"),
            Err(ConfigError::Missing {
                var: "QUAYHOOK_QUEUE_URL",
                ..
            })
        ));
        let mut worker = MINIMAL.to_vec();
        worker.extend([
            ("_HANDLER", "worker"),
            ("QUAYHOOK_QUEUE_URL", "https://sqs/1/q"),
        ]);
        assert_eq!(
            parse(&worker).unwrap().lambda_handler,
            LambdaHandler::Worker
        );
        assert_eq!(
            with("_HANDLER", "bootstrap").unwrap().lambda_handler,
            LambdaHandler::Http
        );
        assert!(with("_HANDLER", "ecr").is_err());
    }

    #[test]
    fn metrics_are_on_inside_lambda_unless_switched_off() {
        let with = |vars: &[(&'static str, &'static str)]| {
            let mut all = MINIMAL.to_vec();
            all.extend_from_slice(vars);
            parse(&all)
        };
        assert!(!with(&[]).unwrap().metrics, "off for quayhook serve");
        assert!(
            with(&[("AWS_LAMBDA_FUNCTION_NAME", "quayhook")])
                .unwrap()
                .metrics
        );
        assert!(
            !with(&[
                ("AWS_LAMBDA_FUNCTION_NAME", "quayhook"),
                ("QUAYHOOK_METRICS", "false")
            ])
            .unwrap()
            .metrics
        );
        assert!(with(&[("QUAYHOOK_METRICS", "true")]).unwrap().metrics);
        assert!(matches!(
            with(&[("QUAYHOOK_METRICS", "sometimes")]),
            Err(ConfigError::Invalid {
                var: "QUAYHOOK_METRICS",
                ..
            })
        ));
    }

    #[test]
    fn eks_mode_needs_a_cluster_name_and_no_kubeconfig_secret() {
        let receivers = (RECEIVER_SECRET_PREFIX, "quayhook/receivers/");
        let c = parse(&[receivers, (EKS_CLUSTER, "prod-1")]).unwrap();
        assert_eq!(
            c.secrets,
            SecretsConfig::Eks {
                receiver_ids: Vec::new(),
                receiver_prefix: Some("quayhook/receivers/".into()),
                cluster: EksConfig {
                    cluster: "prod-1".into(),
                    endpoint: None,
                },
            },
            "no endpoint: DescribeCluster at cold start"
        );
        let c = parse(&[
            receivers,
            (EKS_CLUSTER, "prod-1"),
            (EKS_ENDPOINT, "https://ABC.gr7.eu-west-1.eks.amazonaws.com"),
            (EKS_CA_DATA, "LS0tLS1CRUdJTiBDRVJU+/=="),
        ])
        .unwrap();
        let SecretsConfig::Eks { cluster, .. } = c.secrets else {
            panic!("EKS mode")
        };
        assert_eq!(
            cluster.endpoint,
            Some(EksEndpoint {
                server: "https://ABC.gr7.eu-west-1.eks.amazonaws.com".into(),
                ca_data: "LS0tLS1CRUdJTiBDRVJU+/==".into(),
            })
        );
    }

    #[test]
    fn eks_mode_rejects_half_an_endpoint_bad_values_and_mixed_modes() {
        let receivers = (RECEIVER_SECRET_PREFIX, "r/");
        let err = |vars: &[(&'static str, &'static str)]| {
            let mut all = vec![receivers];
            all.extend_from_slice(vars);
            match parse(&all) {
                Err(ConfigError::Missing { var, .. } | ConfigError::Invalid { var, .. }) => var,
                Ok(c) => panic!("accepted {vars:?}: {c:?}"),
            }
        };
        let server = (EKS_ENDPOINT, "https://x.eks.amazonaws.com");
        let ca = (EKS_CA_DATA, "Zm9v");
        assert_eq!(err(&[(EKS_CLUSTER, "c"), server]), EKS_CA_DATA);
        assert_eq!(err(&[(EKS_CLUSTER, "c"), ca]), EKS_ENDPOINT);
        assert_eq!(err(&[server, ca]), EKS_CLUSTER, "endpoint without cluster");
        assert_eq!(err(&[(EKS_CLUSTER, "-bad")]), EKS_CLUSTER);
        assert_eq!(err(&[(EKS_CLUSTER, "has space")]), EKS_CLUSTER);
        assert_eq!(
            err(&[(EKS_CLUSTER, "c"), (EKS_ENDPOINT, "http://x"), ca]),
            EKS_ENDPOINT
        );
        assert_eq!(
            err(&[(EKS_CLUSTER, "c"), server, (EKS_CA_DATA, "-----BEGIN")]),
            EKS_CA_DATA
        );
        assert_eq!(
            err(&[(EKS_CLUSTER, "c"), (KUBECONFIG_SECRET_ID, "k")]),
            KUBECONFIG_SECRET_ID,
            "one cluster credential, not two"
        );
        assert_eq!(
            err(&[(EKS_CLUSTER, "c"), (RECEIVERS_FILE, "r.json")]),
            EKS_CLUSTER
        );
        assert!(matches!(
            parse(&[(EKS_CLUSTER, "c")]),
            Err(ConfigError::Missing {
                var: RECEIVER_SECRET_IDS,
                ..
            })
        ));
    }

    #[test]
    fn ecr_events_are_refused_unless_projects_are_configured() {
        let with = |vars: &[(&'static str, &'static str)]| {
            let mut all = MINIMAL.to_vec();
            all.extend_from_slice(vars);
            parse(&all)
        };
        assert_eq!(with(&[]).unwrap().ecr, None, "unset: ECR events refused");
        assert_eq!(
            with(&[(ECR_PROJECTS, " team-b, kargo-demo ,team-b,")])
                .unwrap()
                .ecr,
            Some(EcrConfig {
                projects: EcrProjects::Only(vec!["kargo-demo".into(), "team-b".into()]),
                repository_prefixes: Vec::new(),
            }),
            "sorted and deduplicated"
        );
        let all = with(&[
            (ECR_PROJECTS, "*"),
            (ECR_REPOSITORY_PREFIXES, "team-a/, apps/web,team-a/"),
        ])
        .unwrap()
        .ecr
        .expect("ECR on");
        assert_eq!(all.projects, EcrProjects::All);
        assert_eq!(all.repository_prefixes, ["apps/web", "team-a/"]);
        assert!(all.covers("team-a/api") && all.covers("apps/web-frontend"));
        assert!(!all.covers("team-b/api") && !all.covers("apps"));
        let open = with(&[(ECR_PROJECTS, "kargo-demo")]).unwrap().ecr.unwrap();
        assert!(open.covers("anything"), "no prefixes: every repository");
    }

    #[test]
    fn ecr_scope_rejects_bad_projects_bad_prefixes_and_prefixes_alone() {
        const LONG_LABEL: &str = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
        assert_eq!(LONG_LABEL.len(), 64);
        let err = |vars: &[(&'static str, &'static str)]| {
            let mut all = MINIMAL.to_vec();
            all.extend_from_slice(vars);
            match parse(&all) {
                Err(ConfigError::Missing { var, .. } | ConfigError::Invalid { var, .. }) => var,
                Ok(c) => panic!("accepted {vars:?}: {:?}", c.ecr),
            }
        };
        for bad in [
            ",",
            "*,kargo-demo",
            "Kargo-Demo",
            "-demo",
            "demo-",
            "a_b",
            "a/b",
        ] {
            assert_eq!(err(&[(ECR_PROJECTS, bad)]), ECR_PROJECTS, "{bad}");
        }
        assert_eq!(
            err(&[(ECR_PROJECTS, LONG_LABEL)]),
            ECR_PROJECTS,
            "longer than a DNS label"
        );
        for bad in [",", "Team/", "team a", "team*"] {
            assert_eq!(
                err(&[(ECR_PROJECTS, "*"), (ECR_REPOSITORY_PREFIXES, bad)]),
                ECR_REPOSITORY_PREFIXES,
                "{bad}"
            );
        }
        assert_eq!(
            err(&[(ECR_REPOSITORY_PREFIXES, "team-a/")]),
            ECR_PROJECTS,
            "prefixes without projects"
        );
    }

    #[test]
    fn base_path_is_cleaned_like_go_path_join() {
        for (raw, want) in [
            ("", ""),
            ("/", ""),
            ("webhook", "/webhook"),
            ("/webhook/", "/webhook"),
            ("/a//b/", "/a/b"),
            ("/a/./b/../c", "/a/c"),
        ] {
            assert_eq!(clean_base_path(raw), want, "{raw}");
        }
    }
}
