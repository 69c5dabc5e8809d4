//! TLS handshake facts end to end: nginx serving TLS 1.2, TLS 1.3, mutual TLS and plain HTTP
//! in a server pod, curl and openssl s_client in a client pod, and the agent's `api.connection`
//! records and `crypto.*` findings compared with what each client did.
//!
//! Each test captures only its own ports (`--capture-port`), so tests running at once do not see
//! each other's connections.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use moat_e2e::{
    RunningAgent, Scratch, StateDir,
    capture::{capture_agent, curl_status},
    collector::{COLLECTOR_PORT, moat_json, start_collector},
    require_root,
    tls::{NginxServer, start_nginx, test_ca},
    two_pods,
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);

fn connection_to(agent: &mut RunningAgent, mark: usize, port: u16, what: &str) -> Value {
    let record = agent.wait_since(mark, WAIT, |record| {
        record["kind"] == "api.connection" && record["server"]["port"] == port
    });
    eprintln!("{what}: {record}");
    record
}

fn finding(agent: &mut RunningAgent, mark: usize, kind: &str, port: u16) -> Value {
    agent.wait_since(mark, WAIT, |record| {
        record["kind"] == "api.finding"
            && record["finding"] == kind
            && record["destination"]["port"] == port
    })
}

fn findings_since(agent: &mut RunningAgent, mark: usize, kind: &str) -> usize {
    agent.records()[mark..]
        .iter()
        .filter(|record| record["kind"] == "api.finding" && record["finding"] == kind)
        .count()
}

#[test]
fn handshakes_show_versions_names_certificates_and_mutual_tls_and_weak_offers_are_findings() {
    require_root();
    let (node, client, server) = two_pods("tls");
    const TLS: u16 = 18843;
    const MUTUAL: u16 = 18844;
    const PLAIN: u16 = 18845;
    let scratch = Scratch::new("tls-handshakes");
    let ca = test_ca(&scratch.0);
    // Valid 20 days: within the agent's default 30-day warning.
    let api = ca
        .issue(
            "api",
            "api.moat.test",
            &["DNS:api.moat.test", &format!("IP:{}", server.ipv4)],
            20,
        )
        .expect("issue the API's certificate");
    let caller = ca
        .issue("caller", "billing", &[], 20)
        .expect("issue the caller's certificate");
    let _nginx = start_nginx(
        &server,
        &scratch.0,
        &[
            NginxServer {
                port: TLS,
                certificate: Some(&api),
                protocols: "TLSv1 TLSv1.1 TLSv1.2 TLSv1.3",
                client_ca: None,
            },
            NginxServer {
                port: MUTUAL,
                certificate: Some(&api),
                // TLS 1.2: the CertificateRequest and the client's certificate travel in clear.
                protocols: "TLSv1.2",
                client_ca: Some(&ca.root.certificate),
            },
            NginxServer {
                port: PLAIN,
                certificate: None,
                protocols: "",
                client_ca: None,
            },
        ],
    );
    let inventory = scratch.file("inventory.yaml");
    std::fs::write(
        &inventory,
        format!(
            "ranges:\n  - {{name: pods, kind: pod-network, cidrs: [{}/32, {}/32]}}\n",
            client.ipv4, server.ipv4
        ),
    )
    .expect("write the inventory");
    let state = StateDir::new();
    let mut agent = capture_agent(
        &node,
        &state,
        &[TLS, MUTUAL, PLAIN],
        &[
            "--inventory",
            inventory.to_str().unwrap(),
            "--kubernetes",
            "off",
            "--new-endpoint-findings",
            "off",
            "--new-caller-findings",
            "off",
        ],
    );
    let resolve = |port: u16| format!("api.moat.test:{port}:{}", server.ipv4);
    let url = |port: u16| format!("https://api.moat.test:{port}/");
    let ca_file = ca.root.certificate();

    // TLS 1.3: the hellos in clear, the certificate not.
    let mark = agent.mark();
    let status = curl_status(
        &client,
        &[
            "--cacert",
            ca_file,
            "--resolve",
            &resolve(TLS),
            "--tlsv1.3",
            &url(TLS),
        ],
    );
    assert_eq!(status.as_deref(), Ok("200"));
    let record = connection_to(&mut agent, mark, TLS, "TLS 1.3");
    assert_eq!(record["protocol"], "tls");
    assert_eq!(record["encryption"], "tls");
    let tls = &record["tls"];
    assert_eq!(tls["server_name"], "api.moat.test");
    assert_eq!(tls["version"], "TLS 1.3");
    assert_eq!(
        tls["cipher_suite"]
            .as_str()
            .map(|suite| suite.starts_with("TLS_")),
        Some(true)
    );
    assert_eq!(tls["alpn_offered"][0], "h2");
    assert_eq!(tls["alpn_offered"][1], "http/1.1");
    assert!(
        tls.get("alpn").is_none(),
        "TLS 1.3 sends the choice encrypted"
    );
    assert!(
        tls.get("server_certificate").is_none(),
        "TLS 1.3 encrypts it"
    );
    assert_eq!(record["client"]["ip"], client.ipv4.to_string());
    assert_eq!(record["client"]["comm"], "curl");
    // curl reads and writes through libssl: the call is read as plaintext by the uprobes
    // (docs/tls-plaintext.md), once, and never from the ciphertext.
    agent.wait_since(mark, Duration::from_secs(10), |record| {
        record["kind"] == "api.call"
    });
    let calls: Vec<&Value> = agent.records()[mark..]
        .iter()
        .filter(|record| record["kind"] == "api.call")
        .collect();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["tls"], true, "{calls:?}");

    // TLS 1.2: the server's certificate in clear, expiring within the warning.
    let mark = agent.mark();
    let status = curl_status(
        &client,
        &[
            "--cacert",
            ca_file,
            "--resolve",
            &resolve(TLS),
            "--tls-max",
            "1.2",
            &url(TLS),
        ],
    );
    assert_eq!(status.as_deref(), Ok("200"));
    let record = connection_to(&mut agent, mark, TLS, "TLS 1.2");
    let tls = &record["tls"];
    assert_eq!(tls["version"], "TLS 1.2");
    assert_eq!(
        tls["alpn"], "http/1.1",
        "nginx without http2 picks http/1.1"
    );
    assert_eq!(tls["client_certificate_requested"], false);
    let certificate = &tls["server_certificate"];
    assert_eq!(certificate["subject"], "CN=api.moat.test,O=Moat Test");
    assert_eq!(certificate["dns_names"][0], "api.moat.test");
    assert_eq!(certificate["ip_addresses"][0], server.ipv4.to_string());
    let expiring = finding(&mut agent, mark, "crypto.cert_expiring", TLS);
    assert_eq!(expiring["rule"], "expiring");
    assert!(
        expiring["message"].as_str().unwrap().contains("in 19 days")
            || expiring["message"].as_str().unwrap().contains("in 20 days"),
        "{expiring}"
    );
    assert_eq!(findings_since(&mut agent, mark, "crypto.sni_mismatch"), 0);

    // A name the certificate does not carry.
    let mark = agent.mark();
    let status = curl_status(
        &client,
        &[
            "--insecure",
            "--resolve",
            &format!("billing.moat.test:{TLS}:{}", server.ipv4),
            "--tls-max",
            "1.2",
            &format!("https://billing.moat.test:{TLS}/"),
        ],
    );
    assert_eq!(status.as_deref(), Ok("200"));
    let mismatch = finding(&mut agent, mark, "crypto.sni_mismatch", TLS);
    assert!(
        mismatch["message"]
            .as_str()
            .unwrap()
            .contains("asked for billing.moat.test"),
        "{mismatch}"
    );

    // Mutual TLS: nginx requires the client's certificate.
    let mark = agent.mark();
    let status = curl_status(
        &client,
        &[
            "--cacert",
            ca_file,
            "--cert",
            caller.certificate(),
            "--key",
            caller.key(),
            "--resolve",
            &resolve(MUTUAL),
            &url(MUTUAL),
        ],
    );
    assert_eq!(status.as_deref(), Ok("200"));
    let record = connection_to(&mut agent, mark, MUTUAL, "mutual TLS");
    assert_eq!(record["encryption"], "mtls");
    assert_eq!(record["tls"]["client_certificate_requested"], true);
    assert_eq!(record["tls"]["client_certificate_sent"], true);

    // TLS 1.0 offered by a client that allows nothing better; whatever the server answers, the
    // offer alone is weak.
    let mark = agent.mark();
    let _ = client.run(
        "sh",
        &[
            "-c",
            &format!(
                "echo | timeout 5 openssl s_client -connect {}:{TLS} -servername api.moat.test \
                 -tls1 -cipher DEFAULT@SECLEVEL=0",
                server.ipv4
            ),
        ],
    );
    let weak = finding(&mut agent, mark, "crypto.weak_tls", TLS);
    assert_eq!(weak["rule"], "version");
    assert!(
        weak["message"]
            .as_str()
            .unwrap()
            .contains("client offered at most TLS 1.0"),
        "{weak}"
    );
    let record = connection_to(&mut agent, mark, TLS, "TLS 1.0 offer");
    assert_eq!(record["tls"]["offered_versions"][0], "TLS 1.0");

    // Python's ssl offering at most TLS 1.1 (its security level lowered so that OpenSSL 3 sends
    // the offer at all).
    let mark = agent.mark();
    let script = format!(
        "import socket, ssl\n\
         context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)\n\
         context.check_hostname = False\n\
         context.verify_mode = ssl.CERT_NONE\n\
         context.set_ciphers('DEFAULT@SECLEVEL=0')\n\
         context.minimum_version = ssl.TLSVersion.TLSv1\n\
         context.maximum_version = ssl.TLSVersion.TLSv1_1\n\
         sock = socket.create_connection(('{}', {TLS}), timeout=5)\n\
         try:\n    context.wrap_socket(sock, server_hostname='api.moat.test')\n\
         except (ssl.SSLError, OSError) as error:\n    print('refused:', error)\n",
        server.ipv4
    );
    let _ = client.run(moat_e2e::capture::PYTHON, &["-c", &script]);
    let record = connection_to(&mut agent, mark, TLS, "python TLS 1.1 offer");
    assert_eq!(
        record["client"]["comm"]
            .as_str()
            .map(|comm| comm.starts_with("python")),
        Some(true)
    );
    assert_eq!(record["tls"]["offered_versions"][0], "TLS 1.1");
    let weak = finding(&mut agent, mark, "crypto.weak_tls", TLS);
    assert!(
        weak["message"]
            .as_str()
            .unwrap()
            .contains("client offered at most TLS 1.1"),
        "{weak}"
    );

    // Plain HTTP between two pods of the pod network.
    let mark = agent.mark();
    let status = curl_status(&client, &[&format!("http://{}:{PLAIN}/", server.ipv4)]);
    assert_eq!(status.as_deref(), Ok("200"));
    let record = connection_to(&mut agent, mark, PLAIN, "plaintext");
    assert_eq!(record["encryption"], "plaintext");
    assert_eq!(record["protocol"], "http1");
    let plaintext = finding(&mut agent, mark, "crypto.plaintext_internal", PLAIN);
    assert_eq!(plaintext["rule"], "internal");
    assert_eq!(plaintext["severity"], "medium");
    // The same pair again within repeatAfter: one finding, one record per connection.
    let again = agent.mark();
    let status = curl_status(&client, &[&format!("http://{}:{PLAIN}/", server.ipv4)]);
    assert_eq!(status.as_deref(), Ok("200"));
    connection_to(&mut agent, again, PLAIN, "plaintext again");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        findings_since(&mut agent, again, "crypto.plaintext_internal"),
        0
    );

    // No TLS connection was taken for plaintext.
    let records = agent.stop();
    let plaintext_tls = records.iter().any(|record| {
        record["kind"] == "api.finding"
            && record["finding"] == "crypto.plaintext_internal"
            && record["destination"]["port"] != PLAIN
    });
    assert!(!plaintext_tls, "only the plain HTTP server is in clear");
    // Each connection once, though both of its ends are on this node.
    let mut connections: Vec<(String, u64)> = records
        .iter()
        .filter(|record| record["kind"] == "api.connection")
        .map(|record| {
            (
                record["client"]["ip"].to_string(),
                record["client"]["port"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let all = connections.len();
    connections.sort();
    connections.dedup();
    assert_eq!(connections.len(), all, "a connection reported twice");
    assert_eq!(all, 8, "the eight connections the clients made");
}

#[test]
fn the_service_map_shows_the_share_of_connections_in_clear_and_lists_the_pairs_in_clear() {
    require_root();
    let (node, client, server) = two_pods("tls-map");
    const TLS: u16 = 18846;
    const PLAIN: u16 = 18847;
    let scratch = Scratch::new("tls-map");
    let database = scratch.file("moat.db");
    let _collector = start_collector(&node, &database, &[]);
    let ca = test_ca(&scratch.0);
    let api = ca
        .issue("api", "api.moat.test", &["DNS:api.moat.test"], 365)
        .expect("issue the API's certificate");
    let _nginx = start_nginx(
        &server,
        &scratch.0,
        &[
            NginxServer {
                port: TLS,
                certificate: Some(&api),
                protocols: "TLSv1.2 TLSv1.3",
                client_ca: None,
            },
            NginxServer {
                port: PLAIN,
                certificate: None,
                protocols: "",
                client_ca: None,
            },
        ],
    );
    let state = StateDir::new();
    let collector_url = format!("http://127.0.0.1:{COLLECTOR_PORT}");
    let mut agent = capture_agent(
        &node,
        &state,
        &[TLS, PLAIN],
        &[
            "--collector",
            &collector_url,
            "--export-interval",
            "200ms",
            "--kubernetes",
            "off",
            "--new-endpoint-findings",
            "off",
            "--new-caller-findings",
            "off",
        ],
    );
    // One connection in clear, three in TLS, between the same two addresses.
    let mark = agent.mark();
    assert_eq!(
        curl_status(&client, &[&format!("http://{}:{PLAIN}/", server.ipv4)]).as_deref(),
        Ok("200")
    );
    for _ in 0..3 {
        let status = curl_status(
            &client,
            &[
                "--cacert",
                ca.root.certificate(),
                "--resolve",
                &format!("api.moat.test:{TLS}:{}", server.ipv4),
                &format!("https://api.moat.test:{TLS}/"),
            ],
        );
        assert_eq!(status.as_deref(), Ok("200"));
    }
    for _ in 0..4 {
        agent.wait_since(mark, WAIT, |record| record["kind"] == "api.connection");
    }
    let pair = |edge: &Value| {
        edge["client"] == client.ipv4.to_string() && edge["server"] == server.ipv4.to_string()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let edge = loop {
        let edges = moat_json(&node, &["map"]);
        if let Some(edge) = edges
            .iter()
            .find(|edge| pair(edge) && edge["connections"]["tls"] == 3 && edge["calls"] == 4)
        {
            break edge.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no edge with 3 TLS connections and 4 calls (1 in clear, 3 read through OpenSSL): {edges:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(edge["encryption"], "mixed", "{edge}");
    assert_eq!(edge["connections"]["plaintext"], 1, "{edge}");
    assert_eq!(edge["shares"]["plaintext"], 0.25, "{edge}");
    assert_eq!(edge["shares"]["tls"], 0.75, "{edge}");
    assert_eq!(
        edge["calls"], 4,
        "the call in clear, and the three over TLS read through OpenSSL's uprobes: {edge}"
    );
    assert_eq!(edge["encrypted"], false);
    let in_clear = moat_json(&node, &["map", "--plaintext"]);
    assert!(in_clear.iter().any(pair), "{in_clear:?}");
    assert!(
        in_clear
            .iter()
            .all(|edge| edge["connections"]["plaintext"].as_u64() > Some(0)),
        "{in_clear:?}"
    );
    agent.stop();
}
