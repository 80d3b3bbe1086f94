//! HTTPS for the sample app (`--tls`): a rustls server configuration (ring provider, like
//! the generator), from PEM files or from a self-signed certificate generated at start with
//! rcgen for `localhost`, `127.0.0.1` and `::1`. Optionally requires client certificates
//! signed by a given CA (`--tls-client-ca`), so client authentication can be tested.
//!
//! Stateless session tickets (TLS 1.3) are on, so a client reconnecting resumes its
//! session; `/_stats` counts handshakes and resumptions (see [`crate::stats`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// Where the certificate comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// Certificate chain and key files; `None`: generate a self-signed pair.
    pub files: Option<(PathBuf, PathBuf)>,
    /// Write the generated certificate here (PEM) for clients' `--cacert`.
    pub cert_out: Option<PathBuf>,
    /// Require client certificates signed by a CA in this PEM file.
    pub client_ca: Option<PathBuf>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server configuration for `settings`.
pub fn server_config(settings: &TlsSettings) -> Result<Arc<ServerConfig>> {
    let (chain, key) = match &settings.files {
        Some((cert, key)) => (read_certs(cert)?, read_key(key)?),
        None => generate(settings.cert_out.as_deref())?,
    };
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match &settings.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca)? {
                roots
                    .add(cert)
                    .with_context(|| format!("client CA {}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .with_context(|| format!("client CA {}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .context("TLS certificate and key do not match")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ticketer = rustls::crypto::ring::Ticketer::new().context("TLS session tickets")?;
    Ok(Arc::new(config))
}

type Pair = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// A self-signed certificate for the loopback names, optionally written out as PEM.
fn generate(cert_out: Option<&Path>) -> Result<Pair> {
    let names = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
    let ck = rcgen::generate_simple_self_signed(names).context("generating a certificate")?;
    if let Some(path) = cert_out {
        std::fs::write(path, ck.cert.pem())
            .with_context(|| format!("cannot write the certificate to {}", path.display()))?;
    }
    let key = PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der());
    Ok((vec![ck.cert.der().clone()], key.into()))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read certificates from {}", path.display()))?;
    if certs.is_empty() {
        bail!("{} contains no PEM certificate", path.display());
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .with_context(|| format!("cannot read a private key from {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_or_from_files_and_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("webapp-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("cert.pem");
        let cfg = server_config(&TlsSettings {
            cert_out: Some(out.clone()),
            ..TlsSettings::default()
        })
        .unwrap();
        assert_eq!(cfg.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert_eq!(read_certs(&out).unwrap().len(), 1);
        // The written certificate also serves as a client CA (self-signed).
        server_config(&TlsSettings {
            client_ca: Some(out.clone()),
            ..TlsSettings::default()
        })
        .unwrap();
        let err = server_config(&TlsSettings {
            files: Some((dir.join("missing.pem"), dir.join("key.pem"))),
            ..TlsSettings::default()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("missing.pem"), "{err:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
