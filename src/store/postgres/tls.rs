//! TLS to the server, with rustls, as libpq's `sslmode` defines it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::BACKEND;
use crate::store::{StoreError, TlsFailure};

/// How a connection uses TLS: libpq's `sslmode`, read from the connection
/// string (`sslmode=verify-full`, `?sslmode=verify-full`) or `PGSSLMODE`.
///
/// | mode | TLS | the server's certificate |
/// | --- | --- | --- |
/// | `disable` | never | |
/// | `allow`, `prefer` (the default) | if the server offers it | not checked |
/// | `require` | always | not checked, unless a root certificate file is given (`sslrootcert`, `PGSSLROOTCERT`): then as `verify-ca`, as libpq does |
/// | `verify-ca` | always | signed by a trusted authority |
/// | `verify-full` | always | signed by a trusted authority and naming the host connected to |
///
/// The trusted authorities are those of the file `sslrootcert` names (PEM,
/// one or more certificates), the system's (`sslrootcert=system`), or when
/// neither is given `~/.postgresql/root.crt` if it exists, else the
/// system's. (`allow` tries TLS first, where libpq tries without first; both
/// accept either.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS if the server offers it, certificate not checked (`allow` too).
    #[default]
    Prefer,
    /// TLS always, certificate not checked (see the table for a root file).
    Require,
    /// TLS always, certificate signed by a trusted authority.
    VerifyCa,
    /// TLS always, certificate signed by a trusted authority and valid for
    /// the host name connected to.
    VerifyFull,
}

/// A text that is not an `sslmode`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sslmode {0:?} is not one of disable, allow, prefer, require, verify-ca, verify-full")]
pub struct BadSslMode(String);

impl std::str::FromStr for SslMode {
    type Err = BadSslMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "disable" => Ok(SslMode::Disable),
            "allow" | "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            other => Err(BadSslMode(other.chars().take(20).collect())),
        }
    }
}

impl std::fmt::Display for SslMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        })
    }
}

impl SslMode {
    /// The mode the `tokio-postgres` client negotiates with.
    pub(super) fn negotiation(self) -> tokio_postgres::config::SslMode {
        match self {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        }
    }
}

/// Where the trusted certificate authorities come from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) enum Roots {
    /// `~/.postgresql/root.crt` if it exists, else the system's.
    #[default]
    Default,
    /// The system's (`sslrootcert=system`).
    System,
    /// A PEM file of one or more certificates.
    File(PathBuf),
}

impl Roots {
    pub(super) fn parse(text: &str) -> Roots {
        if text == "system" {
            Roots::System
        } else {
            Roots::File(PathBuf::from(text))
        }
    }

    fn load(&self) -> Result<RootCertStore, TlsFailure> {
        let mut store = RootCertStore::empty();
        let file = match self {
            Roots::File(path) => Some(path.clone()),
            Roots::Default => std::env::var_os("HOME")
                .map(|home| Path::new(&home).join(".postgresql/root.crt"))
                .filter(|p| p.exists()),
            Roots::System => None,
        };
        if let Some(path) = file {
            let certs = CertificateDer::pem_file_iter(&path)
                .map_err(|e| TlsFailure::Roots(format!("cannot read {}: {e}", path.display())))?;
            for cert in certs {
                let cert =
                    cert.map_err(|e| TlsFailure::Roots(format!("cannot read {}: {e}", path.display())))?;
                store
                    .add(cert)
                    .map_err(|e| TlsFailure::Roots(format!("{}: {e}", path.display())))?;
            }
            if store.is_empty() {
                return Err(TlsFailure::Roots(format!(
                    "{} holds no certificate",
                    path.display()
                )));
            }
            return Ok(store);
        }
        let found = rustls_native_certs::load_native_certs();
        store.add_parsable_certificates(found.certs);
        if store.is_empty() {
            return Err(TlsFailure::Roots("the system has no trusted certificates".into()));
        }
        Ok(store)
    }

    /// Whether a root file was named explicitly (`require` then verifies).
    fn explicit(&self) -> bool {
        !matches!(self, Roots::Default)
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls connector for `mode` (used for every connection of the store
/// and for cancel requests; `disable` never uses it).
pub(super) fn connector(mode: SslMode, roots: &Roots, server: &str) -> Result<MakeRustlsConnect, StoreError> {
    let fail = |failure| StoreError::Tls {
        backend: BACKEND,
        server: server.to_owned(),
        failure,
    };
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(TlsFailure::Handshake(e.to_string())))?;
    let verify = match mode {
        SslMode::Disable | SslMode::Prefer => Verify::Nothing,
        SslMode::Require if !roots.explicit() => Verify::Nothing,
        SslMode::Require | SslMode::VerifyCa => Verify::Chain,
        SslMode::VerifyFull => Verify::Full,
    };
    let config = match verify {
        Verify::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth(),
        Verify::Chain | Verify::Full => {
            let roots = Arc::new(roots.load().map_err(fail)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| fail(TlsFailure::Roots(e.to_string())))?;
            if verify == Verify::Full {
                builder.with_webpki_verifier(webpki).with_no_client_auth()
            } else {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
                    .with_no_client_auth()
            }
        }
    };
    Ok(MakeRustlsConnect::new(config))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verify {
    Nothing,
    Chain,
    Full,
}

/// `prefer` and `require`: encrypted, but any certificate is accepted (the
/// handshake's signatures are still checked).
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted root; the name is not
/// checked. The webpki verifier checks the chain before the name, so a
/// name mismatch means the chain was good.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The TLS failure behind a connection error, if it is one.
pub(super) fn classify(error: &tokio_postgres::Error, host: &str) -> Option<TlsFailure> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = next {
        if e.to_string() == "server does not support TLS" {
            return Some(TlsFailure::NotOffered);
        }
        let rustls_error = e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(r) = rustls_error {
            return Some(match r {
                rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
                ) => TlsFailure::WrongHostName {
                    host: host.to_owned(),
                },
                rustls::Error::InvalidCertificate(
                    CertificateError::UnknownIssuer | CertificateError::BadSignature,
                ) => TlsFailure::UntrustedCertificate,
                other => TlsFailure::Handshake(other.to_string()),
            });
        }
        next = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_as_libpq_names_them() {
        for (text, mode) in [
            ("disable", SslMode::Disable),
            ("allow", SslMode::Prefer),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::VerifyCa),
            ("verify-full", SslMode::VerifyFull),
        ] {
            assert_eq!(text.parse::<SslMode>(), Ok(mode));
        }
        assert!("verify_full".parse::<SslMode>().is_err());
        assert_eq!(SslMode::VerifyFull.to_string(), "verify-full");
    }

    #[test]
    fn a_missing_root_file_is_a_typed_failure() {
        let e = connector(
            SslMode::VerifyFull,
            &Roots::File("/nonexistent/root.crt".into()),
            "db:5432",
        )
        .map(drop)
        .expect_err("no file");
        assert!(
            matches!(
                e,
                StoreError::Tls {
                    failure: TlsFailure::Roots(_),
                    ..
                }
            ),
            "{e:?}"
        );
    }
}
