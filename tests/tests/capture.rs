//! API call capture end to end: real servers and clients in testbed pods, the agent capturing
//! every process on the host, and its `api.call` records compared with the calls the test made
//! and with tshark's dissection of a capture of the same traffic.
//!
//! Each test captures only its own ports (`--capture-port`), so tests running at once do not see
//! each other's calls.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::Path,
    process::Command,
    time::Duration,
};

use moat_e2e::{
    RunningAgent, Scratch, StateDir,
    capture::{
        PYTHON, calls_since, capture_agent, flags_of_a_clean_call, grpc_summary, peer_script,
        start_peer_server, summary, wait_listening,
    },
    cgroup::TestCgroup,
    pcap::PacketCapture,
    require_root, two_pods,
};
use serde_json::Value;
use testbed::{Background, Pod};

fn header<'a>(message: &'a Value, name: &str) -> Option<&'a str> {
    message["headers"].as_array()?.iter().find_map(|header| {
        header["name"]
            .as_str()?
            .eq_ignore_ascii_case(name)
            .then(|| header["value"].as_str())
            .flatten()
    })
}

/// What tshark dissects in a capture of `port` as `dissector` (`http` or `http2`): (method,
/// target with query) of every request and every response status, both sorted. tshark lists the
/// fields of all messages in one packet together, comma-separated and in order, so methods and
/// targets stay aligned.
fn tshark_calls(capture: &Path, port: u16, dissector: &str) -> (Vec<(String, String)>, Vec<u64>) {
    let (filter, fields) = match dissector {
        "http" => (
            "http.request || http.response",
            [
                "http.request.method",
                "http.request.uri",
                "http.response.code",
            ],
        ),
        _ => (
            "http2.type == 1",
            [
                "http2.headers.method",
                "http2.headers.path",
                "http2.headers.status",
            ],
        ),
    };
    let mut command = Command::new("tshark");
    command.arg("-r").arg(capture).args([
        "-d",
        &format!("tcp.port=={port},{dissector}"),
        "-Y",
        filter,
        "-T",
        "fields",
    ]);
    for field in fields {
        command.args(["-e", field]);
    }
    let output = command.output().expect("run tshark");
    assert!(output.status.success(), "tshark: {output:?}");
    let (mut requests, mut statuses) = (Vec::new(), Vec::new());
    for line in String::from_utf8(output.stdout).unwrap().lines() {
        let columns: Vec<Vec<&str>> = line
            .split('\t')
            .map(|column| {
                column
                    .split(',')
                    .filter(|value| !value.is_empty())
                    .collect()
            })
            .collect();
        for (method, target) in columns[0].iter().zip(&columns[1]) {
            requests.push(((*method).to_owned(), (*target).to_owned()));
        }
        statuses.extend(
            columns[2]
                .iter()
                .map(|status| status.parse::<u64>().unwrap()),
        );
    }
    requests.sort();
    statuses.sort();
    (requests, statuses)
}

/// (method, path?query) of each call, sorted, and their statuses, sorted: what tshark reports.
fn requests_and_statuses(calls: &[Value]) -> (Vec<(String, String)>, Vec<u64>) {
    let mut requests: Vec<(String, String)> = calls
        .iter()
        .map(|call| {
            let target = match call["query"].as_str() {
                Some(query) => format!("{}?{query}", call["path"].as_str().unwrap()),
                None => call["path"].as_str().unwrap().to_owned(),
            };
            (call["method"].as_str().unwrap().to_owned(), target)
        })
        .collect();
    requests.sort();
    let mut statuses: Vec<u64> = calls
        .iter()
        .map(|call| call["status"].as_u64().unwrap())
        .collect();
    statuses.sort();
    (requests, statuses)
}

/// nghttpd (HTTP/2 over cleartext, prior knowledge) serving `root` on the server pod.
fn start_nghttpd(server: &Pod, root: &Path, port: u16) -> (Background, SocketAddr) {
    let address = SocketAddr::new(server.ipv4.into(), port);
    let process = server
        .spawn(
            "nghttpd",
            &[
                "--no-tls",
                "-d",
                &root.display().to_string(),
                "--address",
                &server.ipv4.to_string(),
                &port.to_string(),
            ],
        )
        .unwrap();
    wait_listening(server, address);
    (process, address)
}

#[test]
fn http1_calls_from_curl_to_python_match_what_was_sent_and_what_tshark_saw() {
    require_root();
    let (node, client, server) = two_pods("caph1");
    let state = StateDir::new();
    let scratch = Scratch::new("h1");
    const PORT: u16 = 18080;
    let (_server_process, address) = start_peer_server(&server, "http1_server.py", PORT);
    let mut agent = capture_agent(&node, &state, &[PORT], &[]);
    let tcpdump = PacketCapture::start(
        server.command("tcpdump"),
        "eth0",
        &scratch.file("h1.pcap"),
        &format!("tcp port {PORT}"),
    );
    let mark = agent.mark();

    let base = format!("http://{address}");
    // One connection, five calls one after another (keep-alive): Content-Length, chunked with a
    // trailer, a 1 MiB body, a 404, and a 204 without a body.
    let urls: Vec<String> = [
        "/small?lang=en",
        "/chunked",
        "/large",
        "/missing",
        "/nothing",
    ]
    .iter()
    .map(|path| format!("{base}{path}"))
    .collect();
    let mut curl = vec![
        "-sS",
        "--http1.1",
        "-H",
        "Authorization: Bearer supersecret",
    ];
    for url in &urls {
        curl.extend(["-o", "/dev/null", url.as_str()]);
    }
    client.run("curl", &curl).unwrap();
    client
        .run(
            "curl",
            &["-sS", "--http1.1", "-I", &format!("{base}/small")],
        )
        .unwrap();
    let upload = scratch.file("upload.bin");
    std::fs::write(&upload, vec![b'u'; 100_000]).unwrap();
    client
        .run(
            "curl",
            &[
                "-sS",
                "--http1.1",
                "-o",
                "/dev/null",
                "--data-binary",
                &format!("@{}", upload.display()),
                &format!("{base}/upload"),
            ],
        )
        .unwrap();

    let calls = calls_since(&mut agent, mark, 7);
    let pcap = tcpdump.stop();
    let expected = vec![
        ("GET".into(), "/chunked".into(), 200),
        ("GET".into(), "/large".into(), 200),
        ("GET".into(), "/missing".into(), 404),
        ("GET".into(), "/nothing".into(), 204),
        ("GET".into(), "/small".into(), 200),
        ("HEAD".into(), "/small".into(), 200),
        ("POST".into(), "/upload".into(), 201),
    ];
    assert_eq!(summary(&calls), expected, "{calls:#?}");

    // tshark read the same calls off the wire.
    assert_eq!(
        requests_and_statuses(&calls),
        tshark_calls(&pcap, PORT, "http")
    );

    let by_path: BTreeMap<(&str, &str), &Value> = calls
        .iter()
        .map(|call| {
            (
                (
                    call["method"].as_str().unwrap(),
                    call["path"].as_str().unwrap(),
                ),
                call,
            )
        })
        .collect();
    let small = by_path[&("GET", "/small")];
    assert_eq!(small["protocol"], "http1");
    assert_eq!(small["query"], "lang=en");
    assert_eq!(small["authority"], address.to_string());
    assert_eq!(small["server"]["ip"], server.ipv4.to_string());
    assert_eq!(small["server"]["port"], PORT);
    assert_eq!(small["client"]["ip"], client.ipv4.to_string());
    assert_eq!(small["client"]["comm"], "curl");
    assert_eq!(small["server"]["comm"], "python3");
    assert_eq!(small["seen_at"], serde_json::json!(["client", "server"]));
    assert_eq!(
        header(&small["request"], "authorization"),
        Some("[redacted]"),
        "credentials never leave the agent"
    );
    assert_eq!(header(&small["response"], "set-cookie"), Some("[redacted]"));
    assert_eq!(small["response"]["body_bytes"], 18);
    assert!(small["latency_us"].as_u64().is_some());
    let chunked = by_path[&("GET", "/chunked")];
    assert_eq!(chunked["response"]["body_bytes"], 6 + 13 + 5000);
    assert_eq!(
        chunked["response"]["trailers"][0]["name"]
            .as_str()
            .map(str::to_ascii_lowercase),
        Some("x-trailer".to_owned())
    );
    assert_eq!(
        by_path[&("GET", "/large")]["response"]["body_bytes"],
        1 << 20
    );
    assert_eq!(
        by_path[&("POST", "/upload")]["request"]["body_bytes"],
        100_000
    );
    assert_eq!(by_path[&("HEAD", "/small")]["response"]["body_bytes"], 0);
    for call in &calls {
        assert_eq!(call["flags"], flags_of_a_clean_call(call), "{call}");
        assert_eq!(call["request"]["complete"], true, "{call}");
        assert_eq!(call["response"]["complete"], true, "{call}");
    }

    let records = agent.stop();
    let stats = records
        .iter()
        .rfind(|record| record["kind"] == "agent.capture_stats")
        .expect("capture stats");
    assert_eq!(stats["events_lost"], 0, "{stats}");
    assert_eq!(stats["calls_merged"], 7, "{stats}");
}

/// Writes `requests` in one write, then reads until the server closes the connection.
fn pipelined(client: &Pod, address: SocketAddr, requests: &str) -> String {
    client
        .enter(|| {
            let mut stream = TcpStream::connect(address).unwrap();
            stream.write_all(requests.as_bytes()).unwrap();
            let mut response = Vec::new();
            stream.read_to_end(&mut response).unwrap();
            String::from_utf8_lossy(&response).into_owned()
        })
        .unwrap()
}

#[test]
fn pipelined_requests_to_nginx_pair_with_their_responses_in_order() {
    require_root();
    let (node, client, server) = two_pods("caph1p");
    let state = StateDir::new();
    let scratch = Scratch::new("nginx");
    const PORT: u16 = 18081;
    let root = scratch.file("www");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("index.html"), vec![b'i'; 3000]).unwrap();
    let config = scratch.file("nginx.conf");
    std::fs::write(
        &config,
        format!(
            "daemon off; worker_processes 1; pid {dir}/nginx.pid; error_log {dir}/error.log;\n\
             events {{}}\n\
             http {{ access_log off; sendfile on; client_body_temp_path {dir};\n\
               server {{ listen {ip}:{PORT}; root {root};\n\
                 location /api/ {{ return 200 \"ok\\n\"; }} }} }}\n",
            dir = scratch.0.display(),
            ip = server.ipv4,
            root = root.display(),
        ),
    )
    .unwrap();
    let nginx = server
        .spawn("nginx", &["-c", &config.display().to_string()])
        .unwrap();
    let address = SocketAddr::new(server.ipv4.into(), PORT);
    wait_listening(&server, address);
    let mut agent = capture_agent(&node, &state, &[PORT], &[]);
    let tcpdump = PacketCapture::start(
        server.command("tcpdump"),
        "eth0",
        &scratch.file("nginx.pcap"),
        &format!("tcp port {PORT}"),
    );
    let mark = agent.mark();

    let host = format!("Host: {address}\r\n");
    let requests = format!(
        "GET /api/first HTTP/1.1\r\n{host}\r\n\
         GET /index.html HTTP/1.1\r\n{host}\r\n\
         GET /nope HTTP/1.1\r\n{host}\r\n\
         GET /api/last?n=4 HTTP/1.1\r\n{host}Connection: close\r\n\r\n"
    );
    let response = pipelined(&client, address, &requests);
    assert_eq!(response.matches("HTTP/1.1 ").count(), 4, "{response}");

    let calls = calls_since(&mut agent, mark, 4);
    let pcap = tcpdump.stop();
    assert_eq!(
        requests_and_statuses(&calls),
        tshark_calls(&pcap, PORT, "http")
    );
    // Server and client both report them; each call is one record, in the order sent.
    let order: Vec<(&str, u64)> = calls
        .iter()
        .map(|call| {
            (
                call["path"].as_str().unwrap(),
                call["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            ("/api/first", 200),
            ("/index.html", 200),
            ("/nope", 404),
            ("/api/last", 200)
        ]
    );
    assert_eq!(calls[3]["query"], "n=4");
    assert_eq!(calls[1]["response"]["body_bytes"], 3000);
    // Both ends are on this host, so the kernel copies the bytes at one end only (the first to
    // connect or accept): the client, which reads every byte.
    for call in &calls {
        assert_eq!(call["flags"], serde_json::json!([]), "{call}");
        assert_eq!(
            call["seen_at"],
            serde_json::json!(["client", "server"]),
            "{call}"
        );
    }
    agent.stop();

    // Captured at nginx's end only: nginx sends the file with sendfile, so its bytes never pass
    // through the process. The call says its body was not seen, and counts it in full.
    let master = nginx.id().to_string();
    let workers = testbed::run(Command::new("pgrep").args(["-P", &master])).unwrap();
    let worker = String::from_utf8(workers.stdout).unwrap().trim().to_owned();
    let state = StateDir::new();
    let mut agent = RunningAgent::start(
        &node,
        &state,
        &[],
        &["--capture", "on", "--capture-pid", &worker],
    );
    let mark = agent.mark();
    let response = pipelined(
        &client,
        address,
        &format!("GET /index.html HTTP/1.1\r\n{host}Connection: close\r\n\r\n"),
    );
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let calls = calls_since(&mut agent, mark, 1);
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(calls[0]["seen_at"], serde_json::json!(["server"]));
    assert_eq!(calls[0]["response"]["body_bytes"], 3000);
    assert_eq!(calls[0]["flags"], serde_json::json!(["gap"]));
    let records = agent.stop();
    let stats = records
        .iter()
        .rfind(|record| record["kind"] == "agent.capture_stats")
        .unwrap();
    assert_eq!(stats["bytes_from_file"], 3000, "{stats}");
}

#[test]
fn http2_prior_knowledge_and_upgrade_calls_are_recorded_per_stream() {
    require_root();
    let (node, client, server) = two_pods("caph2");
    let state = StateDir::new();
    let scratch = Scratch::new("h2");
    const PORT: u16 = 18443;
    let root = scratch.file("www");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("a.txt"), b"alpha\n").unwrap();
    std::fs::write(root.join("b.txt"), vec![b'b'; 70_000]).unwrap();
    let (_nghttpd, address) = start_nghttpd(&server, &root, PORT);
    let mut agent = capture_agent(&node, &state, &[PORT], &[]);
    let tcpdump = PacketCapture::start(
        server.command("tcpdump"),
        "eth0",
        &scratch.file("h2.pcap"),
        &format!("tcp port {PORT}"),
    );
    let mark = agent.mark();

    let base = format!("http://{address}");
    // Three streams on one connection, opened at once.
    client
        .run(
            "nghttp",
            &[
                "-n",
                &format!("{base}/a.txt"),
                &format!("{base}/b.txt?x=1"),
                &format!("{base}/missing"),
            ],
        )
        .unwrap();
    let calls = calls_since(&mut agent, mark, 3);
    assert_eq!(
        summary(&calls),
        vec![
            ("GET".into(), "/a.txt".into(), 200),
            ("GET".into(), "/b.txt".into(), 200),
            ("GET".into(), "/missing".into(), 404),
        ],
        "{calls:#?}"
    );
    for call in &calls {
        assert_eq!(call["protocol"], "http2", "{call}");
        assert_eq!(call["flags"], flags_of_a_clean_call(call), "{call}");
        assert_eq!(call["server"]["comm"], "nghttpd", "{call}");
        assert_eq!(call["client"]["comm"], "nghttp", "{call}");
        assert!(call["stream_id"].as_u64().unwrap() % 2 == 1, "{call}");
    }
    let b = calls.iter().find(|call| call["path"] == "/b.txt").unwrap();
    assert_eq!(b["query"], "x=1");
    assert_eq!(b["response"]["body_bytes"], 70_000);
    let pcap = tcpdump.stop();
    assert_eq!(
        requests_and_statuses(&calls),
        tshark_calls(&pcap, PORT, "http2")
    );

    // HTTP/1.1 Upgrade to h2c (curl --http2 on an http:// URL): the first request is HTTP/1.1
    // and is answered as HTTP/2 stream 1; the second is an ordinary stream on the same
    // connection.
    const UPGRADE_PORT: u16 = 18445;
    let upgrade_address = SocketAddr::new(server.ipv4.into(), UPGRADE_PORT);
    let _upgrade_server = server
        .spawn(
            PYTHON,
            &[
                &peer_script("h2c_upgrade_server.py"),
                &server.ipv4.to_string(),
                &UPGRADE_PORT.to_string(),
            ],
        )
        .unwrap();
    wait_listening(&server, upgrade_address);
    agent.stop();
    let state = StateDir::new();
    let mut agent = capture_agent(&node, &state, &[UPGRADE_PORT], &[]);
    let mark = agent.mark();
    let upgrade_base = format!("http://{upgrade_address}");
    client
        .run(
            "curl",
            &[
                "-sS",
                "--http2",
                "-o",
                "/dev/null",
                "-o",
                "/dev/null",
                &format!("{upgrade_base}/up/first"),
                &format!("{upgrade_base}/up/second"),
            ],
        )
        .unwrap();
    let calls = calls_since(&mut agent, mark, 2);
    let mut streams: Vec<(u64, &str, u64)> = calls
        .iter()
        .map(|call| {
            assert_eq!(call["protocol"], "http2", "{call}");
            assert_eq!(call["flags"], serde_json::json!([]), "{call}");
            (
                call["stream_id"].as_u64().unwrap(),
                call["path"].as_str().unwrap(),
                call["status"].as_u64().unwrap(),
            )
        })
        .collect();
    streams.sort();
    assert_eq!(streams, [(1, "/up/first", 200), (3, "/up/second", 200)]);
    agent.stop();
}

#[test]
fn grpc_unary_and_streaming_calls_carry_service_method_status_and_message_counts() {
    require_root();
    let (node, client, server) = two_pods("capgrpc");
    let state = StateDir::new();
    const PORT: u16 = 18500;
    let address = SocketAddr::new(server.ipv4.into(), PORT);
    let _server = server
        .spawn(
            PYTHON,
            &[&peer_script("grpc_peer.py"), "serve", &address.to_string()],
        )
        .unwrap();
    wait_listening(&server, address);
    let mut agent = capture_agent(&node, &state, &[PORT], &[]);
    let scratch = Scratch::new("grpc");
    let tcpdump = PacketCapture::start(
        server.command("tcpdump"),
        "eth0",
        &scratch.file("grpc.pcap"),
        &format!("tcp port {PORT}"),
    );
    let mark = agent.mark();
    let output = client
        .run(
            PYTHON,
            &[&peer_script("grpc_peer.py"), "call", &address.to_string()],
        )
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        printed.contains("Unary failed StatusCode.NOT_FOUND"),
        "{printed}"
    );

    let calls = calls_since(&mut agent, mark, 5);
    let pcap = tcpdump.stop();
    assert_eq!(
        requests_and_statuses(&calls),
        tshark_calls(&pcap, PORT, "http2")
    );
    let seen = grpc_summary(&calls, "moat.test.Echo");
    assert_eq!(
        seen,
        vec![
            ("Bidi".into(), 0, 2, 2),
            ("ClientStream".into(), 0, 3, 1),
            ("ServerStream".into(), 0, 1, 4),
            ("Unary".into(), 0, 1, 1),
            ("Unary".into(), 5, 1, 0),
        ]
    );
    let failed = calls
        .iter()
        .find(|call| call["grpc"]["status"] == 5)
        .unwrap();
    assert_eq!(failed["grpc"]["message"], "no such thing");
    agent.stop();
}

/// Sends one HTTP/1.1 request with a Content-Length response on `stream`; returns the status.
fn exchange(stream: &mut TcpStream, path: &str) -> u16 {
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0; length];
    stream.read_exact(&mut body).unwrap();
    head[9..12].parse().unwrap()
}

#[test]
fn a_connection_opened_before_the_agent_started_is_reported_and_flagged_mid_stream() {
    require_root();
    let (node, client, server) = two_pods("capmid");
    let state = StateDir::new();
    const PORT: u16 = 18082;
    let (_server, address) = start_peer_server(&server, "http1_server.py", PORT);
    let mut stream = client
        .enter(|| TcpStream::connect(address))
        .unwrap()
        .unwrap();
    assert_eq!(exchange(&mut stream, "/small"), 200);

    let mut agent = capture_agent(&node, &state, &[PORT], &[]);
    let mark = agent.mark();
    assert_eq!(exchange(&mut stream, "/missing?after=start"), 404);
    drop(stream);
    let calls = calls_since(&mut agent, mark, 1);
    assert_eq!(calls.len(), 1, "{calls:#?}");
    let call = &calls[0];
    assert_eq!(call["path"], "/missing");
    assert_eq!(call["status"], 404);
    assert_eq!(call["flags"], serde_json::json!(["mid_stream"]));
    // Found through /proc at start-up, so the process is known (the test's own, and python).
    assert_eq!(call["server"]["comm"], "python3", "{call}");
    assert_eq!(call["seen_at"], serde_json::json!(["client", "server"]));
    agent.stop();
}

/// RSS of a process, from /proc.
fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn hostile_bytes_never_stop_the_agent_and_its_memory_stays_bounded() {
    require_root();
    let (node, client, server) = two_pods("capbad");
    let state = StateDir::new();
    const PORT: u16 = 18083;
    const CONNECTION_BYTES: usize = 256 * 1024;
    let (_server, address) = start_peer_server(&server, "http1_server.py", PORT);
    let mut agent = capture_agent(
        &node,
        &state,
        &[PORT],
        &["--capture-max-connection-bytes", "262144"],
    );
    let send = |bytes: Vec<u8>, pace: Option<Duration>| {
        client
            .enter(move || {
                let Ok(mut stream) = TcpStream::connect(address) else {
                    return;
                };
                match pace {
                    Some(pause) => {
                        for byte in bytes {
                            if stream.write_all(&[byte]).is_err() {
                                return;
                            }
                            std::thread::sleep(pause);
                        }
                    }
                    None => {
                        let _ = stream.write_all(&bytes);
                    }
                }
                let _ = stream.shutdown(std::net::Shutdown::Write);
                let mut sink = Vec::new();
                let _ = stream.read_to_end(&mut sink);
            })
            .unwrap();
    };
    // Random bytes, seeded so a failure can be replayed.
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let random: Vec<u8> = (0..200_000)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect();
    send(random, None);
    // A 1 MiB header line, past every per-connection bound.
    let mut huge = b"GET /small HTTP/1.1\r\nX-Huge: ".to_vec();
    huge.extend(std::iter::repeat_n(b'h', 1 << 20));
    huge.extend(b"\r\n\r\n");
    send(huge, None);
    // Truncated and malformed heads.
    send(
        b"GET /small HTTP/1.1\r\nHost: x\r\nContent-Le".to_vec(),
        None,
    );
    send(
        b"GET /small HTTP/9.9\r\n\0\0\0\r\n\r\nPOST\r\n".to_vec(),
        None,
    );
    send(
        b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzzzz\r\n".to_vec(),
        None,
    );
    // An HTTP/2 preface, then a HEADERS frame that asks for a 4 GiB HPACK table and refers to
    // entries that do not exist, then frames with absurd lengths.
    let mut h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    h2.extend([0, 0, 0, 4, 0, 0, 0, 0, 0]);
    let block = [
        0x3f, 0xe1, 0xff, 0xff, 0xff, 0x0f, 0xff, 0xff, 0xff, 0x7f, 0xbe,
    ];
    h2.extend([0, 0, block.len() as u8, 1, 5, 0, 0, 0, 1]);
    h2.extend(block);
    h2.extend([0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 3]);
    h2.extend(std::iter::repeat_n(0xaa, 50_000));
    send(h2, None);
    // Slowloris: a head one byte at a time.
    send(
        b"GET /small HTTP/1.1\r\nHost: slow\r\nX-A: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n"
            .to_vec(),
        Some(Duration::from_millis(5)),
    );

    // The agent still works: a normal call afterwards is recorded.
    let mark = agent.mark();
    let mut stream = client
        .enter(|| TcpStream::connect(address))
        .unwrap()
        .unwrap();
    assert_eq!(exchange(&mut stream, "/small?after=abuse"), 200);
    drop(stream);
    let calls = calls_since(&mut agent, mark, 1);
    assert!(
        calls
            .iter()
            .any(|call| call["query"] == "after=abuse" && call["status"] == 200),
        "{calls:#?}"
    );
    assert!(
        resident_kib(agent.pid()) < 256 * 1024,
        "agent RSS {} KiB",
        resident_kib(agent.pid())
    );
    let records = agent.stop();
    for stats in records
        .iter()
        .filter(|record| record["kind"] == "agent.capture_stats")
    {
        let connections = stats["connections"].as_u64().unwrap().max(1);
        assert!(
            stats["held_bytes"].as_u64().unwrap() <= connections * CONNECTION_BYTES as u64,
            "{stats}"
        );
    }
}

#[test]
fn many_concurrent_connections_give_one_record_per_request() {
    require_root();
    let (node, client, server) = two_pods("capload");
    let state = StateDir::new();
    let scratch = Scratch::new("load");
    const PORT: u16 = 18444;
    const REQUESTS: usize = 600;
    let root = scratch.file("www");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("item.json"), br#"{"id": 1}"#).unwrap();
    let (_nghttpd, address) = start_nghttpd(&server, &root, PORT);
    let mut agent = capture_agent(&node, &state, &[PORT], &[]);
    let mark = agent.mark();
    let output = client
        .run(
            "h2load",
            &[
                "-n",
                &REQUESTS.to_string(),
                "-c",
                "30",
                "-m",
                "4",
                &format!("http://{address}/item.json"),
            ],
        )
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        report.contains(&format!("{REQUESTS} succeeded")),
        "{report}"
    );

    let calls = calls_since(&mut agent, mark, REQUESTS);
    assert_eq!(calls.len(), REQUESTS);
    for call in &calls {
        assert_eq!(call["path"], "/item.json");
        assert_eq!(call["status"], 200);
        assert_eq!(
            call["seen_at"],
            serde_json::json!(["client", "server"]),
            "{call}"
        );
    }
    let records = agent.stop();
    let stats = records
        .iter()
        .rfind(|record| record["kind"] == "agent.capture_stats")
        .unwrap();
    assert_eq!(stats["events_lost"], 0, "{stats}");
    assert_eq!(
        stats["connections_opened"], 60,
        "both ends of 30 connections: {stats}"
    );
}

#[test]
fn only_tcp_of_the_chosen_process_or_cgroup_leaves_the_kernel() {
    require_root();
    let (node, client, server) = two_pods("capfilter");
    let scratch = Scratch::new("filter");
    const PORT: u16 = 18084;
    let (server_process, address) = start_peer_server(&server, "http1_server.py", PORT);

    let run_noisy_client = |agent_args: &dyn Fn(u32) -> Vec<String>| {
        let mut noisy = testbed::spawn(
            client
                .command(PYTHON)
                .args([
                    &peer_script("noisy_client.py"),
                    &address.ip().to_string(),
                    &PORT.to_string(),
                ])
                .arg(&scratch.0)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped()),
        )
        .unwrap();
        let state = StateDir::new();
        let args = agent_args(noisy.id());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut agent = RunningAgent::start(&node, &state, &[], &args);
        let mark = agent.mark();
        noisy
            .child_mut()
            .stdin
            .take()
            .unwrap()
            .write_all(b"go\n")
            .unwrap();
        let mut done = String::new();
        noisy
            .child_mut()
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut done)
            .unwrap();
        assert_eq!(done.trim(), "done");
        let calls = calls_since(&mut agent, mark, 1);
        let records = agent.stop();
        let stats = records
            .iter()
            .rfind(|record| record["kind"] == "agent.capture_stats")
            .unwrap()
            .clone();
        (calls, stats)
    };

    // By process: only the noisy client's TCP connection is captured, not its files, pipe,
    // unix socket or UDP, and not the server's end (another process).
    let (calls, stats) = run_noisy_client(&|pid| {
        vec![
            "--capture".into(),
            "on".into(),
            "--capture-pid".into(),
            pid.to_string(),
        ]
    });
    assert_eq!(summary(&calls), [("GET".into(), "/over-tcp".into(), 404)]);
    assert_eq!(calls[0]["seen_at"], serde_json::json!(["client"]));
    assert_eq!(stats["connections_opened"], 1, "{stats}");

    // By cgroup: the server in its own cgroup; only its end is captured.
    let cgroup = TestCgroup::create(&format!("moat-capfilter-{}", std::process::id()));
    cgroup.add(server_process.id());
    let cgroup_name = cgroup.name();
    let (calls, stats) = run_noisy_client(&|_| {
        vec![
            "--capture".into(),
            "on".into(),
            "--capture-cgroup".into(),
            cgroup_name.clone(),
        ]
    });
    assert_eq!(summary(&calls), [("GET".into(), "/over-tcp".into(), 404)]);
    assert_eq!(calls[0]["seen_at"], serde_json::json!(["server"]));
    assert_eq!(calls[0]["server"]["cgroup_id"], cgroup.id());
    assert_eq!(stats["connections_opened"], 1, "{stats}");
}
