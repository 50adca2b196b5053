//! The server's TLS identity: a CA generated at start and a leaf certificate it signs, served
//! through rustls with the aws-lc-rs provider only (kube in the same process panics when
//! rustls sees two providers), and the protocols offered through ALPN. No I/O beyond key
//! generation.

use std::net::IpAddr;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokio_rustls::rustls::{self, pki_types};

/// A CA and a server certificate for `localhost`, `127.0.0.1`, `::1` and the bound address.
pub(super) fn tls_config(ip: IpAddr, alpn: super::Alpn) -> (rustls::ServerConfig, String) {
    let ca_key = KeyPair::generate().expect("generate the CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "quayhook-test-apiserver-ca");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("self-sign the CA");

    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if !ip.is_unspecified() && !names.contains(&ip.to_string()) {
        names.push(ip.to_string());
    }
    let leaf_key = KeyPair::generate().expect("generate the server key");
    let mut leaf = CertificateParams::new(names).expect("server certificate parameters");
    leaf.distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    let cert = leaf
        .signed_by(&leaf_key, &ca)
        .expect("sign the server certificate");

    let chain = vec![cert.der().clone(), ca.der().clone()];
    let key = pki_types::PrivateKeyDer::Pkcs8(pki_types::PrivatePkcs8KeyDer::from(
        leaf_key.serialize_der(),
    ));
    // aws-lc-rs only: kube with two rustls providers in one process panics.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("TLS server certificate");
    config.alpn_protocols = match alpn {
        super::Alpn::H2AndHttp1 => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        super::Alpn::Http1Only => vec![b"http/1.1".to_vec()],
    };
    (config, ca.pem())
}
