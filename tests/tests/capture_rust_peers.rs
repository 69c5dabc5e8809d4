//! API call capture of Rust peers (src/bin/rust_peer.rs) in testbed pods: an `h2` client and
//! server speaking HTTP/2 with prior knowledge, and a `tonic` gRPC client and server. The agent
//! captures every process on the host; its `api.call` records are compared with what the
//! clients sent and received.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::BTreeSet, net::SocketAddr};

use moat_e2e::{
    StateDir,
    capture::{
        calls_since, capture_agent, flags_of_a_clean_call, grpc_summary, summary, wait_listening,
    },
    require_root, two_pods,
};
use serde_json::{Value, json};
use testbed::{Background, Pod};

const PEER: &str = env!("CARGO_BIN_EXE_rust-peer");

/// Runs `rust-peer SERVE ADDRESS` in `server` and waits until it listens.
fn start_server(server: &Pod, serve: &str, port: u16) -> (Background, SocketAddr) {
    let address = SocketAddr::new(server.ipv4.into(), port);
    let process = server.spawn(PEER, &[serve, &address.to_string()]).unwrap();
    wait_listening(server, address);
    (process, address)
}

/// The last `agent.capture_stats` record.
fn last_stats(records: &[Value]) -> &Value {
    records
        .iter()
        .rfind(|record| record["kind"] == "agent.capture_stats")
        .expect("capture stats")
}

#[test]
fn h2_client_to_h2_server_calls_match_the_requests_stream_by_stream() {
    require_root();
    let (node, client, server) = two_pods("caprh2");
    let state = StateDir::new();
    const PORT: u16 = 18600;
    let (_server, address) = start_server(&server, "h2-serve", PORT);
    let mut agent = capture_agent(&node, &state, &[PORT], &[]);
    let mark = agent.mark();

    // All at once on one connection. /post/70000 and /bytes/100000 are larger than the initial
    // flow-control window (65,535 bytes), so they need WINDOW_UPDATEs mid-body.
    let paths = [
        "/hello",
        "/search?q=rust",
        "/missing",
        "/bytes/100000",
        "/post",
        "/post/70000",
    ];
    let mut arguments = vec!["h2-get".to_owned(), address.to_string()];
    arguments.extend(paths.map(str::to_owned));
    let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
    let output = client.run(PEER, &arguments).unwrap();
    // PATH STATUS BODY-BYTES, sorted by path.
    let printed = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        printed.lines().collect::<Vec<_>>(),
        [
            "/bytes/100000 200 100000",
            "/hello 200 13",
            "/missing 404 10",
            "/post 200 16",
            "/post/70000 200 23",
            "/search?q=rust 200 14",
        ],
        "what the client received"
    );

    let calls = calls_since(&mut agent, mark, paths.len());
    assert_eq!(
        summary(&calls),
        vec![
            ("GET".into(), "/bytes/100000".into(), 200),
            ("GET".into(), "/hello".into(), 200),
            ("GET".into(), "/missing".into(), 404),
            ("GET".into(), "/search".into(), 200),
            ("POST".into(), "/post".into(), 200),
            ("POST".into(), "/post/70000".into(), 200),
        ],
        "{calls:#?}"
    );
    let mut stream_ids = BTreeSet::new();
    let mut client_ports = BTreeSet::new();
    for call in &calls {
        assert_eq!(call["protocol"], "http2", "{call}");
        assert_eq!(call["seen_at"], json!(["client", "server"]), "{call}");
        assert_eq!(call["authority"], address.to_string(), "{call}");
        assert_eq!(call["client"]["comm"], "rust-peer", "{call}");
        assert_eq!(call["server"]["comm"], "rust-peer", "{call}");
        assert_eq!(call["server"]["ip"], server.ipv4.to_string(), "{call}");
        assert_eq!(call["server"]["port"], PORT, "{call}");
        assert_eq!(call["client"]["ip"], client.ipv4.to_string(), "{call}");
        assert_eq!(call["flags"], flags_of_a_clean_call(call), "{call}");
        assert_eq!(call["request"]["complete"], true, "{call}");
        assert_eq!(call["response"]["complete"], true, "{call}");
        let stream_id = call["stream_id"].as_u64().unwrap();
        assert_eq!(stream_id % 2, 1, "client-initiated streams are odd: {call}");
        assert!(stream_ids.insert(stream_id), "stream {stream_id} twice");
        client_ports.insert(call["client"]["port"].as_u64().unwrap());
    }
    assert_eq!(client_ports.len(), 1, "one connection: {calls:#?}");

    let call = |path: &str| {
        calls
            .iter()
            .find(|call| call["path"] == path)
            .unwrap_or_else(|| panic!("no call to {path}"))
    };
    assert_eq!(call("/search")["query"], "q=rust");
    for (path, request_body, response_body) in [
        ("/hello", 0, 13),
        ("/search", 0, 14),
        ("/missing", 0, 10),
        ("/bytes/100000", 0, 100_000),
        ("/post", 1000, 16),
        ("/post/70000", 70_000, 23),
    ] {
        let call = call(path);
        assert_eq!(call["request"]["body_bytes"], request_body, "{call}");
        assert_eq!(call["response"]["body_bytes"], response_body, "{call}");
    }

    let records = agent.stop();
    let stats = last_stats(&records);
    assert_eq!(stats["events_lost"], 0, "{stats}");
    assert_eq!(stats["calls_merged"], paths.len(), "{stats}");
}

#[test]
fn tonic_unary_and_streaming_calls_carry_service_method_status_and_message_counts() {
    require_root();
    let (node, client, server) = two_pods("caprgrpc");
    let state = StateDir::new();
    const PORT: u16 = 18601;
    let (_server, address) = start_server(&server, "grpc-serve", PORT);
    let mut agent = capture_agent(&node, &state, &[PORT], &[]);
    let mark = agent.mark();

    let output = client
        .run(PEER, &["grpc-call", &address.to_string()])
        .unwrap();
    let printed = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        printed.lines().collect::<Vec<_>>(),
        [
            "Say olleh",
            "Say failed 5 no such thing",
            "Count item 0,item 1,item 2,item 3",
            "Sum 3",
            "Chat X,Y",
        ],
        "what the client received"
    );

    let calls = calls_since(&mut agent, mark, 5);
    for call in &calls {
        assert_eq!(call["method"], "POST", "{call}");
        assert_eq!(call["seen_at"], json!(["client", "server"]), "{call}");
        assert_eq!(call["flags"], json!([]), "{call}");
        assert_eq!(call["client"]["comm"], "rust-peer", "{call}");
        assert_eq!(call["server"]["comm"], "rust-peer", "{call}");
        let method = call["grpc"]["method"].as_str().unwrap();
        assert_eq!(call["path"], format!("/moat.rust.Echo/{method}"), "{call}");
    }
    let seen = grpc_summary(&calls, "moat.rust.Echo");
    assert_eq!(
        seen,
        vec![
            ("Chat".into(), 0, 2, 2),
            ("Count".into(), 0, 1, 4),
            ("Say".into(), 0, 1, 1),
            ("Say".into(), 5, 1, 0),
            ("Sum".into(), 0, 3, 1),
        ],
        "{calls:#?}"
    );
    let failed = calls
        .iter()
        .find(|call| call["grpc"]["status"] == 5)
        .unwrap();
    assert_eq!(failed["grpc"]["message"], "no such thing", "{failed}");

    let records = agent.stop();
    let stats = last_stats(&records);
    assert_eq!(stats["events_lost"], 0, "{stats}");
    assert_eq!(stats["calls_merged"], 5, "{stats}");
}
