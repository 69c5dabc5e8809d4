//! Helpers of the TLS tests: a test CA and the certificates it signs (made with the openssl
//! command line), nginx serving TLS from a pod, and TLS clients built on OpenSSL (curl,
//! python's `ssl`).

use std::{net::SocketAddr, path::Path};

pub use testbed::tls::{Issued, TestCa};
use testbed::{Background, Pod};

use crate::capture::{PYTHON, wait_listening};

/// The test CA of the TLS tests, made in `dir`.
pub fn test_ca(dir: &Path) -> TestCa {
    TestCa::new(dir, "Moat Test CA").expect("make the test CA")
}

/// One nginx `server` block answering 200 with `METHOD URI` as its body to every request.
pub struct NginxServer<'a> {
    pub port: u16,
    /// None: plain HTTP.
    pub certificate: Option<&'a Issued>,
    /// `TLSv1.2 TLSv1.3`, say.
    pub protocols: &'a str,
    /// Require a client certificate signed by this CA (`ssl_verify_client on`).
    pub client_ca: Option<&'a Path>,
}

/// nginx in the foreground, one process, in `pod`, with its files in `dir`; waits until every
/// server listens.
pub fn start_nginx(pod: &Pod, dir: &Path, servers: &[NginxServer<'_>]) -> Background {
    start_nginx_wrapped(pod, dir, servers, &[])
}

/// [`start_nginx`] through another command (`wrap`, say `unshare --mount ... sh -c`), which
/// must exec nginx so that the handle is nginx's own process.
pub fn start_nginx_wrapped(
    pod: &Pod,
    dir: &Path,
    servers: &[NginxServer<'_>],
    wrap: &[&str],
) -> Background {
    let mut blocks = String::new();
    for server in servers {
        let listen = SocketAddr::new(pod.ipv4.into(), server.port);
        let mut block = match server.certificate {
            Some(issued) => format!(
                "  server {{\n    listen {listen} ssl;\n    ssl_certificate {};\n    ssl_certificate_key {};\n    ssl_protocols {};\n",
                issued.certificate(),
                issued.key(),
                server.protocols
            ),
            None => format!("  server {{\n    listen {listen};\n"),
        };
        if let Some(ca) = server.client_ca {
            block.push_str(&format!(
                "    ssl_client_certificate {};\n    ssl_verify_client on;\n",
                ca.display()
            ));
        }
        block.push_str("    location / { return 200 \"$request_method $uri\\n\"; }\n  }\n");
        blocks.push_str(&block);
    }
    let dir_text = dir.display();
    let config = format!(
        "daemon off;\nmaster_process off;\nuser root;\npid {dir_text}/nginx.pid;\nerror_log {dir_text}/nginx-error.log;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {dir_text}/body;\n  proxy_temp_path {dir_text}/proxy;\n  \
         fastcgi_temp_path {dir_text}/fastcgi;\n  uwsgi_temp_path {dir_text}/uwsgi;\n  scgi_temp_path {dir_text}/scgi;\n{blocks}}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, config).expect("write nginx.conf");
    let prefix = dir.display().to_string();
    let mut command: Vec<&str> = wrap.to_vec();
    command.extend([
        "nginx",
        "-p",
        &prefix,
        "-c",
        path.to_str().expect("a UTF-8 path"),
    ]);
    let process = pod
        .spawn(command[0], &command[1..])
        .expect("start nginx in the pod");
    for server in servers {
        wait_listening(pod, SocketAddr::new(pod.ipv4.into(), server.port));
    }
    process
}

/// curl from `pod`, trusting `ca`: the response body, failing the test on any error. `version`
/// (`1.2` or `1.3`) pins the TLS version of an https URL.
pub fn curl(pod: &Pod, ca: &TestCa, url: &str, version: &str, extra: &[&str]) -> String {
    let tls_version = format!("--tlsv{version}");
    let mut args = vec![
        "-sS",
        "--fail",
        "--max-time",
        "5",
        "--cacert",
        ca.root.certificate(),
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

/// A GET with python's `urllib` over `ssl` (OpenSSL) from `pod`, trusting `ca`, TLS pinned to
/// `version`: the response body.
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
    let output = pod
        .run(PYTHON, &["-c", SCRIPT, ca.root.certificate(), url, version])
        .unwrap_or_else(|error| panic!("python GET {url}: {error}"));
    String::from_utf8_lossy(&output.stdout).into_owned()
}
