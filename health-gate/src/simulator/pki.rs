//! Certificates for the simulated node, generated at run time with `rcgen`
//! (ECDSA P-256 on the ring provider).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use super::SimError;

/// A throw-away PKI like kubeadm's `/etc/kubernetes/pki`, written to a
/// directory: a cluster CA, a serving certificate for the given addresses
/// (plus `localhost` and `127.0.0.1`), a client certificate (CN
/// `kubesafe-probe`, O `system:masters`), a static bearer token in
/// kube-apiserver's `--token-auth-file` format, and an unrelated CA for
/// negative tests. All keys are `0600`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Pki {
    /// The directory holding everything.
    pub dir: PathBuf,
    /// `ca.crt`: the cluster CA (give it to the probe).
    pub ca_cert: PathBuf,
    /// `apiserver.crt`: the serving certificate.
    pub server_cert: PathBuf,
    /// `apiserver.key`.
    pub server_key: PathBuf,
    /// `client.crt`: a client certificate signed by the cluster CA.
    pub client_cert: PathBuf,
    /// `client.key`.
    pub client_key: PathBuf,
    /// `tokens.csv`: `--token-auth-file` with one token.
    pub token_auth_file: PathBuf,
    /// `token`: that token alone (give it to the probe).
    pub token_file: PathBuf,
    /// `other-ca.crt`: a CA that signed nothing here.
    pub other_ca_cert: PathBuf,
}

impl Pki {
    /// Generates the PKI into `dir` (created if missing).
    ///
    /// # Errors
    /// [`SimError`] when a certificate cannot be generated or a file
    /// written.
    pub fn generate(dir: &Path, server_ips: &[IpAddr]) -> Result<Self, SimError> {
        std::fs::create_dir_all(dir).map_err(|source| SimError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let cert_err = |e: rcgen::Error| SimError::Certificate(e.to_string());

        let ca_key = KeyPair::generate().map_err(cert_err)?;
        let ca_p = ca_params("kubernetes")?;
        let ca_cert = ca_p.self_signed(&ca_key).map_err(cert_err)?;
        let issuer = Issuer::new(ca_p, &ca_key);

        let mut sans = vec![
            SanType::DnsName("localhost".try_into().map_err(cert_err)?),
            SanType::DnsName("kubernetes".try_into().map_err(cert_err)?),
            SanType::IpAddress(IpAddr::from([127, 0, 0, 1])),
        ];
        for ip in server_ips {
            if !sans.contains(&SanType::IpAddress(*ip)) {
                sans.push(SanType::IpAddress(*ip));
            }
        }
        let server_key = KeyPair::generate().map_err(cert_err)?;
        let mut server_params = leaf_params("kube-apiserver", None)?;
        server_params.subject_alt_names = sans;
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server_params
            .signed_by(&server_key, &issuer)
            .map_err(cert_err)?;

        let client_key = KeyPair::generate().map_err(cert_err)?;
        let mut client_params = leaf_params("kubesafe-probe", Some("system:masters"))?;
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client_params
            .signed_by(&client_key, &issuer)
            .map_err(cert_err)?;

        let other_key = KeyPair::generate().map_err(cert_err)?;
        let other_ca = ca_params("not-the-cluster-ca")?
            .self_signed(&other_key)
            .map_err(cert_err)?;

        let token = format!("kubesafe-sim-{:016x}", super::random_u64());
        let pki = Self {
            dir: dir.to_owned(),
            ca_cert: dir.join("ca.crt"),
            server_cert: dir.join("apiserver.crt"),
            server_key: dir.join("apiserver.key"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
            token_auth_file: dir.join("tokens.csv"),
            token_file: dir.join("token"),
            other_ca_cert: dir.join("other-ca.crt"),
        };
        write(&pki.ca_cert, &ca_cert.pem(), 0o644)?;
        write(&pki.server_cert, &server_cert.pem(), 0o644)?;
        write(&pki.server_key, &server_key.serialize_pem(), 0o600)?;
        write(&pki.client_cert, &client_cert.pem(), 0o644)?;
        write(&pki.client_key, &client_key.serialize_pem(), 0o600)?;
        write(
            &pki.token_auth_file,
            &format!("{token},kubesafe-probe,kubesafe-probe-uid,\"system:masters\"\n"),
            0o600,
        )?;
        write(&pki.token_file, &format!("{token}\n"), 0o600)?;
        write(&pki.other_ca_cert, &other_ca.pem(), 0o644)?;
        Ok(pki)
    }
}

fn ca_params(cn: &str) -> Result<CertificateParams, SimError> {
    let mut p = CertificateParams::new(Vec::<String>::new())
        .map_err(|e| SimError::Certificate(e.to_string()))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(p)
}

fn leaf_params(cn: &str, org: Option<&str>) -> Result<CertificateParams, SimError> {
    let mut p = CertificateParams::new(Vec::<String>::new())
        .map_err(|e| SimError::Certificate(e.to_string()))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    if let Some(o) = org {
        dn.push(DnType::OrganizationName, o);
    }
    p.distinguished_name = dn;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    Ok(p)
}

fn write(path: &Path, text: &str, mode: u32) -> Result<(), SimError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| SimError::Io {
        path: path.to_owned(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)
}
