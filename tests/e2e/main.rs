//! End-to-end suite: quayhook against a Kubernetes cluster it did not set up itself.
//!
//! With `QUAYHOOK_E2E_KUBECONFIG` pointing at an admin kubeconfig of a real cluster that has
//! the Warehouse CRD installed (`kubectl apply -f` Kargo's
//! `kargo.akuity.io_warehouses.yaml`), the suite runs there. Without it, the real-cluster run
//! is skipped (said loudly) and the same suite runs against the local API server, so the suite
//! itself is exercised on every CI run.
//!
//! Like a user would, it creates its own namespace, a ServiceAccount, a Role allowing only
//! list/patch on Warehouses (what `deploy/rbac.sh` grants) and its RoleBinding, gets a token
//! from the TokenRequest API (no token Secrets: a bare envtest-style API server has no
//! controller to fill them), stores the resulting kubeconfig and a receiver secret in Secrets
//! Manager (moto), and drives the Lambda handler. It checks that the ServiceAccount's token
//! cannot mint tokens (403 on TokenRequest). It deletes the namespace at the end without
//! waiting for it to go away.
//!
//! When the cluster serves `admissionregistration.k8s.io/v1` `validatingadmissionpolicies`
//! (Kubernetes 1.30+, found by discovery), it also applies `deploy/admission-policy.yaml` for
//! its ServiceAccount (named after its namespace), runs the deliveries with the policy in
//! force, and proves that the ServiceAccount may still set the refresh annotation but not
//! change the spec, labels or other annotations; the policy is deleted at the end. Otherwise
//! (older clusters, and the local API server, which implements no admission) it says it
//! skipped that part and why.

use std::collections::HashMap;

use base64::Engine as _;
use futures::FutureExt as _;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kargo_match::token::{SecretString, receiver_token};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
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
            verbs: vec!["list".into(), "patch".into()],
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
    let sa_kubeconfig = kubeconfig_for(config, &sa_token);
    let sa_client = client_for_kubeconfig(&sa_kubeconfig).await;
    quayhook_cannot_mint_tokens(&sa_client, ns).await;
    let policy = if admission_policies_served(client).await {
        Some(apply_admission_policy(client, &sa_client, ns).await)
    } else {
        eprintln!(
            "e2e: the cluster does not serve admissionregistration.k8s.io/v1 \
             validatingadmissionpolicies (Kubernetes before 1.30, or the local API server, which \
             implements no admission plugins): SKIPPING the admission policy check \
             (deploy/admission-policy.yaml)"
        );
        None
    };
    let state = state_for(prefix, &sa_kubeconfig).await;
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
    if let Some(policy) = &policy {
        policy
            .proves_only_the_refresh_annotation_changes(client, &sa_client)
            .await;
    }

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
    if admission_policies_served(&client).await {
        delete_admission_policy(&client, &ns).await;
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    let logs = logs::snapshot();
    for secret in ["e2e-s3cret", "e2e-other"] {
        assert!(!logs.contains(secret), "a receiver secret was logged");
    }
}

async fn client_for_kubeconfig(text: &str) -> kube::Client {
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::from_yaml(text).expect("kubeconfig parses"),
        &KubeConfigOptions::default(),
    )
    .await
    .expect("kubeconfig usable");
    kube::Client::try_from(config).expect("client")
}

fn api_status(e: &kube::Error) -> Option<(u16, String)> {
    match e {
        kube::Error::Api(s) => Some((s.code, s.message.clone())),
        _ => None,
    }
}

/// quayhook's own identity may not mint tokens: TokenRequest with its token is a 403.
async fn quayhook_cannot_mint_tokens(sa_client: &kube::Client, ns: &str) {
    let sas: Api<ServiceAccount> = Api::namespaced(sa_client.clone(), ns);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let err = sas
        .create_token_request("quayhook", &PostParams::default(), &request)
        .await
        .expect_err("quayhook's token must not mint tokens");
    assert_eq!(api_status(&err).map(|s| s.0), Some(403), "{err}");
}

const POLICY_GROUP_VERSION: &str = "admissionregistration.k8s.io/v1";

/// Whether discovery lists `validatingadmissionpolicies` in admissionregistration.k8s.io/v1.
async fn admission_policies_served(client: &kube::Client) -> bool {
    client
        .list_api_group_resources(POLICY_GROUP_VERSION)
        .await
        .is_ok_and(|list| {
            list.resources
                .iter()
                .any(|r| r.name == "validatingadmissionpolicies")
        })
}

fn policy_api(client: &kube::Client, kind: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind);
    let plural = match kind {
        "ValidatingAdmissionPolicy" => "validatingadmissionpolicies",
        "ValidatingAdmissionPolicyBinding" => "validatingadmissionpolicybindings",
        other => panic!("not an admission policy kind: {other}"),
    };
    Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    )
}

/// The policy's (and binding's) name for this run's namespace, so that a real quayhook's
/// policy on the same cluster is left alone.
fn policy_name(ns: &str) -> String {
    format!("quayhook-refresh-only-{ns}")
}

/// The applied admission policy of this run.
struct AdmissionPolicy {
    ns: String,
}

/// Applies deploy/admission-policy.yaml for `system:serviceaccount:{ns}:quayhook` (as
/// `deploy/rbac.sh --admission-policy` rewrites it) and waits until it is in force: a
/// dry-run spec patch by the ServiceAccount is denied.
async fn apply_admission_policy(
    client: &kube::Client,
    sa_client: &kube::Client,
    ns: &str,
) -> AdmissionPolicy {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/admission-policy.yaml");
    let text = std::fs::read_to_string(path).expect("read deploy/admission-policy.yaml");
    let text = text
        .replace(
            "system:serviceaccount:quayhook:quayhook",
            &format!("system:serviceaccount:{ns}:quayhook"),
        )
        .replace("quayhook-refresh-only", &policy_name(ns));
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).expect("the policy file is YAML");
    assert_eq!(docs.len(), 2, "a policy and its binding");
    for doc in docs {
        let kind = doc["kind"].as_str().expect("kind").to_owned();
        let obj: DynamicObject = serde_json::from_value(doc).expect("an object");
        policy_api(client, &kind)
            .create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("create {kind}: {e}"));
    }
    eprintln!(
        "e2e: applied deploy/admission-policy.yaml as {}",
        policy_name(ns)
    );
    let whs = warehouses(sa_client, ns);
    let dry = PatchParams {
        dry_run: true,
        ..PatchParams::default()
    };
    let spec = json!({"spec": {"interval": "7m0s"}});
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        match whs.patch("app", &dry, &Patch::Merge(&spec)).await {
            Err(e) if api_status(&e).is_some_and(|(_, m)| m.contains(&policy_name(ns))) => break,
            other => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the admission policy is not in force after 90 s: {other:?}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
    }
    AdmissionPolicy { ns: ns.to_owned() }
}

impl AdmissionPolicy {
    /// The refresh annotation passes (the deliveries before this ran with the policy in
    /// force); spec, labels and other annotations are denied with the policy's message; the
    /// admin is not affected.
    async fn proves_only_the_refresh_annotation_changes(
        &self,
        client: &kube::Client,
        sa_client: &kube::Client,
    ) {
        let whs = warehouses(sa_client, &self.ns);
        let refresh = json!({"metadata": {"annotations": {"kargo.akuity.io/refresh": "e2e"}}});
        whs.patch("app", &PatchParams::default(), &Patch::Merge(&refresh))
            .await
            .expect("quayhook may set the refresh annotation");
        for (what, patch) in [
            ("spec", json!({"spec": {"interval": "7m0s"}})),
            ("a label", json!({"metadata": {"labels": {"e2e": "x"}}})),
            (
                "another annotation",
                json!({"metadata": {"annotations": {"e2e/other": "x"}}}),
            ),
            (
                "a finalizer",
                json!({"metadata": {"finalizers": ["e2e.example.com/hold"]}}),
            ),
        ] {
            let err = whs
                .patch("app", &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .expect_err(what);
            let (code, message) = api_status(&err).unwrap_or_default();
            assert!(
                matches!(code, 403 | 422)
                    && message.contains(&policy_name(&self.ns))
                    && message
                        .contains("quayhook may only set the kargo.akuity.io/refresh annotation"),
                "{what}: {err}"
            );
        }
        let dry = PatchParams {
            dry_run: true,
            ..PatchParams::default()
        };
        warehouses(client, &self.ns)
            .patch(
                "app",
                &dry,
                &Patch::Merge(&json!({"spec": {"interval": "7m0s"}})),
            )
            .await
            .expect("the policy applies to quayhook only");
        eprintln!(
            "e2e: admission policy: refresh annotation allowed, spec/labels/annotations/finalizers denied"
        );
    }
}

async fn delete_admission_policy(client: &kube::Client, ns: &str) {
    for kind in [
        "ValidatingAdmissionPolicyBinding",
        "ValidatingAdmissionPolicy",
    ] {
        match policy_api(client, kind)
            .delete(&policy_name(ns), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(e) if api_status(&e).is_some_and(|(c, _)| c == 404) => {}
            Err(e) => eprintln!("e2e: could not delete {kind} {}: {e}", policy_name(ns)),
        }
    }
}

fn rand_suffix() -> u32 {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).expect("random bytes");
    u32::from_le_bytes(b)
}
