//! End-to-end suite: quayhook against a Kubernetes cluster it did not set up itself.
//!
//! With `QUAYHOOK_E2E_KUBECONFIG` pointing at an admin kubeconfig of a real cluster that has
//! the Warehouse CRD installed (`kubectl apply -f` Kargo's
//! `kargo.akuity.io_warehouses.yaml`), the suite runs there. Without it, the real-cluster run
//! is skipped (said loudly) and the same suite runs against the local API server, so the suite
//! itself is exercised on every CI run.
//!
//! Like a user would, it creates its own namespace, a ServiceAccount, a Role allowing only
//! get/list/patch on Warehouses and its RoleBinding, gets a token from the TokenRequest API
//! (no token Secrets: a bare envtest-style API server has no controller to fill them), stores
//! the resulting kubeconfig and a receiver secret in Secrets Manager (moto), and drives the
//! Lambda handler. It deletes the namespace at the end without waiting for it to go away.

use std::collections::HashMap;

use base64::Engine as _;
use futures::FutureExt as _;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kargo_match::token::{SecretString, receiver_token};
use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind, ObjectMeta};
use quayhook::cluster::KubeConnector;
use quayhook::config::Config;
use quayhook::secrets::SecretsManager;
use quayhook::state::State;
use serde_json::{Value, json};

use quayhook_testkit::apiserver::ApiServer;
use quayhook_testkit::events::push;
use quayhook_testkit::fixtures::{QUAY_REPO, wh};
use quayhook_testkit::harness::deliver;
use quayhook_testkit::{logs, moto};

struct Cluster {
    client: kube::Client,
    config: kube::Config,
    _local: Option<ApiServer>,
}

async fn cluster() -> Cluster {
    let (text, local) = match std::env::var("QUAYHOOK_E2E_KUBECONFIG") {
        Ok(path) if !path.is_empty() => {
            eprintln!("e2e: running against the cluster of QUAYHOOK_E2E_KUBECONFIG={path}");
            let text = std::fs::read_to_string(&path).expect("read QUAYHOOK_E2E_KUBECONFIG");
            (text, None)
        }
        _ => {
            eprintln!(
                "e2e: QUAYHOOK_E2E_KUBECONFIG is not set: SKIPPING the real-cluster run; \
                 running the same suite against the local API server instead"
            );
            let api = ApiServer::start().await;
            (api.kubeconfig_yaml(api.admin_token(), None), Some(api))
        }
    };
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::from_yaml(&text).expect("kubeconfig parses"),
        &KubeConfigOptions::default(),
    )
    .await
    .expect("kubeconfig usable");
    Cluster {
        client: kube::Client::try_from(config.clone()).expect("client"),
        config,
        _local: local,
    }
}

fn warehouses(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("kargo.akuity.io", "v1alpha1", "Warehouse");
    Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, "warehouses"),
    )
}

/// A kubeconfig for `token` on the same server and CA as the admin configuration.
fn kubeconfig_for(config: &kube::Config, token: &str) -> String {
    let pem: String = config
        .root_cert
        .iter()
        .flatten()
        .map(|der| {
            let b64 = base64::engine::general_purpose::STANDARD.encode(der);
            let lines: Vec<&str> = b64
                .as_bytes()
                .chunks(64)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect();
            format!(
                "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                lines.join("\n")
            )
        })
        .collect();
    let mut cluster = json!({ "server": config.cluster_url.to_string().trim_end_matches('/') });
    if !pem.is_empty() {
        cluster["certificate-authority-data"] =
            json!(base64::engine::general_purpose::STANDARD.encode(pem));
    }
    if let Some(name) = &config.tls_server_name {
        cluster["tls-server-name"] = json!(name);
    }
    json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "quayhook",
        "clusters": [{ "name": "target", "cluster": cluster }],
        "users": [{ "name": "quayhook", "user": { "token": token } }],
        "contexts": [{ "name": "quayhook", "context": { "cluster": "target", "user": "quayhook" } }]
    })
    .to_string()
}

/// Creates the namespace, ServiceAccount, Role and RoleBinding; returns a TokenRequest token.
async fn provision(client: &kube::Client, ns: &str) -> String {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let meta = |name: &str| ObjectMeta {
        name: Some(name.into()),
        ..ObjectMeta::default()
    };
    namespaces
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: meta(ns),
                ..Namespace::default()
            },
        )
        .await
        .expect("create namespace");
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    sas.create(
        &PostParams::default(),
        &ServiceAccount {
            metadata: meta("quayhook"),
            ..ServiceAccount::default()
        },
    )
    .await
    .expect("create service account");
    let roles: Api<Role> = Api::namespaced(client.clone(), ns);
    let role = Role {
        metadata: meta("quayhook"),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["kargo.akuity.io".into()]),
            resources: Some(vec!["warehouses".into()]),
            verbs: vec!["get".into(), "list".into(), "patch".into()],
            ..PolicyRule::default()
        }]),
    };
    roles
        .create(&PostParams::default(), &role)
        .await
        .expect("create role");
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), ns);
    let binding = RoleBinding {
        metadata: meta("quayhook"),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: "quayhook".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "quayhook".into(),
            namespace: Some(ns.into()),
            ..Subject::default()
        }]),
    };
    bindings
        .create(&PostParams::default(), &binding)
        .await
        .expect("create role binding");
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: None,
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let issued = sas
        .create_token_request("quayhook", &PostParams::default(), &request)
        .await
        .expect("TokenRequest");
    issued
        .status
        .and_then(|s| s.token)
        .expect("TokenRequest returned a token")
}

async fn state_for(prefix: &str, kubeconfig: &str) -> State<SecretsManager, KubeConnector> {
    let sm = moto::client();
    moto::put_secret(&sm, &format!("{prefix}/kubeconfig"), kubeconfig).await;
    let vars: HashMap<&str, String> = HashMap::from([
        (
            "QUAYHOOK_RECEIVER_SECRET_PREFIX",
            format!("{prefix}/receivers/"),
        ),
        (
            "QUAYHOOK_KUBECONFIG_SECRET_ID",
            format!("{prefix}/kubeconfig"),
        ),
        ("QUAYHOOK_INDEX_MISS_INTERVAL", "0".into()),
        ("QUAYHOOK_SECRETS_MISS_INTERVAL", "0".into()),
    ]);
    let config = Config::from_lookup(|k| vars.get(k).cloned()).expect("config");
    let connector = KubeConnector::from_config(&config);
    let secrets = SecretsManager::new(
        sm,
        Vec::new(),
        Some(format!("{prefix}/receivers/")),
        format!("{prefix}/kubeconfig"),
    );
    State::new(config, secrets, connector)
}

fn names(body: &Value, list: &str) -> Vec<String> {
    body[list]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|w| w["name"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn scenarios(client: &kube::Client, config: &kube::Config, ns: &str, prefix: &str) {
    let sa_token = provision(client, ns).await;
    let whs = warehouses(client, ns);
    for w in [
        wh(ns, "app").image(QUAY_REPO, json!({"constraint": "^1.0.0"})),
        wh(ns, "app-v2").image(QUAY_REPO, json!({"constraint": "^2.0.0"})),
        wh(ns, "doomed").image(QUAY_REPO, json!({})),
    ] {
        let obj: DynamicObject = serde_json::from_value(w.json()).expect("warehouse object");
        whs.create(&PostParams::default(), &obj)
            .await
            .expect("create warehouse (is the Warehouse CRD installed?)");
    }
    let state = state_for(prefix, &kubeconfig_for(config, &sa_token)).await;
    let sm = moto::client();
    let receiver = json!({"project": ns, "receiver": "quay", "secret": "e2e-s3cret"});
    moto::put_secret(
        &sm,
        &format!("{prefix}/receivers/{ns}-quay"),
        &receiver.to_string(),
    )
    .await;
    let token = receiver_token(ns, "quay", &SecretString::new("e2e-s3cret"));

    // Happy path with a tag filter: only the ^1 Warehouse, annotation visible in the cluster.
    let (status, body) = deliver(&state, &token, &push(QUAY_REPO, &["v1.4.0"])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(names(&body, "refreshed"), ["app", "doomed"]);
    assert_eq!(names(&body, "skipped"), ["app-v2"]);
    let app = whs.get("app").await.expect("get app");
    let stamp = app
        .metadata
        .annotations
        .unwrap_or_default()
        .remove("kargo.akuity.io/refresh");
    assert!(
        stamp.is_some_and(|s| s.ends_with('Z')),
        "refresh annotation set"
    );

    // Unknown token.
    assert_eq!(
        deliver(&state, &"a".repeat(64), &push(QUAY_REPO, &["v1"])).await,
        (404, json!({}))
    );

    // A Warehouse deleted after the index was built: reported gone, not a failure.
    whs.delete("doomed", &DeleteParams::default())
        .await
        .expect("delete warehouse");
    let (status, body) = deliver(&state, &token, &push(QUAY_REPO, &["v1.5.0"])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(names(&body, "gone"), ["doomed"]);

    // A Warehouse created just now is found (the miss triggers one re-list).
    let late: DynamicObject = serde_json::from_value(
        wh(ns, "late")
            .image("quay.io/mynamespace/late", json!({}))
            .json(),
    )
    .unwrap();
    whs.create(&PostParams::default(), &late)
        .await
        .expect("create late warehouse");
    let (status, body) = deliver(&state, &token, &push("quay.io/mynamespace/late", &[])).await;
    assert_eq!(
        (status, names(&body, "refreshed")),
        (200, vec!["late".to_owned()]),
        "{body}"
    );

    // The service account's token is scoped to its namespace: another project is forbidden.
    let outside = json!({"project": "kube-system", "receiver": "quay", "secret": "e2e-other"});
    moto::put_secret(
        &sm,
        &format!("{prefix}/receivers/kube-system-quay"),
        &outside.to_string(),
    )
    .await;
    let other = receiver_token("kube-system", "quay", &SecretString::new("e2e-other"));
    let (status, body) = deliver(&state, &other, &push(QUAY_REPO, &["v1"])).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"].as_str().unwrap_or_default().contains("403"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn end_to_end_against_a_cluster() {
    logs::install();
    let Cluster {
        client,
        config,
        _local,
    } = cluster().await;
    let suffix = format!("{:08x}", rand_suffix());
    let ns = format!("quayhook-e2e-{suffix}");
    let prefix = format!("e2e-{suffix}");
    let outcome = std::panic::AssertUnwindSafe(scenarios(&client, &config, &ns, &prefix))
        .catch_unwind()
        .await;
    // Clean up whatever happened; never wait for the namespace to finish terminating (a bare
    // API server has no controller to finish it).
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if let Err(e) = namespaces.delete(&ns, &DeleteParams::default()).await {
        eprintln!("e2e: could not delete namespace {ns}: {e}");
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    let logs = logs::snapshot();
    for secret in ["e2e-s3cret", "e2e-other"] {
        assert!(!logs.contains(secret), "a receiver secret was logged");
    }
}

fn rand_suffix() -> u32 {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).expect("random bytes");
    u32::from_le_bytes(b)
}
