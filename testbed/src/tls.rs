//! A certificate authority made for one run with the openssl command line, and the
//! certificates it signs: TLS peers for tests, benchmarks and the demo, with no key ever kept
//! in the repository.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use thiserror::Error;

use crate::command::{CommandError, run};

#[derive(Debug, Error)]
pub enum CertificateError {
    #[error(transparent)]
    Openssl(#[from] CommandError),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct Issued {
    pub certificate: PathBuf,
    pub key: PathBuf,
}

impl Issued {
    pub fn certificate(&self) -> &str {
        self.certificate.to_str().expect("a UTF-8 path")
    }

    pub fn key(&self) -> &str {
        self.key.to_str().expect("a UTF-8 path")
    }
}

/// A certificate authority (P-256, valid a year) whose files live in one directory.
pub struct TestCa {
    dir: PathBuf,
    pub root: Issued,
}

/// The key of a new certificate: P-256, unencrypted.
const NEW_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
];

fn openssl(args: &[&str]) -> Result<(), CommandError> {
    run(Command::new("openssl").args(args)).map(drop)
}

impl TestCa {
    /// Makes the CA, named `common_name`, as `ca.crt` and `ca.key` in `dir`.
    pub fn new(dir: &Path, common_name: &str) -> Result<Self, CertificateError> {
        let root = Issued {
            certificate: dir.join("ca.crt"),
            key: dir.join("ca.key"),
        };
        openssl(
            &[
                &["req", "-x509"][..],
                &NEW_KEY,
                &["-keyout", root.key(), "-out", root.certificate()],
                &[
                    "-days",
                    "365",
                    "-subj",
                    &format!("/O=Moat Test/CN={common_name}"),
                ],
            ]
            .concat(),
        )?;
        Ok(Self {
            dir: dir.to_owned(),
            root,
        })
    }

    /// A certificate for `common_name`, valid `days` from now, with `subject_alt_names`
    /// (`DNS:api.test`, `IP:198.18.2.10`) when any, as `<name>.crt` and `<name>.key`.
    pub fn issue(
        &self,
        name: &str,
        common_name: &str,
        subject_alt_names: &[&str],
        days: u32,
    ) -> Result<Issued, CertificateError> {
        let issued = Issued {
            certificate: self.dir.join(format!("{name}.crt")),
            key: self.dir.join(format!("{name}.key")),
        };
        let request = self.dir.join(format!("{name}.csr"));
        let request = request.to_str().expect("a UTF-8 path");
        openssl(
            &[
                &["req"][..],
                &NEW_KEY,
                &["-keyout", issued.key(), "-out", request],
                &["-subj", &format!("/O=Moat Test/CN={common_name}")],
            ]
            .concat(),
        )?;
        let extensions = self.dir.join(format!("{name}.ext"));
        let names = if subject_alt_names.is_empty() {
            String::new()
        } else {
            format!("subjectAltName={}\n", subject_alt_names.join(","))
        };
        std::fs::write(&extensions, names).map_err(|source| CertificateError::Write {
            path: extensions.clone(),
            source,
        })?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            request,
            "-CA",
            self.root.certificate(),
            "-CAkey",
            self.root.key(),
            "-CAcreateserial",
            "-out",
            issued.certificate(),
            "-days",
            &days.to_string(),
            "-extfile",
            extensions.to_str().expect("a UTF-8 path"),
        ])?;
        Ok(issued)
    }
}
