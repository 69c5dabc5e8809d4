//! Agent to collector to CLI, end to end: the agent ships the calls it captures to a real
//! moat-collector over gRPC, the collector is killed and restarted mid-stream, and the `moat` CLI
//! finds every call exactly once. And two collector replicas sharing one PostgreSQL database, and
//! collectors reaching PostgreSQL over TLS only.

use std::{
    net::SocketAddr,
    process::Stdio,
    time::{Duration, Instant},
};

use moat_e2e::{
    RunningAgent, Scratch, StateDir, built_binary,
    capture::start_web_server,
    collector::{COLLECTOR_PORT, moat_json, moat_json_at, start_collector},
    require_root, two_pods,
};
use serde_json::Value;
use testbed::{Background, Node};

/// `moat calls --output json` (with `extra` flags), run in the node.
fn moat_calls(node: &Node, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["calls", "--limit", "1000"];
    args.extend(extra);
    moat_json(node, &args)
}

fn wait_for_calls(node: &Node, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let calls = moat_calls(node, &["--path", "/item"]);
        if calls.len() >= count {
            return calls;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {count} calls at the collector",
            calls.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn every_call_reaches_the_collector_once_across_a_collector_crash() {
    require_root();
    let (node, client, server) = two_pods("collect");
    let scratch = Scratch::new("collector");
    let database = scratch.file("moat.db");
    let mut collector = start_collector(&node, &database, &[]);

    const PORT: u16 = 18640;
    let (_server, address) = start_web_server(&server, PORT);
    let state = StateDir::new();
    let collector_url = format!("http://127.0.0.1:{COLLECTOR_PORT}");
    let agent = RunningAgent::start(
        &node,
        &state,
        &[],
        &[
            "--capture",
            "on",
            "--capture-port",
            "18640",
            "--kubernetes",
            "off",
            "--collector",
            &collector_url,
            "--export-interval",
            "200ms",
        ],
    );
    let curl = |path: &str| {
        client
            .run(
                "curl",
                &["-sS", "-o", "/dev/null", &format!("http://{address}{path}")],
            )
            .expect("curl the server");
    };
    for n in 0..5 {
        curl(&format!("/item/{n}"));
    }
    let calls = wait_for_calls(&node, 5);
    assert_eq!(calls.len(), 5, "{calls:?}");
    assert!(
        calls
            .iter()
            .all(|call| call["status"] == 404 && call["method"] == "GET"),
        "{calls:?}"
    );

    // The collector dies; calls made meanwhile wait in the agent's queue.
    collector.signal_and_wait(libc::SIGKILL, Duration::from_secs(5));
    for n in 5..10 {
        curl(&format!("/item/{n}"));
    }
    std::thread::sleep(Duration::from_secs(3));
    let _collector = start_collector(&node, &database, &[]);
    let calls = wait_for_calls(&node, 10);
    std::thread::sleep(Duration::from_secs(2));
    let calls_after = moat_calls(&node, &["--path", "/item"]);
    assert_eq!(
        calls_after.len(),
        10,
        "none lost, none twice: {calls_after:?}"
    );
    let mut paths: Vec<&str> = calls
        .iter()
        .map(|call| call["path"].as_str().unwrap_or(""))
        .collect();
    paths.sort_unstable();
    let expected: Vec<String> = (0..10).map(|n| format!("/item/{n}")).collect();
    assert_eq!(
        paths,
        expected.iter().map(String::as_str).collect::<Vec<_>>()
    );

    // Filters and the table for people.
    assert_eq!(moat_calls(&node, &["--path", "/item/7"]).len(), 1);
    assert!(moat_calls(&node, &["--path", "/item", "--min-status", "500"]).is_empty());
    let table = node
        .command(built_binary("moat"))
        .args(["--collector", &collector_url, "calls", "--path", "/item/3"])
        .output()
        .expect("run moat");
    let table = String::from_utf8_lossy(&table.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("TIME") && lines[0].contains("STATUS"),
        "{table}"
    );
    assert!(
        lines[1].contains("GET /item/3") && lines[1].contains("404"),
        "{table}"
    );

    // The collector knows the agent: it is connected, and its records are all stored (the
    // restarted collector counts only what it stored itself).
    let agents = moat_json(&node, &["agents"]);
    assert_eq!(agents.len(), 1, "{agents:?}");
    assert_eq!(agents[0]["connected"], true, "{agents:?}");
    assert_eq!(agents[0]["records_dropped"], 0, "{agents:?}");
    assert!(
        agents[0]["records_stored"].as_u64().unwrap_or(0) >= 5,
        "{agents:?}"
    );

    // The service map: one edge from the client pod's address to the server's.
    let edges = moat_json(&node, &["map"]);
    assert!(
        edges
            .iter()
            .any(|edge| edge["client"] == client.ipv4.to_string()
                && edge["server"] == server.ipv4.to_string()
                && edge["calls"].as_u64() >= Some(10)
                && edge["protocols"] == serde_json::json!(["http1"])),
        "{edges:?}"
    );

    // Follow mode prints calls as they are stored.
    let mut follower = testbed::spawn(
        node.command(built_binary("moat"))
            .args([
                "--collector",
                &collector_url,
                "calls",
                "--follow",
                "--output",
                "json",
                "--path",
                "/follow",
            ])
            .stdout(Stdio::piped()),
    )
    .expect("start moat calls --follow");
    let stdout = follower.child_mut().stdout.take().expect("piped stdout");
    let (lines, followed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    curl("/follow/1");
    let line = followed
        .recv_timeout(Duration::from_secs(15))
        .expect("moat calls --follow prints the new call");
    let call: Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(call["path"], "/follow/1", "{call}");
    drop(follower);

    // An unreachable collector is exit code 69, for scripts.
    let unreachable = node
        .command(built_binary("moat"))
        .args(["--collector", "http://127.0.0.1:1", "calls"])
        .output()
        .expect("run moat");
    assert_eq!(unreachable.status.code(), Some(69));

    agent.stop();
}

/// Writes a CA and a certificate it signs for `name` into `scratch`: (CA, certificate, key).
fn issue(scratch: &Scratch, label: &str, name: &str) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let key = rcgen::KeyPair::generate().expect("key");
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let certificate = rcgen::CertificateParams::new(vec![name.to_owned()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("signed");
    let write = |file: &str, text: String| {
        let path = scratch.file(&format!("{label}-{file}"));
        std::fs::write(&path, text).expect("write PEM");
        path.display().to_string()
    };
    (
        write("ca.pem", ca.pem()),
        write("cert.pem", certificate.pem()),
        write("key.pem", key.serialize_pem()),
    )
}

#[test]
fn agents_ship_over_mtls_and_the_cli_reads_over_tls() {
    require_root();
    let (node, client, server) = two_pods("collecttls");
    let scratch = Scratch::new("collector-tls");
    let (server_ca, server_cert, server_key) = issue(&scratch, "server", "localhost");
    let (agent_ca, agent_cert, agent_key) = issue(&scratch, "agent", "node-a");
    let database = scratch.file("moat.db");
    let _collector = start_collector(
        &node,
        &database,
        &[
            "--tls-cert",
            &server_cert,
            "--tls-key",
            &server_key,
            "--tls-client-ca",
            &agent_ca,
        ],
    );
    const PORT: u16 = 18641;
    let (_server, address) = start_web_server(&server, PORT);
    let state = StateDir::new();
    let url = format!("https://localhost:{COLLECTOR_PORT}");
    let agent = RunningAgent::start(
        &node,
        &state,
        &[],
        &[
            "--capture",
            "on",
            "--capture-port",
            "18641",
            "--kubernetes",
            "off",
            "--collector",
            &url,
            "--collector-ca",
            &server_ca,
            "--collector-cert",
            &agent_cert,
            "--collector-key",
            &agent_key,
            "--export-interval",
            "200ms",
        ],
    );
    client
        .run(
            "curl",
            &["-sS", "-o", "/dev/null", &format!("http://{address}/tls/1")],
        )
        .expect("curl the server");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let output = node
            .command(built_binary("moat"))
            .args([
                "--collector",
                &url,
                "--ca",
                &server_ca,
                "calls",
                "--output",
                "json",
                "--path",
                "/tls",
            ])
            .output()
            .expect("run moat");
        assert!(
            output.status.success(),
            "moat over TLS: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        if String::from_utf8_lossy(&output.stdout).contains("/tls/1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the call did not reach the collector over mTLS"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    agent.stop();
}

#[test]
fn the_spool_keeps_records_through_an_outage_and_an_agent_restart() {
    require_root();
    let (node, client, server) = two_pods("collectspool");
    let scratch = Scratch::new("collector-spool");
    let database = scratch.file("moat.db");
    let spool = scratch.file("spool").display().to_string();
    const PORT: u16 = 18642;
    let (_server, address) = start_web_server(&server, PORT);
    let collector_url = format!("http://127.0.0.1:{COLLECTOR_PORT}");
    let agent_args = [
        "--capture",
        "on",
        "--capture-port",
        "18642",
        "--kubernetes",
        "off",
        "--collector",
        &collector_url,
        "--export-interval",
        "200ms",
        // Two records in memory: the rest must go to disk.
        "--export-queue-records",
        "2",
        "--spool-dir",
        &spool,
    ];
    let curl = |path: &str| {
        client
            .run(
                "curl",
                &["-sS", "-o", "/dev/null", &format!("http://{address}{path}")],
            )
            .expect("curl the server");
    };

    // No collector yet: 4 calls, then the agent stops (what is in memory goes to the spool).
    let state = StateDir::new();
    let agent = RunningAgent::start(&node, &state, &[], &agent_args);
    for n in 0..4 {
        curl(&format!("/spool/{n}"));
    }
    std::thread::sleep(Duration::from_secs(3));
    agent.stop();
    assert!(
        std::fs::read_dir(&spool).expect("spool directory").count() > 0,
        "the stopped agent left its records in the spool"
    );

    // A new agent, still no collector: 4 more calls spool behind the first.
    let agent = RunningAgent::start(&node, &state, &[], &agent_args);
    for n in 4..8 {
        curl(&format!("/spool/{n}"));
    }
    std::thread::sleep(Duration::from_secs(3));

    // The collector comes: every call arrives, once.
    let _collector = start_collector(&node, &database, &[]);
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let calls = moat_calls(&node, &["--path", "/spool"]);
        if calls.len() >= 8 {
            let mut paths: Vec<String> = calls
                .iter()
                .map(|call| call["path"].as_str().unwrap_or("").to_owned())
                .collect();
            paths.sort_unstable();
            let expected: Vec<String> = (0..8).map(|n| format!("/spool/{n}")).collect();
            assert_eq!(paths, expected);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of 8 spooled calls arrived",
            calls.len()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    agent.stop();
}

/// A free port on the host's loopback, for a collector.
fn free_address() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
}

/// A moat-collector on the host's loopback, storing in `store` (with `extra` flags); wait for
/// it with [`wait_listening`].
fn start_replica(store: &str, extra: &[&str]) -> (Background, SocketAddr) {
    let address = free_address();
    let collector = testbed::spawn(
        std::process::Command::new(built_binary("moat-collector"))
            .args(["--listen", &address.to_string(), "--store", store])
            .args(extra)
            .stdin(Stdio::null()),
    )
    .expect("start moat-collector");
    (collector, address)
}

/// What a moat-collector that must refuse `store` (with `extra` flags) says on standard error
/// when it exits, which it must, unsuccessfully, within 15 seconds.
fn refused_store(store: &str, extra: &[&str]) -> String {
    let mut collector = std::process::Command::new(built_binary("moat-collector"))
        .args(["--listen", &free_address().to_string(), "--store", store])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start moat-collector");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = collector.try_wait().expect("wait for moat-collector") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = collector.kill();
            panic!("moat-collector took --store {store} {extra:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "moat-collector took --store {store}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(
        &mut collector.stderr.take().expect("stderr piped"),
        &mut stderr,
    )
    .expect("read stderr");
    stderr
}

fn wait_listening(address: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moat-collector does not listen on {address}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn shipped_call(node: &str, sequence: u64) -> moat_api::v1::Record {
    use moat_api::v1::{ApiCall, Identity, Peer, RecordId, record};
    let peer = |workload: &str| Peer {
        identity: Some(Identity {
            namespace: "shop".into(),
            workload_name: workload.into(),
            ..Identity::default()
        }),
        ..Peer::default()
    };
    moat_api::v1::Record {
        kind: Some(record::Kind::Call(ApiCall {
            id: Some(RecordId {
                node: node.into(),
                boot: 1,
                sequence,
            }),
            time_unix_nanos: 1_790_000_000_000_000_000 + sequence as i64,
            protocol: "http1".into(),
            client: Some(peer(node)),
            server: Some(peer("db")),
            method: "GET".into(),
            path: format!("/{node}/{sequence}"),
            status: 200,
            ..ApiCall::default()
        })),
    }
}

/// Ships calls `sequences` of `node` to the collector at `address` as one batch; (accepted,
/// duplicates).
async fn ship(
    address: SocketAddr,
    node: &str,
    sequences: std::ops::RangeInclusive<u64>,
) -> (u32, u32) {
    export(
        address,
        node,
        sequences.map(|n| shipped_call(node, n)).collect(),
    )
    .await
}

/// Ships `records` as node `node`'s agent (boot 1) to the collector at `address`, as one batch;
/// (accepted, duplicates).
async fn export(address: SocketAddr, node: &str, records: Vec<moat_api::v1::Record>) -> (u32, u32) {
    let mut client =
        moat_api::v1::ingest_client::IngestClient::connect(format!("http://{address}"))
            .await
            .expect("connect to ingest");
    let batch = moat_api::v1::ExportRequest {
        batch: 1,
        records,
        status: Some(moat_api::v1::AgentStatus {
            node: node.to_owned(),
            boot: 1,
            version: "test".to_owned(),
            ..moat_api::v1::AgentStatus::default()
        }),
        ..moat_api::v1::ExportRequest::default()
    };
    let ack = client
        .export(tokio_stream::iter([batch]))
        .await
        .expect("export")
        .into_inner()
        .message()
        .await
        .expect("acknowledgement")
        .expect("one acknowledgement");
    (ack.accepted, ack.duplicates)
}

/// Every call's path at the collector at `address`, page by page.
async fn all_paths(address: SocketAddr) -> Vec<String> {
    let mut client = moat_api::v1::query_client::QueryClient::connect(format!("http://{address}"))
        .await
        .expect("connect to query");
    let mut paths = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = client
            .list_calls(moat_api::v1::ListCallsRequest {
                page_size: 70,
                cursor,
                ..moat_api::v1::ListCallsRequest::default()
            })
            .await
            .expect("list calls")
            .into_inner();
        paths.extend(page.calls.into_iter().map(|call| call.path));
        if page.next_cursor.is_empty() {
            return paths;
        }
        cursor = page.next_cursor;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_collectors_sharing_one_postgres_see_every_call_once() {
    let postgres = testbed::postgres::Server::start().expect("start PostgreSQL");
    // Both start at once against an empty database: they take turns creating the tables.
    let (_a, a) = start_replica(&postgres.url(), &[]);
    let (_b, b) = start_replica(&postgres.url().replace("postgres://", "postgresql://"), &[]);
    wait_listening(a);
    wait_listening(b);

    let mut follow = moat_api::v1::query_client::QueryClient::connect(format!("http://{a}"))
        .await
        .expect("connect to query")
        .watch_calls(moat_api::v1::WatchCallsRequest {
            filter: Some(moat_api::v1::CallFilter {
                workload: "node-b".into(),
                ..moat_api::v1::CallFilter::default()
            }),
        })
        .await
        .expect("watch")
        .into_inner();

    assert_eq!(ship(a, "node-a", 1..=150).await, (150, 0));
    assert_eq!(ship(b, "node-b", 1..=100).await, (100, 0));
    // node-a lost replica a and sends its last batch again, to replica b.
    assert_eq!(
        ship(b, "node-a", 101..=160).await,
        (10, 50),
        "what replica a stored is a duplicate at replica b"
    );

    let mut expected: Vec<String> = (1..=160)
        .map(|n| format!("/node-a/{n}"))
        .chain((1..=100).map(|n| format!("/node-b/{n}")))
        .collect();
    expected.sort_unstable();
    for replica in [a, b] {
        let mut paths = all_paths(replica).await;
        paths.sort_unstable();
        assert_eq!(paths, expected, "every call once, at replica {replica}");
    }

    let edges = moat_api::v1::query_client::QueryClient::connect(format!("http://{b}"))
        .await
        .expect("connect to query")
        .get_service_map(moat_api::v1::GetServiceMapRequest::default())
        .await
        .expect("service map")
        .into_inner()
        .edges;
    let calls: Vec<(String, u64)> = edges
        .iter()
        .map(|edge| (edge.client.clone(), edge.calls))
        .collect();
    assert_eq!(
        calls,
        vec![
            ("shop/node-a".to_owned(), 160),
            ("shop/node-b".to_owned(), 100)
        ],
        "the aggregates count each call once"
    );

    // Either replica knows every agent, and what all replicas stored of it.
    let agents = moat_api::v1::query_client::QueryClient::connect(format!("http://{a}"))
        .await
        .expect("connect to query")
        .get_agent_status(moat_api::v1::GetAgentStatusRequest {})
        .await
        .expect("agent status")
        .into_inner()
        .agents;
    let mut stored: Vec<(String, u64)> = agents
        .iter()
        .map(|agent| {
            let node = agent.status.as_ref().map(|status| status.node.clone());
            (node.unwrap_or_default(), agent.records_stored)
        })
        .collect();
    stored.sort();
    assert_eq!(
        stored,
        vec![("node-a".to_owned(), 160), ("node-b".to_owned(), 100)],
        "node-b only ever shipped to replica b"
    );

    // Replica a's follower sees what replica b stored, in order.
    let mut followed = Vec::new();
    while followed.len() < 100 {
        let call = tokio::time::timeout(Duration::from_secs(10), follow.message())
            .await
            .expect("a followed call within 10 s")
            .expect("follow stream")
            .expect("a call");
        followed.push(call.path);
    }
    let shipped: Vec<String> = (1..=100).map(|n| format!("/node-b/{n}")).collect();
    assert_eq!(followed, shipped);
}

#[test]
fn rotated_tokens_are_in_force_within_seconds_without_a_restart() {
    require_root();
    let (node, _client, _server) = two_pods("tokens");
    let scratch = Scratch::new("tokens");
    let tokens = scratch.file("tokens.yaml");
    let write = |token: &str| {
        moat_e2e::write_atomically(
            &tokens,
            &format!("tokens:\n  - {{ name: ci, token: {token}, role: reader }}\n"),
        );
    };
    write("first-token-0123456789");
    let tokens_arg = tokens.display().to_string();
    let _collector = start_collector(&node, &scratch.file("moat.db"), &["--tokens", &tokens_arg]);
    let status = |token: &str| {
        node.command(built_binary("moat"))
            .args(["--collector", &format!("http://127.0.0.1:{COLLECTOR_PORT}")])
            .args(["--token", token, "agents"])
            .output()
            .expect("run moat")
            .status
            .code()
    };
    assert_eq!(status("first-token-0123456789"), Some(0));
    assert_eq!(
        status("second-token-0123456789"),
        Some(77),
        "not yet a token"
    );
    write("second-token-0123456789");
    let deadline = Instant::now() + Duration::from_secs(10);
    while status("second-token-0123456789") != Some(0) {
        assert!(
            Instant::now() < deadline,
            "the rotated token never took over"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        status("first-token-0123456789"),
        Some(77),
        "the old token is out"
    );
    // A broken edit keeps the tokens in force.
    moat_e2e::write_atomically(
        &tokens,
        "tokens: [{ name: ci, token: short, role: reader }]\n",
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(status("second-token-0123456789"), Some(0));
}

/// Node `node`'s totals of a flow of `class` values of `kind` between `/users/{id}` of service
/// `accounts` and `caller`, in record `sequence` of its boot `boot`.
#[expect(clippy::too_many_arguments, reason = "one flow's identity and counts")]
fn shipped_flow(
    (node, boot, sequence): (&str, u64, u64),
    direction: &str,
    class: &str,
    kind: &str,
    caller: moat_api::v1::DataFlowCounterpart,
    encrypted: bool,
    calls: u64,
    seen: i64,
) -> moat_api::v1::Record {
    moat_api::v1::Record {
        kind: Some(moat_api::v1::record::Kind::DataFlow(
            moat_api::v1::DataFlow {
                id: Some(moat_api::v1::RecordId {
                    node: node.into(),
                    boot,
                    sequence,
                }),
                time_unix_nanos: seen * 1_000_000_000,
                service: "accounts".into(),
                method: "GET".into(),
                endpoint: "/users/{id}".into(),
                direction: direction.into(),
                data_class: class.into(),
                kind: kind.into(),
                counterpart: Some(caller),
                encrypted,
                calls,
                values: calls * 2,
                first_seen_unix: seen - 60,
                last_seen_unix: seen,
            },
        )),
    }
}

/// Two agents ship data flows to a collector storing in `store`; `moat dataflow` shows them
/// totalled across agents and restarts, filtered as asked.
async fn data_flows_merge_across_agents(store: &str) {
    use moat_api::v1::DataFlowCounterpart;
    let (_collector, address) = start_replica(store, &[]);
    wait_listening(address);
    let web = DataFlowCounterpart {
        label: "shop/web".into(),
        namespace: "shop".into(),
        workload: "web".into(),
        ..DataFlowCounterpart::default()
    };
    let partner = DataFlowCounterpart {
        label: "customer/acme".into(),
        range: "partners".into(),
        customer: "acme".into(),
        ..DataFlowCounterpart::default()
    };
    let email_out = |node_boot_sequence, caller: &DataFlowCounterpart, calls, seen| {
        shipped_flow(
            node_boot_sequence,
            "out",
            "pii",
            "data.email",
            caller.clone(),
            false,
            calls,
            seen,
        )
    };
    const T: i64 = 1_790_000_000;
    // node-a reports its totals twice (the later replaces the earlier), node-b once; the same
    // flow over TLS and the card numbers the partner sends in are flows of their own.
    let node_a = vec![
        email_out(("node-a", 1, 1), &web, 4, T),
        email_out(("node-a", 1, 2), &web, 10, T + 30),
        shipped_flow(
            ("node-a", 1, 3),
            "in",
            "financial",
            "data.payment_card",
            partner.clone(),
            false,
            2,
            T + 10,
        ),
    ];
    export(address, "node-a", node_a).await;
    let node_b = vec![
        email_out(("node-b", 1, 1), &web, 5, T + 20),
        shipped_flow(
            ("node-b", 1, 2),
            "out",
            "pii",
            "data.email",
            web.clone(),
            true,
            1,
            T + 20,
        ),
    ];
    export(address, "node-b", node_b).await;
    // node-a restarted and counts afresh.
    export(
        address,
        "node-a",
        vec![email_out(("node-a", 2, 1), &web, 1, T + 40)],
    )
    .await;

    let url = format!("http://{address}");
    let moat =
        |args: &[&str]| moat_json_at(std::process::Command::new(built_binary("moat")), &url, args);
    let pii = moat(&["dataflow", "--class", "pii"]);
    let summary: Vec<(bool, u64, u64)> = pii
        .iter()
        .map(|flow| {
            (
                flow["encrypted"].as_bool().unwrap_or_default(),
                flow["calls"].as_u64().unwrap_or_default(),
                flow["values"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![(true, 1, 2), (false, 10 + 5 + 1, (10 + 5 + 1) * 2)],
        "each agent boot's latest totals, summed: {pii:?}"
    );
    let merged = &pii[1];
    assert_eq!(merged["direction"], "out");
    assert_eq!(merged["kind"], "data.email");
    assert_eq!(merged["counterpart"]["label"], "shop/web");
    assert_eq!(merged["first_seen"], "2026-09-21T14:12:40Z", "{merged}");
    assert_eq!(merged["last_seen"], "2026-09-21T14:14:00Z", "{merged}");

    let plaintext = moat(&["dataflow", "--plaintext", "--namespace", "shop"]);
    assert_eq!(plaintext.len(), 1, "{plaintext:?}");
    let incoming = moat(&["dataflow", "--direction", "in", "--customer", "acme"]);
    assert_eq!(incoming.len(), 1, "{incoming:?}");
    assert_eq!(incoming[0]["class"], "financial");
    assert_eq!(incoming[0]["counterpart"]["range"], "partners");
    assert!(moat(&["dataflow", "--class", "secret"]).is_empty());
    assert_eq!(moat(&["dataflow", "--limit", "2"]).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_flows_merge_across_agents_in_the_embedded_store() {
    let scratch = Scratch::new("collector-dataflow");
    let database = scratch.file("moat.db");
    data_flows_merge_across_agents(&format!("sqlite:{}", database.display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_flows_merge_across_agents_in_postgres() {
    let postgres = testbed::postgres::Server::start().expect("start PostgreSQL");
    data_flows_merge_across_agents(&postgres.url()).await;
}

/// Every call's path that `moat calls` finds at the collector at `address`, sorted.
fn paths_by_moat(address: SocketAddr) -> Vec<String> {
    let calls = moat_json_at(
        std::process::Command::new(built_binary("moat")),
        &format!("http://{address}"),
        &["calls", "--limit", "100"],
    );
    let mut paths: Vec<String> = calls
        .iter()
        .filter_map(|call| call["path"].as_str().map(str::to_owned))
        .collect();
    paths.sort_unstable();
    paths
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collectors_store_in_a_postgres_that_takes_only_tls() {
    use testbed::postgres::{ClientAuthentication, Server};
    let postgres = Server::start_tls(ClientAuthentication::Trust).expect("start PostgreSQL");
    let ca = postgres.ca_file().expect("a CA").display().to_string();
    // The shipped calls are months old: a new replica's first retention would delete them.
    let keep = ["--retention", "3650d"];
    let (_verified, verified) = start_replica(
        &format!("{}?sslmode=verify-full", postgres.url()),
        &[&keep[..], &["--store-ca", &ca]].concat(),
    );
    wait_listening(verified);
    assert_eq!(ship(verified, "node-tls", 1..=3).await, (3, 0));
    let shipped = vec!["/node-tls/1", "/node-tls/2", "/node-tls/3"];
    assert_eq!(paths_by_moat(verified), shipped);

    // require encrypts without checking the server: no CA needed.
    let (_unchecked, unchecked) =
        start_replica(&format!("{}?sslmode=require", postgres.url()), &keep);
    wait_listening(unchecked);
    assert_eq!(paths_by_moat(unchecked), shipped);
}

#[test]
fn a_collector_refuses_postgres_in_clear_or_under_another_ca() {
    use testbed::postgres::{ClientAuthentication, Server};
    let postgres = Server::start_tls(ClientAuthentication::Trust).expect("start PostgreSQL");
    let plain = refused_store(&format!("{}?sslmode=disable", postgres.url()), &[]);
    assert!(
        plain.contains("no encryption")
            && plain.contains("sslmode=disable: the server may accept only TLS connections"),
        "{plain}"
    );

    let scratch = Scratch::new("postgres-stranger-ca");
    let (stranger_ca, _, _) = issue(&scratch, "stranger", "localhost");
    let stranger = refused_store(
        &format!("{}?sslmode=verify-full", postgres.url()),
        &["--store-ca", &stranger_ca],
    );
    assert!(
        stranger.contains(&format!(
            "sslmode=verify-full: the server's certificate is not signed by --store-ca {stranger_ca}"
        )),
        "{stranger}"
    );
}
