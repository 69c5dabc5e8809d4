//! Helpers of the API-capture tests: run the agent capturing chosen ports, wait for servers in
//! pods, and collect and summarise the `api.call` records.

use std::{
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use serde_json::Value;
use testbed::{Background, Node, Pod};

use crate::{RunningAgent, StateDir};

/// Scripts of the peers (python servers and clients), next to this crate.
pub fn peer_script(name: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("peers")
        .join(name)
        .display()
        .to_string()
}

/// Debian's python, which has grpcio; a python earlier on PATH (pyenv) may not.
pub const PYTHON: &str = "/usr/bin/python3";

/// Starts the python peer `script ADDRESS PORT` in `pod` on its IPv4 address, and waits until
/// it listens.
pub fn start_peer_server(pod: &Pod, script: &str, port: u16) -> (Background, SocketAddr) {
    let address = SocketAddr::new(pod.ipv4.into(), port);
    let process = pod
        .spawn(
            PYTHON,
            &[
                &peer_script(script),
                &pod.ipv4.to_string(),
                &port.to_string(),
            ],
        )
        .unwrap_or_else(|error| panic!("start {script} in pod {}: {error}", pod.name));
    wait_listening(pod, address);
    (process, address)
}

/// curl from `client` with `args`: the HTTP status, or why there was none.
pub fn curl_status(client: &Pod, args: &[&str]) -> Result<String, String> {
    let mut all = vec![
        "-sS",
        "--max-time",
        "3",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
    ];
    all.extend(args);
    client
        .run("curl", &all)
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
        .map_err(|error| error.to_string())
}

/// Starts the agent capturing only `ports` (so tests running at once do not see each other's
/// calls), with `extra` arguments.
pub fn capture_agent(node: &Node, state: &StateDir, ports: &[u16], extra: &[&str]) -> RunningAgent {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    let mut args = vec!["--capture", "on"];
    for port in &ports {
        args.extend(["--capture-port", port.as_str()]);
    }
    args.extend(extra);
    RunningAgent::start(node, state, &[], &args)
}

/// Python's built-in web server on the pod's IPv4 address, once it listens (it answers 404 to
/// any path but `/`).
pub fn start_web_server(pod: &Pod, port: u16) -> (testbed::Background, SocketAddr) {
    start_web_server_in(pod, port, std::path::Path::new("."))
}

/// As [`start_web_server`], serving the files of `directory`.
pub fn start_web_server_in(
    pod: &Pod,
    port: u16,
    directory: &std::path::Path,
) -> (testbed::Background, SocketAddr) {
    let address = SocketAddr::new(pod.ipv4.into(), port);
    let process = pod
        .spawn(
            "/usr/bin/python3",
            &[
                "-m",
                "http.server",
                "--directory",
                &directory.display().to_string(),
                "--bind",
                &pod.ipv4.to_string(),
                &port.to_string(),
            ],
        )
        .expect("start a web server in the pod");
    wait_listening(pod, address);
    (process, address)
}

/// Waits until a TCP port accepts connections inside a pod.
pub fn wait_listening(pod: &Pod, address: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let connected = pod
            .enter(|| TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok())
            .expect("enter the pod's namespace");
        if connected {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("nothing listens on {address} in pod {}", pod.name);
}

/// `api.call` records from `mark` on, waiting until there are `count` of them (and a little
/// longer, to catch any extra one).
pub fn calls_since(agent: &mut RunningAgent, mark: usize, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let calls: Vec<Value> = agent.records()[mark..]
            .iter()
            .filter(|record| record["kind"] == "api.call")
            .cloned()
            .collect();
        if calls.len() >= count {
            // Calls seen at one end only wait 2 s for their other end before being reported.
            std::thread::sleep(Duration::from_millis(2500));
            return agent.records()[mark..]
                .iter()
                .filter(|record| record["kind"] == "api.call")
                .cloned()
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "{} of {count} calls recorded within 20s:\n{}",
            calls.len(),
            calls
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// (method, path, status) of each call, sorted.
pub fn summary(calls: &[Value]) -> Vec<(String, String, u64)> {
    let mut summary: Vec<_> = calls
        .iter()
        .map(|call| {
            (
                call["method"].as_str().unwrap_or("-").to_owned(),
                call["path"].as_str().unwrap_or("-").to_owned(),
                call["status"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    summary.sort();
    summary
}

/// Body bytes the agent keeps per message by default.
pub const KEPT_BODY_BYTES: u64 = 64 * 1024;

/// A call seen whole is flagged only when a body was longer than what is kept for analysis.
pub fn flags_of_a_clean_call(call: &Value) -> Value {
    let longest_body = ["request", "response"]
        .iter()
        .map(|side| {
            call[side]["body_bytes"]
                .as_u64()
                .unwrap_or_else(|| panic!("{side} body_bytes in {call}"))
        })
        .max()
        .unwrap_or(0);
    if longest_body > KEPT_BODY_BYTES {
        serde_json::json!(["truncated"])
    } else {
        serde_json::json!([])
    }
}

/// (gRPC method, gRPC status, request messages, response messages) of each call, sorted, after
/// checking that every call is gRPC over HTTP 200 to `service`.
pub fn grpc_summary(calls: &[Value], service: &str) -> Vec<(String, u64, u64, u64)> {
    let number = |call: &Value, field: &str| {
        call["grpc"][field]
            .as_u64()
            .unwrap_or_else(|| panic!("grpc.{field} in {call}"))
    };
    let mut seen: Vec<_> = calls
        .iter()
        .map(|call| {
            assert_eq!(call["protocol"], "grpc", "{call}");
            assert_eq!(call["status"], 200, "{call}");
            assert_eq!(call["grpc"]["service"], service, "{call}");
            (
                call["grpc"]["method"].as_str().unwrap_or("-").to_owned(),
                number(call, "status"),
                number(call, "request_messages"),
                number(call, "response_messages"),
            )
        })
        .collect();
    seen.sort();
    seen
}

/// What block mode must have done since `mark`: `client`'s address in the timed blocks for
/// `ttl_seconds`, its next request (`curl` with `next`) refused, and that drop reported.
pub fn assert_blocked(
    agent: &mut RunningAgent,
    mark: usize,
    client: &Pod,
    ttl_seconds: u64,
    next: &[&str],
) {
    let block = agent.wait_since(mark, Duration::from_secs(10), |record| {
        record["kind"] == "enforce.timed_block"
    });
    assert_eq!(block["network"], format!("{}/32", client.ipv4), "{block}");
    assert_eq!(block["ttl_seconds"], ttl_seconds, "{block}");
    let refused = curl_status(client, next);
    assert!(
        refused.is_err(),
        "the blocked client's next connection must fail: {refused:?}"
    );
    let denied = agent.wait_since(mark, Duration::from_secs(10), |record| {
        record["kind"] == "policy.denied"
    });
    assert_eq!(denied["reason"], "timed_block", "{denied}");
    assert_eq!(denied["src"], client.ipv4.to_string(), "{denied}");
}
