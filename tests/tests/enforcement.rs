//! XDP enforcement on the namespace testbed, with real connections: rules, replies, blocklists,
//! isolation, IPv6, precedence, rate limits, counters, reloads, restarts and cleanup.

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use moat_e2e::{
    RunningAgent, StateDir, require_root,
    traffic::{TcpServer, UdpCounter, UdpStream, tcp_works, udp_send},
    write_atomically,
};
use serde_json::Value;
use testbed::{Node, Pod, PodSpec};

struct Cluster {
    node: Node,
    frontend: Pod,
    api: Pod,
    db: Pod,
    other: Pod,
    directory: PathBuf,
}

impl Cluster {
    fn new(label: &str) -> Self {
        let mut node = Node::new(label).expect("node");
        let mut pod = |name: &str, subnet: u8| {
            node.add_pod(PodSpec::new(
                name,
                &format!("198.18.{subnet}.10/24"),
                &format!("fd00:198:18:{subnet}::10/64"),
            ))
            .expect("pod")
        };
        let frontend = pod("frontend", 1);
        let api = pod("api", 2);
        let db = pod("db", 3);
        let other = pod("other", 4);
        let directory = std::env::temp_dir().join(format!("moat-{label}-{}", std::process::id()));
        std::fs::create_dir_all(&directory).expect("policy directory");
        Self {
            node,
            frontend,
            api,
            db,
            other,
            directory,
        }
    }

    fn interfaces(&self) -> Vec<&str> {
        [&self.frontend, &self.api, &self.db, &self.other]
            .iter()
            .map(|pod| pod.host_interface.as_str())
            .collect()
    }

    /// Writes the policy file (and extra files beside it) and returns its path.
    fn policy(&self, text: &str) -> PathBuf {
        let path = self.directory.join("policy.yaml");
        write_atomically(&path, text);
        path
    }

    fn agent(&self, state: &StateDir, policy: &Path, extra: &[&str]) -> RunningAgent {
        let mut args = vec!["--policy", policy.to_str().expect("utf-8 path")];
        args.extend_from_slice(extra);
        RunningAgent::start(&self.node, state, &self.interfaces(), &args)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

const IDENTITIES: &str = r#"
identities:
  frontend: { cidrs: ["198.18.1.10/32", "fd00:198:18:1::10/128"] }
  api:      { cidrs: ["198.18.2.0/24", "fd00:198:18:2::/64"] }
  db:       { cidrs: ["198.18.3.10/32", "fd00:198:18:3::10/128"] }
"#;

/// The identities and one rule: frontend may not send UDP to api's port 7777.
fn deny_udp_7777() -> String {
    format!(
        "{IDENTITIES}rules:
  - {{ name: no-udp-7777, action: deny, from: frontend, to: api, protocol: udp, ports: [7777] }}
"
    )
}

fn at(pod: &Pod, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(pod.ipv4), port)
}

fn at6(pod: &Pod, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V6(pod.ipv6), port)
}

fn is_denial(record: &Value, reason: &str, rule: &str, dst_port: u16) -> bool {
    record["kind"] == "policy.denied"
        && record["reason"] == reason
        && (rule.is_empty() || record["rule"] == rule)
        && record["dst_port"] == dst_port
}

#[test]
fn deny_rules_stop_new_connections_but_not_replies_over_both_families_with_tcx() {
    deny_rules_stop_new_connections_but_not_replies(HOOK_TCX);
}

#[test]
fn deny_rules_stop_new_connections_but_not_replies_over_both_families_with_xdp() {
    deny_rules_stop_new_connections_but_not_replies(HOOK_XDP);
}

const HOOK_TCX: &str = "tcx";
const HOOK_XDP: &str = "xdp";

fn deny_rules_stop_new_connections_but_not_replies(hook: &str) {
    require_root();
    let cluster = Cluster::new(&format!("deny{hook}"));
    let policy = cluster.policy(&format!(
        "{IDENTITIES}rules:
  - {{ name: frontend-not-to-db, action: deny, from: frontend, to: db, protocol: tcp, ports: [5432] }}
  - {{ name: api-not-to-frontend, action: deny, from: api, to: frontend }}
  - {{ name: no-8443-to-api, action: deny, from: any, to: api, protocol: tcp, ports: [8443] }}
"
    ));
    let state = StateDir::new();
    let mut agent = cluster.agent(&state, &policy, &["--hook", hook]);
    let ready = agent.seen_ready().expect("ready").clone();
    assert!(
        ready["interfaces"]
            .as_array()
            .expect("interfaces")
            .iter()
            .all(|interface| interface["hook"] == hook),
        "{ready}"
    );
    let (frontend, api, db) = (&cluster.frontend, &cluster.api, &cluster.db);
    let _db_5432 = TcpServer::start(db, IpAddr::V4(db.ipv4), 5432);
    let _db_5433 = TcpServer::start(db, IpAddr::V4(db.ipv4), 5433);
    let _api_8080 = TcpServer::start(api, IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), 8080);
    let _api_8443 = TcpServer::start(api, IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), 8443);
    let _frontend_9000 = TcpServer::start(frontend, IpAddr::V4(frontend.ipv4), 9000);

    assert!(!tcp_works(frontend, at(db, 5432)), "the denied port");
    assert!(
        tcp_works(frontend, at(db, 5433)),
        "other ports of db stay open"
    );
    // api may not start connections to frontend, but its answers to frontend's connections are
    // replies on a tracked connection, and pass.
    assert!(
        tcp_works(frontend, at(api, 8080)),
        "replies from api reach frontend"
    );
    assert!(tcp_works(frontend, at6(api, 8080)), "and over IPv6");
    assert!(
        !tcp_works(api, at(frontend, 9000)),
        "api initiating to frontend"
    );
    assert!(!tcp_works(frontend, at6(api, 8443)), "a deny over IPv6");
    assert!(!tcp_works(db, at(api, 8443)), "a deny from any source");

    let frontend_v4 = frontend.ipv4.to_string();
    let frontend_interface = frontend.host_interface.clone();
    let denial = agent.wait_for(Duration::from_secs(5), |record| {
        is_denial(record, "rule", "frontend-not-to-db", 5432)
    });
    assert_eq!(denial["src"], frontend_v4.as_str());
    assert_eq!(denial["dst"], db.ipv4.to_string().as_str());
    assert_eq!(denial["protocol"], "tcp");
    assert_eq!(denial["interface"], frontend_interface.as_str());
    agent.wait_for(Duration::from_secs(5), |record| {
        is_denial(record, "rule", "api-not-to-frontend", 9000)
    });
    let v6 = agent.wait_for(Duration::from_secs(5), |record| {
        is_denial(record, "rule", "no-8443-to-api", 8443)
    });
    assert!(
        v6["src"].as_str().is_some_and(|src| src.contains(':')),
        "{v6}"
    );
    // A SYN retried by the kernel within a second gives no second event for the same flow.
    let events_for_5432 = agent
        .records()
        .iter()
        .filter(|record| is_denial(record, "rule", "frontend-not-to-db", 5432))
        .count();
    assert_eq!(events_for_5432, 1, "one event per flow per second");
    agent.stop();
    state.cleanup();
}

#[test]
fn blocklist_files_and_isolation() {
    require_root();
    let cluster = Cluster::new("isolate");
    std::fs::write(
        cluster.directory.join("blocklist.txt"),
        format!(
            "# scanners\n198.19.66.0/24\n{}   # the other pod\n",
            cluster.other.ipv4
        ),
    )
    .expect("blocklist");
    let policy = cluster.policy(&format!(
        "{IDENTITIES}blocklist: {{ files: [blocklist.txt] }}
isolate: [db]
rules:
  - {{ name: frontend-to-db, action: allow, from: frontend, to: db, protocol: tcp, ports: [5432] }}
"
    ));
    let state = StateDir::new();
    let mut agent = cluster.agent(&state, &policy, &[]);
    let (frontend, api, db, other) = (&cluster.frontend, &cluster.api, &cluster.db, &cluster.other);
    let _db = TcpServer::start(db, IpAddr::V4(db.ipv4), 5432);
    let _api = TcpServer::start(api, IpAddr::V4(api.ipv4), 8080);

    assert!(!tcp_works(other, at(api, 8080)), "a blocklisted source");
    assert!(
        other
            .run("ping", &["-c", "1", "-W", "1", &api.ipv4.to_string()])
            .is_err()
    );
    assert!(
        other
            .run("ping", &["-c", "1", "-W", "1", &api.ipv6.to_string()])
            .is_ok(),
        "only the listed IPv4 address is blocked"
    );
    assert!(tcp_works(frontend, at(db, 5432)), "allow beats isolate");
    assert!(
        !tcp_works(api, at(db, 5432)),
        "isolate drops what no allow matches"
    );
    assert!(tcp_works(db, at(api, 8080)), "isolation is ingress only");
    agent.wait_for(Duration::from_secs(5), |record| {
        is_denial(record, "blocklist", "", 8080)
    });
    let isolated = agent.wait_for(Duration::from_secs(5), |record| {
        is_denial(record, "isolate", "", 5432)
    });
    assert!(isolated.get("rule").is_none(), "{isolated}");
    agent.stop();
    state.cleanup();
}

#[test]
fn the_most_specific_cidr_decides_who_a_source_is() {
    require_root();
    let cluster = Cluster::new("overlap");
    let policy = cluster.policy(
        r#"
identities:
  corp:     { cidrs: ["198.18.0.0/16"] }
  frontend: { cidrs: ["198.18.1.0/24"] }
  db:       { cidrs: ["198.18.3.10/32"] }
rules:
  - { name: corp-not-to-db, action: deny, from: corp, to: db }
  - { name: frontend-to-db, action: allow, from: frontend, to: db }
"#,
    );
    let state = StateDir::new();
    let agent = cluster.agent(&state, &policy, &[]);
    let _db = TcpServer::start(&cluster.db, IpAddr::V4(cluster.db.ipv4), 5432);
    assert!(
        tcp_works(&cluster.frontend, at(&cluster.db, 5432)),
        "frontend's /24 beats corp's /16"
    );
    assert!(
        !tcp_works(&cluster.api, at(&cluster.db, 5432)),
        "api is only in corp"
    );
    agent.stop();
    state.cleanup();
}

fn metric(exposition: &str, series: &str) -> Option<u64> {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn verdict_counters_equal_the_packets_sent() {
    require_root();
    let cluster = Cluster::new("counters");
    let policy = cluster.policy(&format!(
        "{IDENTITIES}rules:
  - {{ name: no-udp-7777, action: deny, from: frontend, to: api, protocol: udp, ports: [7777] }}
  - {{ name: udp-7778, action: allow, from: frontend, to: api, protocol: udp, ports: [7778] }}
"
    ));
    let state = StateDir::new();
    let agent = cluster.agent(&state, &policy, &["--metrics-addr", "127.0.0.1:9464"]);
    let (frontend, api) = (&cluster.frontend, &cluster.api);
    let allowed = UdpCounter::start(api, IpAddr::V4(api.ipv4), 7778);
    let denied = UdpCounter::start(api, IpAddr::V4(api.ipv4), 7777);
    frontend
        .run("ping", &["-c", "1", &api.ipv4.to_string()])
        .expect("resolve neighbours");
    const PAYLOAD: usize = 64;
    let frame = 14 + 20 + 8 + PAYLOAD as u64;
    assert_eq!(
        udp_send(frontend, denied.address, 300, PAYLOAD, Duration::ZERO),
        300
    );
    assert_eq!(
        udp_send(
            frontend,
            allowed.address,
            200,
            PAYLOAD,
            Duration::from_micros(100)
        ),
        200
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        denied.from(IpAddr::V4(frontend.ipv4)),
        0,
        "nothing denied arrives"
    );
    assert_eq!(
        allowed.from(IpAddr::V4(frontend.ipv4)),
        200,
        "everything allowed arrives"
    );
    let exposition = cluster
        .node
        .http_get(9464, "/metrics")
        .expect("scrape the agent's metrics");
    let series = |verdict: &str, rule: &str, unit: &str| {
        metric(
            &exposition,
            &format!(
                "moat_policy_{unit}_total{{verdict=\"{verdict}\",reason=\"rule\",rule=\"{rule}\"}}"
            ),
        )
    };
    assert_eq!(
        series("drop", "no-udp-7777", "packets"),
        Some(300),
        "{exposition}"
    );
    assert_eq!(series("drop", "no-udp-7777", "bytes"), Some(300 * frame));
    assert_eq!(series("pass", "udp-7778", "packets"), Some(200));
    assert_eq!(series("pass", "udp-7778", "bytes"), Some(200 * frame));
    let interface = &cluster.frontend.host_interface;
    assert!(
        exposition.contains(&format!(
            "moat_attached{{interface=\"{interface}\",hook=\"tcx\",mode=\"tcx\"}} 1"
        )),
        "pod veths get TCX by default: {exposition}"
    );
    assert!(
        exposition
            .contains("moat_events_dropped_total{stage=\"xdp\",reason=\"drop_event_ring_full\"} 0")
    );
    agent.stop();
    state.cleanup();
}

#[test]
fn a_rate_limit_holds_a_flood_near_its_rate_and_spares_other_sources() {
    require_root();
    let cluster = Cluster::new("ratelimit");
    const RATE: u64 = 1000;
    const BURST: u64 = 200;
    let policy = cluster.policy(&format!(
        "{IDENTITIES}rateLimits:
  - {{ name: api-flood, to: api, perSource: {{ packetsPerSecond: {RATE}, burst: {BURST} }} }}
"
    ));
    let state = StateDir::new();
    let mut agent = cluster.agent(&state, &policy, &[]);
    let (frontend, api, db) = (&cluster.frontend, &cluster.api, &cluster.db);
    let counter = UdpCounter::start(api, IpAddr::V4(api.ipv4), 0);
    for pod in [frontend, db] {
        pod.run("ping", &["-c", "1", &api.ipv4.to_string()])
            .expect("resolve neighbours");
    }
    // The flood: as fast as one core sends, for two seconds; meanwhile db sends under budget.
    let polite = {
        let db = db.clone();
        let to = counter.address;
        std::thread::spawn(move || udp_send(&db, to, 300, 32, Duration::from_millis(5)))
    };
    let started = Instant::now();
    let mut flooded = 0;
    while started.elapsed() < Duration::from_secs(2) {
        flooded += udp_send(frontend, counter.address, 2000, 32, Duration::ZERO);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let polite_sent = polite.join().expect("polite sender");
    std::thread::sleep(Duration::from_millis(300));

    let received = counter.from(IpAddr::V4(frontend.ipv4)) as f64;
    let budget = BURST as f64 + RATE as f64 * elapsed;
    assert!(
        flooded as f64 > 5.0 * budget,
        "the flood must exceed the budget to test it: sent {flooded} in {elapsed:.2}s"
    );
    assert!(
        (received - budget).abs() <= 0.10 * budget,
        "received {received} of {flooded} flooded; budget {budget:.0} (burst {BURST} + {RATE}/s over {elapsed:.2}s)"
    );
    assert_eq!(
        counter.from(IpAddr::V4(db.ipv4)),
        polite_sent,
        "a source under budget loses nothing"
    );
    agent.wait_for(Duration::from_secs(5), |record| {
        record["kind"] == "policy.denied"
            && record["reason"] == "rate_limit"
            && record["rule"] == "api-flood"
    });
    agent.stop();
    state.cleanup();
}

#[test]
fn edits_and_sighup_reload_atomically_and_invalid_edits_keep_the_last_good_policy() {
    require_root();
    let cluster = Cluster::new("reload");
    let deny = format!(
        "{IDENTITIES}rules:
  - {{ name: frontend-not-to-db, action: deny, from: frontend, to: db, protocol: tcp, ports: [5432] }}
"
    );
    let policy = cluster.policy(IDENTITIES);
    let state = StateDir::new();
    let mut agent = cluster.agent(&state, &policy, &[]);
    let (frontend, db) = (&cluster.frontend, &cluster.db);
    let _db = TcpServer::start(db, IpAddr::V4(db.ipv4), 5432);
    assert!(tcp_works(frontend, at(db, 5432)));

    let mark = agent.mark();
    cluster.policy(&deny);
    agent.wait_since(mark, Duration::from_secs(5), |record| {
        record["kind"] == "policy.applied" && record["rules"] == 1
    });
    assert!(
        !tcp_works(frontend, at(db, 5432)),
        "the edit denies without a restart"
    );

    // An invalid edit: the file is refused with its line and field, and the deny stays.
    let mark = agent.mark();
    cluster.policy(&deny.replace("action: deny", "action: dney"));
    let rejected = agent.wait_since(mark, Duration::from_secs(5), |record| {
        record["kind"] == "policy.rejected"
    });
    let error = rejected["error"].as_str().expect("an error text");
    assert!(error.contains("policy.yaml:7:"), "{error}");
    assert!(error.contains("rules[0].action"), "{error}");
    assert!(
        !tcp_works(frontend, at(db, 5432)),
        "the last good policy is still in force"
    );

    // SIGHUP reloads too (a config manager may rewrite in place without a rename).
    let mark = agent.mark();
    std::fs::write(&policy, IDENTITIES).expect("rewrite policy");
    agent.signal(libc::SIGHUP);
    agent.wait_since(mark, Duration::from_secs(5), |record| {
        record["kind"] == "policy.applied" && record["rules"] == 0
    });
    assert!(
        tcp_works(frontend, at(db, 5432)),
        "the allow-all policy applies"
    );
    agent.stop();
    state.cleanup();
}

#[test]
fn kill_9_and_a_restart_never_let_a_denied_packet_through_and_cleanup_removes_everything() {
    require_root();
    let cluster = Cluster::new("restart");
    let policy = cluster.policy(&deny_udp_7777());
    let state = StateDir::new();
    let agent = cluster.agent(&state, &policy, &[]);
    let (frontend, api) = (&cluster.frontend, &cluster.api);
    let denied = UdpCounter::start(api, IpAddr::V4(api.ipv4), 7777);
    let allowed = UdpCounter::start(api, IpAddr::V4(api.ipv4), 7778);
    frontend
        .run("ping", &["-c", "1", &api.ipv4.to_string()])
        .expect("resolve neighbours");
    let denied_stream = UdpStream::start(frontend, denied.address, Duration::from_micros(200));
    let allowed_stream = UdpStream::start(frontend, allowed.address, Duration::from_micros(500));
    std::thread::sleep(Duration::from_millis(300));

    // The denied flow keeps sending through the crash and the restart: any gap in enforcement
    // would let some of it through.
    agent.signal(libc::SIGKILL);
    drop(agent);
    std::thread::sleep(Duration::from_millis(500));
    let restarted = cluster.agent(&state, &policy, &[]);
    let adopted = restarted
        .seen_ready()
        .expect("the restarted agent is ready");
    assert!(
        adopted["interfaces"]
            .as_array()
            .expect("interfaces")
            .iter()
            .all(|interface| interface["mode"] == "adopted"),
        "the restarted agent takes over the pinned links: {adopted}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let denied_sent = denied_stream.stop();
    let allowed_sent = allowed_stream.stop();
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        denied_sent > 1000,
        "the denied flow kept sending: {denied_sent}"
    );
    assert_eq!(
        denied.from(IpAddr::V4(frontend.ipv4)),
        0,
        "{denied_sent} denied datagrams sent, none may pass"
    );
    assert_eq!(
        allowed.from(IpAddr::V4(frontend.ipv4)),
        allowed_sent,
        "allowed traffic never stopped"
    );

    restarted.stop();
    let source = IpAddr::V4(frontend.ipv4);
    let send_hundred = || {
        udp_send(
            frontend,
            denied.address,
            100,
            16,
            Duration::from_micros(100),
        );
        std::thread::sleep(Duration::from_millis(200));
        denied.from(source)
    };
    assert_eq!(send_hundred(), 0, "a clean stop keeps enforcement too");
    state.cleanup();
    assert_eq!(
        send_hundred(),
        100,
        "after cleanup nothing of Moat judges the flow"
    );
}

#[test]
fn iface_glob_follows_interfaces_that_come_and_go() {
    require_root();
    let mut cluster = Cluster::new("glob");
    let policy = cluster.policy(&format!(
        "{IDENTITIES}rules:
  - {{ name: nobody-to-db, action: deny, from: any, to: db, protocol: tcp, ports: [5432] }}
"
    ));
    let state = StateDir::new();
    let mut agent = RunningAgent::start(
        &cluster.node,
        &state,
        &[],
        &[
            "--policy",
            policy.to_str().expect("utf-8"),
            "--iface-glob",
            "v*",
        ],
    );
    let _db = TcpServer::start(&cluster.db, IpAddr::V4(cluster.db.ipv4), 5432);
    let late = cluster
        .node
        .add_pod(PodSpec::new(
            "late",
            "198.18.9.10/24",
            "fd00:198:18:9::10/64",
        ))
        .expect("a pod created after the agent");
    let late_interface = late.host_interface.clone();
    agent.wait_for(Duration::from_secs(5), |record| {
        record["kind"] == "agent.attached" && record["interface"] == late_interface.as_str()
    });
    assert!(
        !tcp_works(&late, at(&cluster.db, 5432)),
        "the new pod's traffic is judged"
    );
    late.run(
        "ping",
        &["-c", "1", "-W", "1", &cluster.api.ipv4.to_string()],
    )
    .expect("the new pod's allowed traffic passes");
    let late_source = late.ipv4.to_string();
    agent.wait_for(Duration::from_secs(5), |record| {
        record["kind"] == "traffic.source"
            && record["interface"] == late_interface.as_str()
            && record["source"] == late_source.as_str()
    });
    cluster.node.remove_pod("late").expect("delete the pod");
    agent.wait_for(Duration::from_secs(5), |record| {
        record["kind"] == "agent.detached" && record["interface"] == late_interface.as_str()
    });
    let after_detach = agent.mark();
    let links: Vec<String> = std::fs::read_dir(state.path.join("links"))
        .expect("links directory")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert!(
        !links.iter().any(|link| link.contains(&late_interface)),
        "the vanished interface's pin is removed: {links:?}"
    );
    assert_eq!(links.len(), 4, "{links:?}");
    let records = agent.stop();
    assert!(
        records[after_detach..].iter().all(|record| {
            record["kind"] != "traffic.source" || record["source"] != late_source.as_str()
        }),
        "the vanished interface's per-source entries leave the kernel table and the reports"
    );
    state.cleanup();
}

#[test]
fn a_second_agent_on_the_same_state_waits_for_the_first_as_in_a_rolling_update() {
    require_root();
    let cluster = Cluster::new("rolling");
    let policy = cluster.policy(&deny_udp_7777());
    let state = StateDir::new();
    let old = cluster.agent(&state, &policy, &[]);
    let mut new = RunningAgent::spawn(
        &cluster.node,
        &state,
        &cluster.interfaces(),
        &["--policy", policy.to_str().expect("utf-8")],
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        new.records().is_empty(),
        "the new agent waits while the old one runs"
    );
    let cleanup = std::process::Command::new(moat_e2e::agent_binary())
        .args(["cleanup", "--state-dir"])
        .arg(&state.path)
        .output()
        .expect("run cleanup");
    assert!(
        !cleanup.status.success(),
        "cleanup refuses while an agent runs"
    );
    assert!(
        String::from_utf8_lossy(&cleanup.stderr).contains("a moat-agent is running"),
        "{}",
        String::from_utf8_lossy(&cleanup.stderr)
    );

    old.stop();
    let ready = new.wait_for(Duration::from_secs(10), |record| {
        record["kind"] == "agent.ready"
    });
    assert!(
        ready["interfaces"]
            .as_array()
            .expect("interfaces")
            .iter()
            .all(|interface| interface["mode"] == "adopted"),
        "{ready}"
    );
    let denied = UdpCounter::start(&cluster.api, IpAddr::V4(cluster.api.ipv4), 7777);
    udp_send(
        &cluster.frontend,
        denied.address,
        50,
        16,
        Duration::from_micros(100),
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(denied.from(IpAddr::V4(cluster.frontend.ipv4)), 0);
    new.stop();
    state.cleanup();
}
