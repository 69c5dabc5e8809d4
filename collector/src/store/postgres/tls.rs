//! TLS to PostgreSQL with libpq's `sslmode` semantics, over rustls.
//!
//! tokio-postgres only knows `disable`, `prefer` and `require`, and none of libpq's certificate
//! parameters, so [`Tls::from_url`] takes `sslmode`, `sslrootcert`, `sslcert` and `sslkey` off
//! the URL before it is parsed, and the checks `verify-ca` and `verify-full` ask for live in the
//! rustls configuration instead.
//!
//! As in libpq, `prefer` and `require` check the server's certificate against a CA when one is
//! given (libpq does so when its root certificate file exists), and accept any certificate when
//! none is.

use std::{
    error::Error as _,
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};

use postgres::{Client, error::SqlState};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject as _},
};
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode`: how much of TLS the collector insists on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// Plain connections only.
    Disable,
    /// TLS when the server offers it, else plain (libpq's default, and the collector's).
    Prefer,
    /// TLS or no connection; the server's certificate is checked only when a CA is given.
    Require,
    /// TLS, and the server's certificate chains to the CA; its names are not checked.
    VerifyCa,
    /// TLS, the certificate chains to the CA and names the host the URL connects to.
    VerifyFull,
}

impl SslMode {
    fn parse(text: &str) -> Result<Self, TlsError> {
        match text {
            "disable" => Ok(Self::Disable),
            "prefer" => Ok(Self::Prefer),
            "require" => Ok(Self::Require),
            "verify-ca" => Ok(Self::VerifyCa),
            "verify-full" => Ok(Self::VerifyFull),
            other => Err(TlsError::UnknownMode(other.to_owned())),
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Self::Disable => "sslmode=disable",
            Self::Prefer => "sslmode=prefer",
            Self::Require => "sslmode=require",
            Self::VerifyCa => "sslmode=verify-ca",
            Self::VerifyFull => "sslmode=verify-full",
        })
    }
}

/// A file as the operator named it, by a collector flag or a URL parameter, for errors.
#[derive(Clone, Debug)]
pub struct Setting {
    name: &'static str,
    /// Boxed to keep [`TlsError`], which holds up to two of these, small.
    path: Box<Path>,
}

impl fmt::Display for Setting {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let separator = if self.name.starts_with("--") {
            " "
        } else {
            "="
        };
        write!(formatter, "{}{separator}{}", self.name, self.path.display())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("sslmode={0:?} is not a mode: use disable, prefer, require, verify-ca or verify-full")]
    UnknownMode(String),
    #[error("{0}: its value is not properly percent-encoded")]
    BadEncoding(&'static str),
    #[error("{setting}: cannot read it: {source}")]
    Unreadable {
        setting: Setting,
        source: std::io::Error,
    },
    #[error("{setting}: not PEM: {source}")]
    NotPem {
        setting: Setting,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{0}: holds no PEM certificate")]
    NoCertificate(Setting),
    #[error("{setting}: not a CA certificate that can check the server's: {source}")]
    BadCa {
        setting: Setting,
        source: rustls::Error,
    },
    #[error(
        "{0} checks the server's certificate against a CA: give sslrootcert=FILE in the URL or \
         --store-ca FILE"
    )]
    NeedsCa(SslMode),
    #[error(
        "sslmode=disable makes plain connections, yet {0} gives a CA: ask for TLS with \
         sslmode=verify-full, or give no CA"
    )]
    CaWithoutTls(Setting),
    #[error("{flag} and {url} both name a CA: give one of them")]
    TwoCas { flag: Setting, url: Setting },
    #[error("sslcert and sslkey go together: give both or neither")]
    HalfClientCertificate,
    #[error("sslmode=disable makes plain connections, yet sslcert gives a client certificate")]
    ClientCertificateWithoutTls,
    #[error("{certificate} with {key}: not a usable client certificate and key: {source}")]
    ClientCertificate {
        certificate: Setting,
        key: Setting,
        /// Boxed: with two settings beside it, it would make every `TlsError` large.
        source: Box<rustls::Error>,
    },
    #[error("TLS settings: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("TLS settings: {0}")]
    Verifier(#[from] rustls::client::VerifierBuilderError),
}

/// What a URL and `--store-ca` ask for: the mode and the rustls connector it needs.
pub struct Tls {
    mode: SslMode,
    /// The CA the server's certificate is checked against, if any.
    ca: Option<Setting>,
    /// None under `disable`, which never starts a handshake.
    connector: Option<MakeRustlsConnect>,
}

/// The TLS parameters of a URL, as libpq names them.
#[derive(Default)]
struct UrlParameters {
    mode: Option<SslMode>,
    root_cert: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

impl Tls {
    /// The TLS that `url`'s parameters and `--store-ca` (`flag_ca`) ask for, and `url` without
    /// those parameters, for tokio-postgres, which would refuse them. Without `sslmode`,
    /// `prefer`, as libpq.
    pub fn from_url(url: &str, flag_ca: Option<&Path>) -> Result<(String, Self), TlsError> {
        let (url, parameters) = split(url)?;
        let mode = parameters.mode.unwrap_or(SslMode::Prefer);
        let flag_ca = flag_ca.map(|path| Setting {
            name: "--store-ca",
            path: path.into(),
        });
        let url_ca = parameters.root_cert.map(|path| Setting {
            name: "sslrootcert",
            path: path.into(),
        });
        let ca = match (flag_ca, url_ca) {
            (Some(flag), Some(url)) => return Err(TlsError::TwoCas { flag, url }),
            (flag, url) => flag.or(url),
        };
        let client = match (parameters.cert, parameters.key) {
            (Some(cert), Some(key)) => Some((
                Setting {
                    name: "sslcert",
                    path: cert.into(),
                },
                Setting {
                    name: "sslkey",
                    path: key.into(),
                },
            )),
            (None, None) => None,
            _ => return Err(TlsError::HalfClientCertificate),
        };
        if mode == SslMode::Disable {
            if let Some(ca) = ca {
                return Err(TlsError::CaWithoutTls(ca));
            }
            if client.is_some() {
                return Err(TlsError::ClientCertificateWithoutTls);
            }
            return Ok((
                url,
                Self {
                    mode,
                    ca: None,
                    connector: None,
                },
            ));
        }
        let config = client_config(mode, ca.as_ref(), client)?;
        Ok((
            url,
            Self {
                mode,
                ca,
                connector: Some(MakeRustlsConnect::new(config)),
            },
        ))
    }

    /// A new connection as `config` says, under this TLS.
    pub fn connect(&self, config: &postgres::Config) -> Result<Client, postgres::Error> {
        let mut config = config.clone();
        config.ssl_mode(match self.mode {
            SslMode::Disable => postgres::config::SslMode::Disable,
            SslMode::Prefer => postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                postgres::config::SslMode::Require
            }
        });
        match &self.connector {
            Some(connector) => config.connect(connector.clone()),
            None => config.connect(postgres::NoTls),
        }
    }

    /// Why this TLS leaves the connection open to a man in the middle, if it does.
    pub fn weakness(&self) -> Option<String> {
        match (self.mode, &self.ca) {
            (SslMode::Disable, _) => Some(format!(
                "{}: calls and findings go to the database in clear",
                self.mode
            )),
            (SslMode::Prefer, _) => Some(format!(
                "{} (the default without sslmode): anyone between the collector and the \
                 database can make it connect in clear; use sslmode=verify-full",
                self.mode
            )),
            (SslMode::Require, None) => Some(format!(
                "{} without a CA: the server's certificate is not checked, so anyone between \
                 the collector and the database can pose as it; give --store-ca FILE and use \
                 sslmode=verify-full",
                self.mode
            )),
            _ => None,
        }
    }

    /// What to check when connecting failed with `error`.
    pub fn advice(&self, error: &postgres::Error) -> String {
        let mode = self.mode;
        if let Some(rustls::Error::InvalidCertificate(problem)) = rustls_error(error) {
            let ca = self
                .ca
                .as_ref()
                .map_or_else(|| "the CA".to_owned(), ToString::to_string);
            return match problem {
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => {
                    format!(
                        "{mode}: the server's certificate does not name the host the URL \
                         connects to; connect by a name the certificate holds (hostaddr=IP \
                         may give the address), or use sslmode=verify-ca to check the CA only"
                    )
                }
                CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
                    "{mode}: the server's certificate is not signed by {ca}; give the CA that \
                     signed the server's certificate"
                ),
                _ => format!("{mode}: the server's certificate was refused"),
            };
        }
        if error
            .source()
            .is_some_and(|source| source.to_string() == "server does not support TLS")
        {
            return format!(
                "{mode}: the server does not offer TLS; turn on `ssl` in its postgresql.conf, \
                 with a certificate"
            );
        }
        let refused = error
            .as_db_error()
            .filter(|refusal| refusal.code() == &SqlState::INVALID_AUTHORIZATION_SPECIFICATION);
        if refused.is_some_and(|refusal| refusal.message().contains("client certificate")) {
            return format!(
                "{mode}: the server asks for a client certificate from its CA naming the user: \
                 give sslcert=FILE&sslkey=FILE"
            );
        }
        if mode == SslMode::Disable && refused.is_some() {
            return format!(
                "{mode}: the server may accept only TLS connections (hostssl lines in \
                 pg_hba.conf); use sslmode=verify-full with sslrootcert=FILE or --store-ca FILE"
            );
        }
        "check that PostgreSQL runs and listens there, that pg_hba.conf lets this user in from \
         here, that the password is right and that the database exists"
            .to_owned()
    }
}

/// `url` without its TLS parameters, and those parameters.
fn split(url: &str) -> Result<(String, UrlParameters), TlsError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), UrlParameters::default()));
    };
    let mut parameters = UrlParameters::default();
    let mut kept = Vec::new();
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let path = |name| percent_decoded(name, value).map(PathBuf::from);
        match name {
            "sslmode" => {
                parameters.mode = Some(SslMode::parse(&percent_decoded("sslmode", value)?)?);
            }
            "sslrootcert" => parameters.root_cert = Some(path("sslrootcert")?),
            "sslcert" => parameters.cert = Some(path("sslcert")?),
            "sslkey" => parameters.key = Some(path("sslkey")?),
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, parameters))
}

/// `value` with its `%XX` escapes decoded, as tokio-postgres decodes the parameters it knows.
fn percent_decoded(name: &'static str, value: &str) -> Result<String, TlsError> {
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        if byte == b'%' {
            let escaped = bytes
                .get(at + 1..at + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or(TlsError::BadEncoding(name))?;
            decoded.push(escaped);
            at += 3;
        } else {
            decoded.push(byte);
            at += 1;
        }
    }
    String::from_utf8(decoded).map_err(|_| TlsError::BadEncoding(name))
}

fn client_config(
    mode: SslMode,
    ca: Option<&Setting>,
    client: Option<(Setting, Setting)>,
) -> Result<ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match ca {
        Some(ca) => {
            let roots = Arc::new(read_roots(ca)?);
            let webpki =
                WebPkiServerVerifier::builder_with_provider(roots, provider.clone()).build()?;
            if mode == SslMode::VerifyFull {
                webpki
            } else {
                Arc::new(ChainOnly(webpki))
            }
        }
        None if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) => {
            return Err(TlsError::NeedsCa(mode));
        }
        None => Arc::new(AnyCertificate(provider.clone())),
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match client {
        Some((certificate, key)) => {
            let chain = read_certificates(&certificate)?;
            let private_key =
                PrivateKeyDer::from_pem_slice(&read(&key)?).map_err(|source| TlsError::NotPem {
                    setting: key.clone(),
                    source,
                })?;
            builder
                .with_client_auth_cert(chain, private_key)
                .map_err(|source| TlsError::ClientCertificate {
                    certificate,
                    key,
                    source: Box::new(source),
                })?
        }
        None => builder.with_no_client_auth(),
    };
    // What libpq 17 sends; servers before 17 ignore it, and 17's direct TLS needs it.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(config)
}

fn read(setting: &Setting) -> Result<Vec<u8>, TlsError> {
    std::fs::read(&setting.path).map_err(|source| TlsError::Unreadable {
        setting: setting.clone(),
        source,
    })
}

/// The PEM certificates in the file `setting` names: at least one.
fn read_certificates(setting: &Setting) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_slice_iter(&read(setting)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::NotPem {
            setting: setting.clone(),
            source,
        })?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate(setting.clone()));
    }
    Ok(certificates)
}

fn read_roots(setting: &Setting) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(setting)? {
        roots.add(certificate).map_err(|source| TlsError::BadCa {
            setting: setting.clone(),
            source,
        })?;
    }
    Ok(roots)
}

/// The rustls error under a failed connection's, if TLS is what failed. tokio-rustls wraps it
/// in an `io::Error`, whose `source` skips it, hence `get_ref`.
fn rustls_error(error: &postgres::Error) -> Option<&rustls::Error> {
    let mut next = error.source();
    while let Some(current) = next {
        if let Some(found) = current.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        let wrapped = current
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        if wrapped.is_some() {
            return wrapped;
        }
        next = current.source();
    }
    None
}

/// `verify-ca`, and `prefer` or `require` with a CA: the chain must lead to the CA, whatever
/// names the certificate holds. WebPKI checks the chain before the name, so a name mismatch
/// means the chain was good.
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
            outcome => outcome,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .verify_tls12_signature(message, certificate, signature)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .verify_tls13_signature(message, certificate, signature)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` and `require` without a CA: any certificate is taken (libpq's behaviour), but the
/// handshake's signatures are still checked, so the traffic is encrypted to whoever holds the
/// certificate's key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
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
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use testbed::postgres::{ClientAuthentication, Server};

    use super::*;
    use crate::store::StoreError;

    /// Opens the store at `url` (with `--store-ca` `ca`): the error's text, or None when it
    /// connected.
    fn open_error(url: &str, ca: Option<&Path>) -> Option<String> {
        super::super::Postgres::open(url, ca)
            .err()
            .map(|error| error.to_string())
    }

    fn refusal(url: &str, ca: Option<&Path>) -> String {
        open_error(url, ca).unwrap_or_else(|| panic!("{url} connected"))
    }

    #[test]
    fn the_url_loses_its_tls_parameters_and_keeps_the_rest() {
        let (url, parameters) = split(
            "postgres://moat@db/moat?sslmode=verify-full&connect_timeout=5\
             &sslrootcert=%2Fetc%2Fmoat%2Fdb%20ca.pem&sslcert=c.pem&sslkey=k.pem",
        )
        .expect("split");
        assert_eq!(url, "postgres://moat@db/moat?connect_timeout=5");
        assert_eq!(parameters.mode, Some(SslMode::VerifyFull));
        assert_eq!(
            parameters.root_cert,
            Some(PathBuf::from("/etc/moat/db ca.pem"))
        );
        assert_eq!(parameters.cert, Some(PathBuf::from("c.pem")));
        assert_eq!(parameters.key, Some(PathBuf::from("k.pem")));
        let (url, _) = split("postgres://moat@db/moat?sslmode=disable").expect("split");
        assert_eq!(url, "postgres://moat@db/moat");
    }

    #[test]
    fn contradictory_or_broken_settings_are_refused_before_connecting() {
        let refused = |url: &str, ca: Option<&Path>| match Tls::from_url(url, ca) {
            Ok(_) => panic!("{url} accepted"),
            Err(error) => error.to_string(),
        };
        let base = "postgres://moat@db/moat";
        let verify_full = refused(&format!("{base}?sslmode=verify-full"), None);
        assert!(
            verify_full.starts_with("sslmode=verify-full checks")
                && verify_full.contains("--store-ca FILE"),
            "{verify_full}"
        );
        assert!(refused(&format!("{base}?sslmode=verify"), None).starts_with("sslmode=\"verify\""));
        assert_eq!(
            refused(
                &format!("{base}?sslmode=verify-ca&sslrootcert=a.pem"),
                Some(Path::new("b.pem"))
            ),
            "--store-ca b.pem and sslrootcert=a.pem both name a CA: give one of them"
        );
        assert!(
            refused(
                &format!("{base}?sslmode=disable"),
                Some(Path::new("ca.pem"))
            )
            .contains("yet --store-ca ca.pem gives a CA")
        );
        assert!(refused(&format!("{base}?sslcert=c.pem"), None).starts_with("sslcert and sslkey"));
        assert!(refused(&format!("{base}?sslrootcert=%zz"), None).starts_with("sslrootcert:"));

        let missing = std::env::temp_dir().join("moat-no-such-ca.pem");
        let unreadable = refused(
            &format!(
                "{base}?sslmode=verify-full&sslrootcert={}",
                missing.display()
            ),
            None,
        );
        assert!(
            unreadable.starts_with(&format!(
                "sslrootcert={}: cannot read it",
                missing.display()
            )),
            "{unreadable}"
        );
        let garbage =
            std::env::temp_dir().join(format!("moat-garbage-ca-{}.pem", std::process::id()));
        std::fs::write(&garbage, "not a certificate\n").expect("write");
        let not_pem = refused(&format!("{base}?sslmode=verify-full"), Some(&garbage));
        let _ = std::fs::remove_file(&garbage);
        assert_eq!(
            not_pem,
            format!("--store-ca {}: holds no PEM certificate", garbage.display())
        );
    }

    #[test]
    fn verify_full_checks_the_ca_and_the_host_name() {
        let server = Server::start_tls(ClientAuthentication::Trust).expect("start PostgreSQL");
        let ca = server.ca_file().expect("a CA");
        let url = server.url();
        assert_eq!(
            open_error(&format!("{url}?sslmode=verify-full"), Some(ca)),
            None
        );
        let in_url = format!("{url}?sslmode=verify-full&sslrootcert={}", ca.display());
        assert_eq!(open_error(&in_url, None), None);

        // The certificate names 127.0.0.1 and localhost, not db.example.
        let elsewhere = url.replace("127.0.0.1", "db.example") + "&hostaddr=127.0.0.1";
        let elsewhere = elsewhere.replacen('&', "?", 1);
        let mismatch = refusal(&format!("{elsewhere}&sslmode=verify-full"), Some(ca));
        assert!(
            mismatch
                .contains("sslmode=verify-full: the server's certificate does not name the host"),
            "{mismatch}"
        );
        assert_eq!(
            open_error(&format!("{elsewhere}&sslmode=verify-ca"), Some(ca)),
            None,
            "verify-ca checks the CA only"
        );

        let other = Server::start_tls(ClientAuthentication::Trust).expect("start PostgreSQL");
        let wrong_ca = other.ca_file().expect("a CA");
        let stranger = refusal(&format!("{url}?sslmode=verify-full"), Some(wrong_ca));
        assert!(
            stranger.contains(&format!(
                "the server's certificate is not signed by --store-ca {}",
                wrong_ca.display()
            )),
            "{stranger}"
        );
        assert!(
            open_error(&format!("{url}?sslmode=verify-ca"), Some(wrong_ca)).is_some(),
            "verify-ca checks the CA"
        );

        assert_eq!(
            open_error(&format!("{url}?sslmode=require"), None),
            None,
            "require takes any certificate"
        );
        assert_eq!(
            open_error(&url, None),
            None,
            "prefer takes TLS when offered"
        );
        let plain = refusal(&format!("{url}?sslmode=disable"), None);
        assert!(
            plain.contains("sslmode=disable: the server may accept only TLS connections"),
            "{plain}"
        );
    }

    #[test]
    fn require_refuses_a_server_without_tls() {
        let server = Server::start().expect("start PostgreSQL");
        let error =
            super::super::Postgres::open(&format!("{}?sslmode=require", server.url()), None)
                .err()
                .expect("no TLS on offer");
        assert!(matches!(error, StoreError::Connect { .. }), "{error}");
        let error = error.to_string();
        assert!(
            error.contains("sslmode=require: the server does not offer TLS"),
            "{error}"
        );
        assert_eq!(
            open_error(&server.url(), None),
            None,
            "prefer falls back to plain"
        );
    }

    #[test]
    fn a_client_certificate_from_the_servers_ca_logs_in() {
        let server =
            Server::start_tls(ClientAuthentication::Certificate).expect("start PostgreSQL");
        let ca = server.ca_file().expect("a CA");
        let (certificate, key) = server
            .issue_client_certificate("moat", "moat-client")
            .expect("client certificate");
        let url = format!("{}?sslmode=verify-full", server.url());
        assert_eq!(
            open_error(
                &format!(
                    "{url}&sslcert={}&sslkey={}",
                    certificate.display(),
                    key.display()
                ),
                Some(ca)
            ),
            None
        );
        let without = refusal(&url, Some(ca));
        assert!(
            without.contains("the server asks for a client certificate"),
            "{without}"
        );
        let (_, other_key) = server
            .issue_client_certificate("moat", "other-client")
            .expect("client certificate");
        let mismatch = refusal(
            &format!(
                "{url}&sslcert={}&sslkey={}",
                certificate.display(),
                other_key.display()
            ),
            Some(ca),
        );
        assert!(
            mismatch.contains("not a usable client certificate and key"),
            "{mismatch}"
        );
    }
}
