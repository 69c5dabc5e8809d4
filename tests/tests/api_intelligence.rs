//! API intelligence end to end: the Swagger Petstore's published spec bound to a server in a
//! testbed pod by the inventory file, real curl traffic captured by the agent, and the
//! endpoints and findings it reports; in block mode, the offending client's next connection is
//! dropped by XDP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{path::PathBuf, time::Duration};

use moat_e2e::{
    RunningAgent, Scratch, StateDir,
    capture::{assert_blocked, curl_status, start_peer_server},
    collector::{COLLECTOR_PORT, moat_json, start_collector},
    require_root, two_pods, write_atomically,
};
use serde_json::Value;
use testbed::Pod;

fn petstore_spec() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/corpora/openapi/petstore3.yaml");
    assert!(
        path.exists(),
        "{} is missing: the published specs are test data",
        path.display()
    );
    path
}

fn inventory(server: &Pod, port: u16, mode: &str) -> String {
    format!(
        "ranges:\n  - {{name: pets, kind: internal, cidrs: [{}/32], tags: {{team: pets}}}}\napis:\n  - name: petstore\n    spec: {}\n    servers: [{{address: {}/32, port: {port}}}]\n    mode: {mode}\n    unusedAfter: 3s\n    blockFor: 60s\n",
        server.ipv4,
        petstore_spec().display(),
        server.ipv4
    )
}

fn start_agent(
    node: &testbed::Node,
    state: &StateDir,
    inventory: &std::path::Path,
    port: u16,
) -> RunningAgent {
    let inventory = inventory.display().to_string();
    let port = port.to_string();
    RunningAgent::start(
        node,
        state,
        &[],
        &[
            "--capture",
            "on",
            "--capture-port",
            &port,
            "--inventory",
            &inventory,
            "--iface-glob",
            "v*",
            "--kubernetes",
            "off",
        ],
    )
}

fn findings(records: &[Value]) -> Vec<&Value> {
    records
        .iter()
        .filter(|record| record["kind"] == "api.finding")
        .collect()
}

fn of_kind<'a>(records: &'a [Value], kind: &str) -> Vec<&'a Value> {
    findings(records)
        .into_iter()
        .filter(|finding| finding["finding"] == kind)
        .collect()
}

#[test]
fn the_petstore_spec_judges_real_traffic() {
    require_root();
    let (node, client, server) = two_pods("spec");
    const PORT: u16 = 18650;
    let (_petstore, address) = start_peer_server(&server, "petstore_server.py", PORT);
    let scratch = Scratch::new("spec");
    let inventory_file = scratch.file("inventory.yaml");
    write_atomically(&inventory_file, &inventory(&server, PORT, "detect"));
    let state = StateDir::new();
    let mut agent = start_agent(&node, &state, &inventory_file, PORT);
    let loaded = agent.wait_for(Duration::from_secs(10), |record| {
        record["kind"] == "api.spec_loaded"
    });
    assert_eq!(loaded["api"], "petstore", "{loaded}");
    assert_eq!(loaded["operations"], 19, "{loaded}");

    let base = format!("http://{address}/api/v3");
    let pet = r#"{"id": 7, "name": "rex", "photoUrls": ["a.png"], "status": "sold"}"#;
    let mark = agent.mark();
    for args in [
        vec!["-H", "api_key: k", &format!("{base}/pet/10") as &str],
        vec![
            "-H",
            "Authorization: Bearer opaque",
            "-H",
            "Content-Type: application/json",
            "-d",
            pet,
            &format!("{base}/pet"),
        ],
        vec![
            "-H",
            "Authorization: Bearer opaque",
            &format!("{base}/pet/findByStatus?status=sold"),
        ],
    ] {
        assert_eq!(
            curl_status(&client, &args).as_deref(),
            Ok("200"),
            "{args:?}"
        );
    }
    let endpoint = agent.wait_since(mark, Duration::from_secs(10), |record| {
        record["kind"] == "api.endpoint" && record["endpoint"] == "/api/v3/pet/findByStatus"
    });
    assert_eq!(endpoint["service"], "petstore", "{endpoint}");
    assert_eq!(
        endpoint["documented"], "#/paths/~1pet~1findByStatus/get",
        "{endpoint}"
    );
    assert_eq!(
        endpoint["auth"],
        serde_json::json!(["bearer"]),
        "{endpoint}"
    );
    assert_eq!(
        endpoint["response_content_types"],
        serde_json::json!(["application/json"])
    );
    assert_eq!(
        endpoint["tags"]["team"], "pets",
        "the server's tags: {endpoint}"
    );
    let conforming = agent.records()[mark..].to_vec();
    let calls: Vec<&Value> = conforming
        .iter()
        .filter(|record| record["kind"] == "api.call")
        .collect();
    assert_eq!(calls.len(), 3, "{calls:?}");
    let mut templates: Vec<&str> = calls
        .iter()
        .map(|call| call["endpoint"].as_str().unwrap_or("?"))
        .collect();
    templates.sort();
    assert_eq!(
        templates,
        [
            "/api/v3/pet",
            "/api/v3/pet/findByStatus",
            "/api/v3/pet/{petId}"
        ]
    );
    let spec_findings: Vec<&Value> = findings(&conforming)
        .into_iter()
        .filter(|finding| {
            finding["finding"]
                .as_str()
                .is_some_and(|kind| kind.starts_with("spec.") && kind != "spec.unused_endpoint")
        })
        .collect();
    assert!(
        spec_findings.is_empty(),
        "conforming traffic gave {spec_findings:?}"
    );
    assert_eq!(of_kind(&conforming, "inventory.new_endpoint").len(), 3);

    let mark = agent.mark();
    let violations: [(&[&str], &str, &str); 4] = [
        (
            &[&format!("{base}/admin/export")],
            "spec.undocumented_endpoint",
            "#/paths",
        ),
        (
            &["-H", "api_key: k", &format!("{base}/pet/abc")],
            "spec.invalid_parameter",
            "#/paths/~1pet~1{petId}/get/parameters/0",
        ),
        (
            &[&format!("{base}/store/inventory")],
            "spec.missing_header",
            "#/paths/~1store~1inventory/get/security",
        ),
        (
            &["-H", "api_key: k", &format!("{base}/pet/666")],
            "spec.invalid_response_body",
            "#/components/schemas/Pet/properties/id",
        ),
    ];
    for (args, _, _) in &violations {
        curl_status(&client, args).expect("the server answers");
    }
    for (_, kind, pointer) in &violations {
        let found = agent.wait_since(mark, Duration::from_secs(10), |record| {
            record["finding"] == *kind
        });
        assert!(
            found["spec_pointer"]
                .as_str()
                .is_some_and(|got| got.ends_with(pointer)),
            "{kind}: {found}"
        );
        assert_eq!(found["service"], "petstore", "{found}");
        assert_eq!(found["source"]["ip"], client.ipv4.to_string(), "{found}");
        assert_eq!(found["mode"], "detect", "{found}");
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = agent.records()[mark..].to_vec();
    for (_, kind, _) in &violations {
        assert_eq!(
            of_kind(&after, kind).len(),
            1,
            "{kind} once per call: {:?}",
            of_kind(&after, kind)
        );
    }
    let evidence = of_kind(&after, "spec.invalid_parameter")[0]["evidence"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!evidence.contains("abc"), "evidence is masked: {evidence}");

    // Zombie endpoints: documented, never called within unusedAfter.
    let unused = agent.wait_for(Duration::from_secs(10), |record| {
        record["finding"] == "spec.unused_endpoint"
            && record["endpoint"] == "/user/{username}"
            && record["method"] == "DELETE"
    });
    assert_eq!(
        unused["spec_pointer"], "#/paths/~1user~1{username}/delete",
        "{unused}"
    );
    agent.stop();
}

#[test]
fn block_mode_drops_the_offending_source_next_connection() {
    require_root();
    let (node, client, server) = two_pods("specblock");
    const PORT: u16 = 18651;
    let (_petstore, address) = start_peer_server(&server, "petstore_server.py", PORT);
    let scratch = Scratch::new("specblock");
    let inventory_file = scratch.file("inventory.yaml");
    write_atomically(&inventory_file, &inventory(&server, PORT, "block"));
    let state = StateDir::new();
    let mut agent = start_agent(&node, &state, &inventory_file, PORT);
    agent.wait_for(Duration::from_secs(10), |record| {
        record["kind"] == "api.spec_loaded"
    });
    let base = format!("http://{address}/api/v3");
    assert_eq!(
        curl_status(&client, &["-H", "api_key: k", &format!("{base}/pet/1")]).as_deref(),
        Ok("200")
    );
    let mark = agent.mark();
    // The offending request reaches the server: the finding comes from its captured bytes.
    assert_eq!(
        curl_status(&client, &["-H", "api_key: k", &format!("{base}/pet/abc")]).as_deref(),
        Ok("404")
    );
    let finding = agent.wait_since(mark, Duration::from_secs(10), |record| {
        record["finding"] == "spec.invalid_parameter"
    });
    assert_eq!(finding["mode"], "block", "{finding}");
    let blocked = agent.wait_since(mark, Duration::from_secs(10), |record| {
        record["finding"] == "policy.blocked"
    });
    assert_eq!(
        blocked["source"]["ip"],
        client.ipv4.to_string(),
        "{blocked}"
    );
    assert_blocked(
        &mut agent,
        mark,
        &client,
        60,
        &["-H", "api_key: k", &format!("{base}/pet/1")],
    );
    agent.stop();
}

/// Polls `moat <args>` until `done` holds for its records.
fn wait_for_moat(
    node: &testbed::Node,
    args: &[&str],
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let records = moat_json(node, args);
        if done(&records) {
            return records;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "moat {args:?} never got there: {records:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn findings_endpoints_and_a_learned_spec_reach_the_cli_through_the_collector() {
    require_root();
    let (node, client, server) = two_pods("speccli");
    const PORT: u16 = 18652;
    let (_petstore, address) = start_peer_server(&server, "petstore_server.py", PORT);
    let scratch = Scratch::new("speccli");
    let database = scratch.file("moat.db");
    let _collector = start_collector(&node, &database, &[]);
    let inventory_file = scratch.file("inventory.yaml");
    write_atomically(&inventory_file, &inventory(&server, PORT, "detect"));
    let state = StateDir::new();
    let inventory_arg = inventory_file.display().to_string();
    let port = PORT.to_string();
    let collector_url = format!("http://127.0.0.1:{COLLECTOR_PORT}");
    let mut agent = RunningAgent::start(
        &node,
        &state,
        &[],
        &[
            "--capture",
            "on",
            "--capture-port",
            &port,
            "--inventory",
            &inventory_arg,
            "--kubernetes",
            "off",
            "--collector",
            &collector_url,
            "--export-interval",
            "200ms",
        ],
    );
    agent.wait_for(Duration::from_secs(10), |record| {
        record["kind"] == "api.spec_loaded"
    });
    let base = format!("http://{address}/api/v3");
    let pet = r#"{"id": 7, "name": "rex", "photoUrls": ["a.png"], "status": "sold"}"#;
    let traffic: Vec<Vec<String>> = vec![
        vec!["-H".into(), "api_key: k".into(), format!("{base}/pet/10")],
        vec!["-H".into(), "api_key: k".into(), format!("{base}/pet/11")],
        vec![
            "-H".into(),
            "Authorization: Bearer opaque".into(),
            "-H".into(),
            "Content-Type: application/json".into(),
            "-d".into(),
            pet.into(),
            format!("{base}/pet"),
        ],
        vec![
            "-H".into(),
            "Authorization: Bearer opaque".into(),
            format!("{base}/pet/findByStatus?status=sold"),
        ],
    ];
    let send = |calls: &[Vec<String>]| {
        for args in calls {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            assert_eq!(
                curl_status(&client, &args).as_deref(),
                Ok("200"),
                "{args:?}"
            );
        }
    };
    send(&traffic);
    assert_eq!(
        curl_status(&client, &["-H", "api_key: k", &format!("{base}/pet/abc")]).as_deref(),
        Ok("404")
    );

    let findings = wait_for_moat(
        &node,
        &["findings", "--kind", "spec.invalid_parameter"],
        |records| !records.is_empty(),
    );
    assert_eq!(findings[0]["service"], "petstore", "{findings:?}");
    assert_eq!(findings[0]["endpoint"], "/api/v3/pet/{petId}");
    assert_eq!(findings[0]["source"]["ip"], client.ipv4.to_string());
    assert!(
        findings[0]["evidence"]
            .as_str()
            .is_some_and(|evidence| !evidence.contains("abc"))
    );
    let info = moat_json(&node, &["findings", "--severity", "medium"]);
    assert!(
        info.iter()
            .all(|finding| finding["severity"] != "info" && finding["severity"] != "low"),
        "{info:?}"
    );
    let endpoints = wait_for_moat(&node, &["endpoints", "--service", "petstore"], |records| {
        records
            .iter()
            .map(|endpoint| endpoint["calls"].as_u64().unwrap_or(0))
            .sum::<u64>()
            >= 5
    });
    let pet_endpoint = endpoints
        .iter()
        .find(|endpoint| endpoint["endpoint"] == "/api/v3/pet/{petId}")
        .expect("the documented endpoint");
    assert_eq!(pet_endpoint["documented"], "#/paths/~1pet~1{petId}/get");
    assert_eq!(pet_endpoint["calls"], 3);

    // Who called, beyond the address: curl, with its API key's fingerprint, never the key.
    let callers = moat_json(
        &node,
        &[
            "callers",
            "--service",
            "petstore",
            "--endpoint",
            "/api/v3/pet/{",
        ],
    );
    assert!(!callers.is_empty(), "{callers:?}");
    for caller in &callers {
        assert_eq!(caller["application"], "curl", "{caller}");
        assert_eq!(caller["endpoint"], "/api/v3/pet/{petId}", "{caller}");
        let key = caller["api_key"].as_str().unwrap_or_default();
        assert!(key.starts_with('#') && key.len() == 17, "{caller}");
    }
    assert_eq!(
        callers
            .iter()
            .map(|caller| caller["calls"].as_u64().unwrap_or(0))
            .sum::<u64>(),
        3
    );

    // The agent's inventory reached the collector too: its declared range, this node.
    let known = wait_for_moat(&node, &["inventory"], |records| {
        records
            .iter()
            .any(|record| record["type"] == "range" && record["name"] == "pets")
    });
    assert!(
        known.iter().any(|record| record["type"] == "node"),
        "{known:?}"
    );

    // The spec learned from this traffic, bound back in place of the published one, accepts it.
    let learned = scratch.file("learned.yaml");
    let learned_arg = learned.display().to_string();
    let export = node
        .command(moat_e2e::built_binary("moat"))
        .args([
            "--collector",
            &collector_url,
            "spec",
            "export",
            "--service",
            "petstore",
            "--out",
            &learned_arg,
        ])
        .output()
        .expect("run moat spec export");
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let document: Value =
        serde_yaml::from_str(&std::fs::read_to_string(&learned).expect("written")).expect("YAML");
    assert_eq!(document["openapi"], "3.1.0");
    assert!(
        document["paths"]["/api/v3/pet/{petId}"]["get"].is_object(),
        "{document}"
    );
    let differences = moat_json(
        &node,
        &[
            "spec",
            "diff",
            "--service",
            "petstore",
            "--spec",
            &petstore_spec().display().to_string(),
        ],
    );
    assert!(
        differences
            .iter()
            .any(|difference| difference["kind"] == "unused_endpoint"
                && difference["endpoint"] == "/user/logout"),
        "{differences:?}"
    );

    let mark = agent.mark();
    write_atomically(
        &inventory_file,
        &inventory(&server, PORT, "detect")
            .replace(&petstore_spec().display().to_string(), &learned_arg),
    );
    let rebound = agent.wait_since(mark, Duration::from_secs(10), |record| {
        record["kind"] == "api.spec_loaded"
    });
    assert_eq!(rebound["file"], learned_arg, "{rebound}");
    let mark = agent.mark();
    send(&traffic);
    let calls = agent.wait_since(mark, Duration::from_secs(10), |record| {
        record["kind"] == "api.call" && record["path"] == "/api/v3/pet/findByStatus"
    });
    assert_eq!(calls["endpoint"], "/api/v3/pet/findByStatus");
    std::thread::sleep(Duration::from_millis(1000));
    let violations: Vec<&Value> = agent.records()[mark..]
        .iter()
        .filter(|record| {
            record["kind"] == "api.finding"
                && record["finding"]
                    .as_str()
                    .is_some_and(|kind| kind.starts_with("spec.") && kind != "spec.unused_endpoint")
        })
        .collect();
    assert!(
        violations.is_empty(),
        "the learned spec refuses its own traffic: {violations:?}"
    );
    agent.stop();
}
