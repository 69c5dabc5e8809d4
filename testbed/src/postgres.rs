//! A throwaway PostgreSQL server for tests and benchmarks: a cluster of its own (`initdb`) in a
//! temporary directory, listening on a free loopback port (and a unix socket in that
//! directory), with a superuser `moat` that needs no password.
//!
//! [`Server::start_tls`] starts one that takes TCP connections over TLS only (`hostssl` lines in
//! pg_hba.conf), with a certificate for 127.0.0.1 and localhost from a throwaway CA
//! ([`Server::ca_file`]); it may also ask clients for a certificate from that CA
//! ([`Server::issue_client_certificate`]).
//!
//! PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user the
//! `postgresql` package creates. Dropping the [`Server`] (also while unwinding from a panic)
//! stops it and removes the directory; a test process killed outright takes the server with it
//! (its parent-death signal), and the next server started removes the directory left behind.

use std::{
    fs::File,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use thiserror::Error;

use crate::{Background, CommandError, TestbedError, run, spawn};

/// Where Debian's `postgresql` package puts each version's server binaries.
const VERSIONS: &str = "/usr/lib/postgresql";
/// The start of each server's directory name, before the test process's pid.
const PREFIX: &str = "moat-postgres-";
/// How long a new server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a fast shutdown may take before the server is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum PostgresError {
    #[error(
        "no PostgreSQL server binaries in {VERSIONS}/*/bin: install the `postgresql` package \
         (`cargo xtask setup` does)"
    )]
    NotInstalled,
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Testbed(#[from] TestbedError),
    #[error("the server was started without TLS: it has no CA to issue certificates")]
    WithoutTls,
    #[error("making the server's certificates: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error(
        "PostgreSQL in {directory} did not accept connections on port {port} within {START_TIMEOUT:?}; its log:\n{log}"
    )]
    NotReady {
        directory: PathBuf,
        port: u16,
        log: String,
    },
}

/// How safely the server keeps what it is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// No fsync: for tests, which throw the data away.
    None,
    /// PostgreSQL's defaults (fsync at each commit): what production pays, for benchmarks.
    Full,
}

/// How a server started with TLS tells who connects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuthentication {
    /// Anyone who connects over TLS is let in as the user they name.
    Trust,
    /// Clients must present a certificate from the server's CA naming the user (`cert` in
    /// pg_hba.conf).
    Certificate,
}

/// A running server, stopped and removed on drop.
pub struct Server {
    process: Option<Background>,
    directory: PathBuf,
    port: u16,
    /// The CA of a server started with TLS.
    authority: Option<Authority>,
}

/// A throwaway CA, and where its certificate is.
struct Authority {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    file: PathBuf,
}

static NEXT_SERVER: AtomicU32 = AtomicU32::new(0);

impl Server {
    /// A new server for tests (no fsync).
    pub fn start() -> Result<Self, PostgresError> {
        Self::start_with(Durability::None)
    }

    pub fn start_with(durability: Durability) -> Result<Self, PostgresError> {
        Self::launch(durability, None)
    }

    /// A new server for tests (no fsync) that takes TCP connections over TLS only, with a
    /// certificate for 127.0.0.1 and localhost signed by the CA in [`Server::ca_file`].
    pub fn start_tls(clients: ClientAuthentication) -> Result<Self, PostgresError> {
        Self::launch(Durability::None, Some(clients))
    }

    fn launch(
        durability: Durability,
        tls: Option<ClientAuthentication>,
    ) -> Result<Self, PostgresError> {
        let binaries = binaries()?;
        remove_abandoned();
        let directory = std::env::temp_dir().join(format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            NEXT_SERVER.fetch_add(1, Ordering::Relaxed)
        ));
        let io = |what, path: &Path| {
            let path = path.to_owned();
            move |source| PostgresError::Io { what, path, source }
        };
        let _ = std::fs::remove_dir_all(&directory);
        std::fs::create_dir(&directory).map_err(io("creating", &directory))?;
        // From here on, dropping `server` removes the directory whatever fails next.
        let mut server = Self {
            process: None,
            directory,
            port: free_port().map_err(io("finding a free port for", Path::new("127.0.0.1")))?,
            authority: None,
        };
        let directory = server.directory.clone();
        let root = is_root();
        // The server's own files must belong to the user it runs as.
        let give = |path: &Path| -> Result<(), PostgresError> {
            if root {
                std::os::unix::fs::chown(path, Some(postgres_id("-u")?), Some(postgres_id("-g")?))
                    .map_err(io("giving the postgres user", path))?;
            }
            Ok(())
        };
        give(&directory)?;
        let data = directory.join("data");
        run(as_server_user(root, &binaries.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "moat", "-A", "trust", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync")
            .current_dir(&directory))?;

        let log_path = directory.join("postgres.log");
        let log = File::create(&log_path).map_err(io("creating", &log_path))?;
        let log_copy = log.try_clone().map_err(io("opening", &log_path))?;
        let mut command = as_server_user(root, &binaries.join("postgres"));
        command
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&directory)
            .args(["-p", &server.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .current_dir(&directory)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_copy);
        if durability == Durability::None {
            command.args(["-c", "fsync=off", "-c", "synchronous_commit=off"]);
        }
        if let Some(clients) = tls {
            let authority = Authority::new(&directory)?;
            let (certificate, key) = authority.issue(
                vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
                "localhost",
                &directory.join("server"),
            )?;
            give(&key)?;
            let method = match clients {
                ClientAuthentication::Trust => "trust",
                ClientAuthentication::Certificate => "cert",
            };
            // Plain TCP connections match no line and are refused; the socket stays open to
            // the test's own tools.
            let hba = data.join("pg_hba.conf");
            std::fs::write(
                &hba,
                format!("local all all trust\nhostssl all all 127.0.0.1/32 {method}\n"),
            )
            .map_err(io("writing", &hba))?;
            command
                .args(["-c", "ssl=on"])
                .arg("-c")
                .arg(format!("ssl_cert_file={}", certificate.display()))
                .arg("-c")
                .arg(format!("ssl_key_file={}", key.display()))
                .arg("-c")
                .arg(format!("ssl_ca_file={}", authority.file.display()));
            server.authority = Some(authority);
        }
        server.process = Some(spawn(&mut command)?);

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let ready = Command::new(binaries.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-U", "moat", "-d", "postgres"])
                .args(["-p", &server.port.to_string()])
                .status()
                .is_ok_and(|status| status.success());
            if ready {
                return Ok(server);
            }
            let exited = server
                .process
                .as_mut()
                .is_some_and(|process| !matches!(process.child_mut().try_wait(), Ok(None)));
            if exited || Instant::now() > deadline {
                return Err(PostgresError::NotReady {
                    directory: server.directory.clone(),
                    port: server.port,
                    log: std::fs::read_to_string(&log_path).unwrap_or_default(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The URL of the server's `postgres` database, as user `moat`.
    pub fn url(&self) -> String {
        format!("postgres://moat@127.0.0.1:{}/postgres", self.port)
    }

    /// The CA (PEM) that signed the certificate of a server started with TLS.
    pub fn ca_file(&self) -> Option<&Path> {
        self.authority
            .as_ref()
            .map(|authority| authority.file.as_path())
    }

    /// A client certificate for `user` from the CA of a server started with TLS, and its key
    /// (PEM files in the server's directory, named after `label`).
    pub fn issue_client_certificate(
        &self,
        user: &str,
        label: &str,
    ) -> Result<(PathBuf, PathBuf), PostgresError> {
        let authority = self.authority.as_ref().ok_or(PostgresError::WithoutTls)?;
        authority.issue(Vec::new(), user, &self.directory.join(label))
    }
}

impl Authority {
    /// A new CA, its certificate written to `directory`/ca.crt.
    fn new(directory: &Path) -> Result<Self, PostgresError> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "moat testbed PostgreSQL CA");
        let certificate = params.self_signed(&key)?;
        let file = directory.join("ca.crt");
        write_file(&file, &certificate.pem())?;
        Ok(Self { params, key, file })
    }

    /// A certificate for `names` (DNS names or addresses) with common name `common_name`,
    /// written with its key to `stem`.crt and `stem`.key.
    fn issue(
        &self,
        names: Vec<String>,
        common_name: &str,
        stem: &Path,
    ) -> Result<(PathBuf, PathBuf), PostgresError> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let certificate = params.signed_by(&key, &issuer)?;
        let certificate_file = stem.with_extension("crt");
        let key_file = stem.with_extension("key");
        write_file(&certificate_file, &certificate.pem())?;
        write_file(&key_file, &key.serialize_pem())?;
        // PostgreSQL and libpq refuse a key others may read.
        std::fs::set_permissions(
            &key_file,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .map_err(|source| PostgresError::Io {
            what: "restricting",
            path: key_file.clone(),
            source,
        })?;
        Ok((certificate_file, key_file))
    }
}

fn write_file(path: &Path, text: &str) -> Result<(), PostgresError> {
    std::fs::write(path, text).map_err(|source| PostgresError::Io {
        what: "writing",
        path: path.to_owned(),
        source,
    })
}

/// The `postgres` user's id (`-u`) or group (`-g`).
fn postgres_id(flag: &str) -> Result<u32, PostgresError> {
    let output = run(Command::new("id").args([flag, "postgres"]))?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or(0))
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            // A fast shutdown ends the server's backends too; Background's drop kills what
            // is still running after it.
            process.signal_and_wait(libc::SIGINT, STOP_TIMEOUT);
        }
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

/// Removes the directories of servers whose test process was killed outright.
fn remove_abandoned() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|name| name.strip_prefix(PREFIX))
            .and_then(|rest| rest.split_once('-'))
            .map(|(pid, _)| pid);
        if let Some(pid) = pid
            && !Path::new("/proc").join(pid).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The bin directory of the newest PostgreSQL installed.
fn binaries() -> Result<PathBuf, PostgresError> {
    let versions = std::fs::read_dir(VERSIONS).map_err(|_| PostgresError::NotInstalled)?;
    versions
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("postgres").exists() && bin.join("initdb").exists()).then_some((version, bin))
        })
        .max()
        .map(|(_, bin)| bin)
        .ok_or(PostgresError::NotInstalled)
}

/// `program` run as the `postgres` user when we are root, and killed when the thread that
/// started it ends (setpriv's parent-death signal).
fn as_server_user(root: bool, program: &Path) -> Command {
    let mut command = Command::new("setpriv");
    if root {
        command.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--reset-env",
        ]);
    }
    command.args(["--pdeathsig=KILL", "--"]).arg(program);
    command
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A loopback port nobody listens on now. Another process could take it before the server
/// does; tests would then fail with the server's log saying so, not hang.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
