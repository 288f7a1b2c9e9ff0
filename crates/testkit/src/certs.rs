//! A self-signed test certificate, written as PEM files for greygate,
//! Postfix and haproxy configs.

use std::path::PathBuf;

pub struct TestCert {
    _dir: tempfile::TempDir,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Certificate and key in one file (haproxy's format).
    pub combined: PathBuf,
}

impl TestCert {
    /// A certificate for `names` (DNS names or IP addresses).
    pub fn new(names: &[&str]) -> TestCert {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let issued = rcgen::generate_simple_self_signed(names).expect("generate certificate");
        let dir = tempfile::Builder::new().prefix("greygate-cert-").tempdir().expect("temp dir");
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        let combined = dir.path().join("combined.pem");
        let (cert_pem, key_pem) = (issued.cert.pem(), issued.signing_key.serialize_pem());
        std::fs::write(&cert, &cert_pem).expect("write cert");
        std::fs::write(&key, &key_pem).expect("write key");
        std::fs::write(&combined, format!("{cert_pem}{key_pem}")).expect("write combined");
        // Postfix's smtpd runs unprivileged and must read them.
        for f in [&cert, &key, &combined] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
        TestCert { _dir: dir, cert, key, combined }
    }
}
