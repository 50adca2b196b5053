//! `quayhook check`: everything a delivery needs, verified in order with the function's own
//! configuration, so an operator sees the first broken link with an actionable message.
//!
//! I/O. Prints a report to stdout (secret ids, never contents) and returns an error naming
//! the first failure that stops a delivery.

use std::fmt::Write as _;

use anyhow::{Context as _, bail};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use crate::cause::Chain;
use crate::cluster::{KubeConnector, KubeStore, WarehouseStore, client_config};
use crate::config::{Config, SecretsConfig};
use crate::secrets::{ConfiguredSecrets, SecretSource};
use kargo_match::index::Index;
use kargo_match::warehouse::{GROUP, PLURAL};

/// Runs every check and prints the report.
///
/// # Errors
/// The first problem that would make deliveries fail, with what to do about it.
pub async fn run(config: &Config, secrets: &ConfiguredSecrets) -> anyhow::Result<()> {
    println!("configuration");
    match &config.secrets {
        SecretsConfig::SecretsManager {
            receiver_ids,
            receiver_prefix,
            kubeconfig_id,
        } => {
            println!("  receiver secrets: ids {receiver_ids:?}, name prefix {receiver_prefix:?}");
            println!("  kubeconfig secret: {kubeconfig_id}");
        }
        SecretsConfig::Files {
            receivers,
            kubeconfig,
        } => {
            println!("  receivers file: {}", receivers.display());
            println!("  kubeconfig file: {}", kubeconfig.display());
        }
    }
    println!("  base path: {:?}", config.base_path);

    println!("receivers");
    let fetched = secrets
        .receivers()
        .await
        .context("cannot read receiver secrets (check secretsmanager:BatchGetSecretValue, ListSecrets and GetSecretValue on them, and kms:Decrypt for a customer-managed key)")?;
    for problem in &fetched.problems {
        println!("  SKIPPED {}", Chain(problem));
    }
    if fetched.receivers.is_empty() {
        bail!(
            "no usable receiver secret: store one with `quayhook secret new --project P --receiver R --store ID`"
        );
    }
    for r in &fetched.receivers {
        let scope = if r.project.is_empty() {
            "cluster-level (all namespaces)".to_owned()
        } else {
            format!("project {}", r.project)
        };
        let rotation = if r.previous_secret.is_some() {
            ", previous secret still accepted"
        } else {
            ""
        };
        println!(
            "  {}: receiver {} for {scope}{rotation}",
            r.source, r.receiver
        );
    }

    println!("cluster");
    let kubeconfig = secrets
        .kubeconfig()
        .await
        .context("cannot read the kubeconfig secret (check secretsmanager:GetSecretValue on it)")?;
    let kube_config = client_config(&kubeconfig, config.connect_timeout, config.request_timeout)
        .await
        .context("the kubeconfig secret is not usable")?;
    println!("  API server: {}", kube_config.cluster_url);
    let connector = KubeConnector::from_config(config);
    let store: KubeStore = crate::cluster::Connector::connect(&connector, &kubeconfig)
        .await
        .context("cannot build a client from the kubeconfig")?;
    let version = store
        .client()
        .apiserver_version()
        .await
        .context("cannot reach the API server (network path from the Lambda: VPC, security groups, endpoint access)")?;
    println!(
        "  reachable: Kubernetes {}.{}",
        version.major, version.minor
    );

    let mut scopes: Vec<Option<String>> = fetched
        .receivers
        .iter()
        .map(|r| (!r.project.is_empty()).then(|| r.project.clone()))
        .collect();
    scopes.sort();
    scopes.dedup();
    let mut failures = Vec::new();
    for scope in &scopes {
        let ns = scope.as_deref();
        let label = ns.map_or("all namespaces".to_owned(), |n| format!("namespace {n}"));
        for verb in ["list", "get", "patch"] {
            let allowed = access_review(store.client(), ns, verb)
                .await
                .with_context(|| format!("SelfSubjectAccessReview for {verb} in {label}"))?;
            if !allowed {
                failures.push(format!("the service account may not {verb} {PLURAL}.{GROUP} in {label}: grant it with deploy/rbac.yaml"));
            }
        }
        match store.list(ns, config.list_page_size).await {
            Ok(listed) => {
                let index = Index::from_listed(listed);
                println!(
                    "  {label}: {} warehouse(s), {} subscribed repositories",
                    index.len(),
                    index.url_count()
                );
                for u in index.unreadable() {
                    println!("    UNREADABLE {}: {}", u.name, u.error);
                }
                let mut lines = String::new();
                for (url, keys) in index.urls() {
                    let names: Vec<String> = keys.iter().map(ToString::to_string).collect();
                    let _ = writeln!(lines, "    {url} -> {}", names.join(", "));
                }
                print!("{lines}");
            }
            Err(e) => failures.push(format!("cannot list warehouses in {label}: {}", Chain(&e))),
        }
    }
    if !failures.is_empty() {
        for f in &failures {
            println!("  FAILED {f}");
        }
        bail!("{} check(s) failed", failures.len());
    }
    println!("all checks passed");
    Ok(())
}

async fn access_review(
    client: &kube::Client,
    namespace: Option<&str>,
    verb: &str,
) -> Result<bool, kube::Error> {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                group: Some(GROUP.into()),
                resource: Some(PLURAL.into()),
                verb: Some(verb.into()),
                namespace: namespace.map(str::to_owned),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let answer = api.create(&PostParams::default(), &review).await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}
