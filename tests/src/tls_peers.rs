//! Helpers of the TLS plaintext tests (tests/tls_uprobes.rs): a test CA and a server
//! certificate made with the openssl command line, nginx serving TLS (and the same answers in
//! clear) in a pod, and TLS clients built on OpenSSL (curl, python's `ssl`) or not (rust-peer's
//! rustls client).

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::Command,
};

use testbed::{Background, Pod};

use crate::capture::{PYTHON, wait_listening};

fn openssl(args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA and a server certificate it signed for an IP address, in PEM files.
pub struct TestCa {
    pub ca_certificate: PathBuf,
    pub server_certificate: PathBuf,
    pub server_key: PathBuf,
}

impl TestCa {
    /// Makes the CA and a certificate for `server` (also valid for the name `server.test`) in
    /// `directory`.
    pub fn new(directory: &Path, server: IpAddr) -> Self {
        let file = |name: &str| directory.join(name).display().to_string();
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=Moat test CA",
            "-keyout",
            &file("ca.key"),
            "-out",
            &file("ca.pem"),
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=server.test",
            "-keyout",
            &file("server.key"),
            "-out",
            &file("server.csr"),
        ]);
        std::fs::write(
            directory.join("server.ext"),
            format!("subjectAltName=IP:{server},DNS:server.test\n"),
        )
        .expect("write the certificate extensions");
        openssl(&[
            "x509",
            "-req",
            "-days",
            "1",
            "-in",
            &file("server.csr"),
            "-CA",
            &file("ca.pem"),
            "-CAkey",
            &file("ca.key"),
            "-CAcreateserial",
            "-extfile",
            &file("server.ext"),
            "-out",
            &file("server.pem"),
        ]);
        Self {
            ca_certificate: directory.join("ca.pem"),
            server_certificate: directory.join("server.pem"),
            server_key: directory.join("server.key"),
        }
    }
}

/// Starts nginx in `pod` as one process (no master, so dropping the handle ends it), serving
/// TLS 1.2 and 1.3 on `tls` and, when given, the same in clear on `clear`: every request gets
/// 200 with `METHOD URI` as its body. `wrap` runs nginx through another command (`unshare`).
pub fn start_nginx(
    pod: &Pod,
    directory: &Path,
    ca: &TestCa,
    tls: SocketAddr,
    clear: Option<SocketAddr>,
    wrap: &[&str],
) -> Background {
    let dir = directory.display();
    let clear_listen = clear.map_or(String::new(), |clear| format!("listen {clear};"));
    let config = format!(
        "daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  default_type text/plain;
  server {{
    listen {tls} ssl;
    {clear_listen}
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {{ return 200 \"$request_method $uri\\n\"; }}
  }}
}}
",
        cert = ca.server_certificate.display(),
        key = ca.server_key.display(),
    );
    let path = directory.join("nginx.conf");
    std::fs::write(&path, config).expect("write nginx.conf");
    let path = path.display().to_string();
    let mut args: Vec<&str> = wrap.to_vec();
    args.extend(["nginx", "-c", &path]);
    let server = pod
        .spawn(args[0], &args[1..])
        .expect("start nginx in the pod");
    wait_listening(pod, tls);
    if let Some(clear) = clear {
        wait_listening(pod, clear);
    }
    server
}

/// curl from `pod`: the response body, failing the test on any error. `version` (`1.2` or
/// `1.3`) pins the TLS version of an https URL.
pub fn curl(pod: &Pod, ca: &TestCa, url: &str, version: &str, extra: &[&str]) -> String {
    let ca_file = ca.ca_certificate.display().to_string();
    let tls_version = format!("--tlsv{version}");
    let mut args = vec![
        "-sS",
        "--fail",
        "--max-time",
        "5",
        "--cacert",
        &ca_file,
        &tls_version,
        "--tls-max",
        version,
    ];
    args.extend(extra);
    args.push(url);
    let output = pod
        .run("curl", &args)
        .unwrap_or_else(|error| panic!("curl {url}: {error}"));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A GET with python's `urllib` over `ssl` (OpenSSL) from `pod`, TLS pinned to `version`:
/// the response body.
pub fn python_get(pod: &Pod, ca: &TestCa, url: &str, version: &str) -> String {
    const SCRIPT: &str = "
import ssl, sys, urllib.request
ca, url, version = sys.argv[1:4]
pinned = {'1.2': ssl.TLSVersion.TLSv1_2, '1.3': ssl.TLSVersion.TLSv1_3}[version]
context = ssl.create_default_context(cafile=ca)
context.minimum_version = pinned
context.maximum_version = pinned
with urllib.request.urlopen(url, context=context, timeout=5) as response:
    sys.stdout.write(response.read().decode())
";
    let ca_file = ca.ca_certificate.display().to_string();
    let output = pod
        .run(PYTHON, &["-c", SCRIPT, &ca_file, url, version])
        .unwrap_or_else(|error| panic!("python GET {url}: {error}"));
    String::from_utf8_lossy(&output.stdout).into_owned()
}
