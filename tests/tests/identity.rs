//! Identity end to end without Kubernetes: an inventory file names both ends of every captured
//! call and every drop, and a process in a kubelet-shaped cgroup is named by its pod.

use std::time::Duration;

use moat_e2e::{
    RunningAgent, Scratch, StateDir,
    capture::{calls_since, start_web_server},
    require_root, two_pods, write_atomically,
};

const INVENTORY: &str = "\
cluster: testbed
environment: staging
ranges:
  - name: partner-net
    kind: partner
    cidrs: [198.18.1.0/24, \"fd00:198:18:1::/64\"]
    owner: partners@example.com
    tags: {contract: c-42}
  - name: servers
    kind: pod-network
    cidrs: [198.18.2.0/24]
  - name: one-server
    kind: internal
    cidrs: [198.18.2.10/32]
";

#[test]
fn the_inventory_names_both_ends_of_calls_and_drops() {
    require_root();
    let (node, client, server) = two_pods("ident");
    let scratch = Scratch::new("inventory");
    let inventory = scratch.file("inventory.yaml");
    write_atomically(&inventory, INVENTORY);
    let policy = scratch.file("policy.yaml");
    write_atomically(
        &policy,
        "identities:\n  partners: { cidrs: [198.18.1.0/24] }\n  servers: { cidrs: [198.18.2.0/24] }\nrules:\n  - { name: no-18621, action: deny, from: partners, to: servers, ports: [18621], protocol: tcp }\n",
    );
    const PORT: u16 = 18620;
    let (_http, address) = start_web_server(&server, PORT);

    let state = StateDir::new();
    let inventory_arg = inventory.display().to_string();
    let policy_arg = policy.display().to_string();
    let mut agent = RunningAgent::start(
        &node,
        &state,
        &[],
        &[
            "--capture",
            "on",
            "--capture-port",
            "18620",
            "--inventory",
            &inventory_arg,
            "--policy",
            &policy_arg,
            "--iface-glob",
            "v*",
            "--kubernetes",
            "off",
        ],
    );
    let mark = agent.mark();
    client
        .run(
            "curl",
            &["-sS", "-o", "/dev/null", &format!("http://{address}/")],
        )
        .expect("curl the server");
    let calls = calls_since(&mut agent, mark, 1);
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = &calls[0];
    let client_end = &call["client"];
    assert_eq!(client_end["kind"], "range", "{call}");
    assert_eq!(client_end["range"], "partner-net");
    assert_eq!(client_end["range_kind"], "partner");
    assert_eq!(client_end["internal"], false);
    assert_eq!(client_end["tags"]["owner"], "partners@example.com");
    assert_eq!(client_end["tags"]["contract"], "c-42");
    assert!(
        client_end.get("cluster").is_none(),
        "a partner is not in our cluster: {call}"
    );
    let server_end = &call["server"];
    assert_eq!(server_end["kind"], "range", "{call}");
    assert_eq!(
        server_end["range"], "one-server",
        "the most specific range wins"
    );
    assert_eq!(server_end["range_kind"], "internal");
    assert_eq!(server_end["internal"], true);
    assert_eq!(server_end["environment"], "staging");

    // A drop names the same ends.
    let mark = agent.mark();
    let refused = client.run(
        "curl",
        &[
            "-sS",
            "--max-time",
            "1",
            "-o",
            "/dev/null",
            &format!("http://{}:18621/", server.ipv4),
        ],
    );
    assert!(
        refused.is_err(),
        "a denied connection cannot succeed: {refused:?}"
    );
    let denied = agent.wait_since(mark, Duration::from_secs(10), |record| {
        record["kind"] == "policy.denied"
    });
    assert_eq!(denied["rule"], "no-18621", "{denied}");
    assert_eq!(denied["source"]["range"], "partner-net", "{denied}");
    assert_eq!(denied["destination"]["range"], "one-server", "{denied}");
    assert_eq!(denied["destination"]["environment"], "staging", "{denied}");
    agent.stop();
}
