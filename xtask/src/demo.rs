//! `cargo xtask demo`: Moat on a namespace testbed, as a newcomer's first look: three pods talk,
//! their API calls are seen from the kernel and checked against a spec, a policy stops what it
//! denies, an edit changes the verdict live, and the counters show it all.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};
use testbed::{Node, Pod, PodSpec};

use crate::shell::{exec, is_root, workspace_root};

const HTTP_PORT: &str = "8080";
const DB_PORT: &str = "5432";
const METRICS_PORT: u16 = 9464;

const POLICY: &str = r#"# The demo's policy; docs/policy.md explains every field.
identities:
  web: { cidrs: ["198.18.1.10/32", "fd00:198:18:1::10/128"] }
  api: { cidrs: ["198.18.2.10/32", "fd00:198:18:2::10/128"] }
  db:  { cidrs: ["198.18.3.10/32", "fd00:198:18:3::10/128"] }
isolate: [db]            # only what an allow rule names may reach the database
rules:
  - name: api-to-db
    action: allow
    from: api
    to: db
    protocol: tcp
    ports: [5432]
"#;

const INVENTORY: &str = r#"# The demo's inventory; docs/identity.md explains every field.
cluster: demo
environment: dev
ranges:
  - { name: web-pods, kind: pod-network, cidrs: [198.18.1.0/24, "fd00:198:18:1::/64"], owner: web-team@example.com }
  - { name: api-pods, kind: pod-network, cidrs: [198.18.2.0/24, "fd00:198:18:2::/64"], owner: api-team@example.com }
  - { name: db-pods, kind: pod-network, cidrs: [198.18.3.0/24, "fd00:198:18:3::/64"], owner: dba@example.com }
apis:                    # docs/api-intelligence.md: calls to these servers are checked against the spec
  - name: api
    spec: api-spec.yaml
    servers: [{address: 198.18.2.10/32, port: 8080}, {address: "fd00:198:18:2::10/128", port: 8080}]
"#;

const SPEC: &str = r#"# The api pod's OpenAPI spec: it serves its index page, nothing else.
openapi: 3.0.3
info: {title: api, version: "1"}
paths:
  /:
    get:
      responses:
        "200":
          description: the index page
          content:
            text/html: {schema: {type: string}}
"#;

pub fn run() -> anyhow::Result<()> {
    if !is_root() {
        bail!(
            "the demo builds network namespaces and loads eBPF programs: run `sudo -E cargo xtask demo`"
        );
    }
    let root = workspace_root();
    exec(
        Command::new("cargo")
            .args(["build", "--quiet", "--package", "agent", "--bins"])
            .current_dir(&root),
    )?;
    let agent_binary = root.join("target/debug/moat-agent");
    let workdir = std::env::temp_dir().join(format!("moat-demo-{}", std::process::id()));
    std::fs::create_dir_all(&workdir).context("creating the demo's directory")?;
    let policy = workdir.join("policy.yaml");
    std::fs::write(&policy, POLICY).context("writing the demo policy")?;
    std::fs::write(workdir.join("inventory.yaml"), INVENTORY)
        .context("writing the demo inventory")?;
    std::fs::write(workdir.join("api-spec.yaml"), SPEC).context("writing the demo spec")?;
    let state_dir = format!("/sys/fs/bpf/moat-demo-{}", std::process::id());
    let outcome = show(&agent_binary, &policy, &state_dir);
    // Whatever happened, leave nothing enforced and nothing on disk.
    let _ = Command::new(&agent_binary)
        .args(["cleanup", "--state-dir", &state_dir])
        .stderr(Stdio::null())
        .status();
    let _ = std::fs::remove_dir_all(&workdir);
    outcome
}

fn show(agent_binary: &Path, policy: &Path, state_dir: &str) -> anyhow::Result<()> {
    let mut node = Node::new("demo").context("building the demo node")?;
    let pods = [
        PodSpec::new("web", "198.18.1.10/24", "fd00:198:18:1::10/64"),
        PodSpec::new("api", "198.18.2.10/24", "fd00:198:18:2::10/64"),
        PodSpec::new("db", "198.18.3.10/24", "fd00:198:18:3::10/64"),
    ]
    .into_iter()
    .map(|spec| node.add_pod(spec))
    .collect::<Result<Vec<Pod>, _>>()
    .context("adding the demo pods")?;
    let [web, api, db] = &pods[..] else {
        unreachable!("three pods were added")
    };

    println!(
        "\nA node (network namespace {}) with three pods:",
        node.netns()
    );
    for pod in &pods {
        println!(
            "  {:<4} {:<12} {:<20} node-side interface {}",
            pod.name, pod.ipv4, pod.ipv6, pod.host_interface
        );
    }
    println!("\nThe policy ({}):\n\n{POLICY}", policy.display());
    let inventory = policy.with_file_name("inventory.yaml");
    println!(
        "The inventory ({}), which names the pods' address ranges in every record (in Kubernetes,\nthe agent names pods, services and nodes from the API server):\n\n{INVENTORY}",
        inventory.display()
    );
    println!(
        "The api pod's OpenAPI spec ({}), which the inventory binds to it:\n\n{SPEC}",
        inventory.with_file_name("api-spec.yaml").display()
    );
    println!(
        "moat-agent attaches its program to the node side of each pod's veth (TC ingress via TCX), enforces the"
    );
    println!(
        "policy there, and prints what it drops and, every 3 seconds, who sent what. It also captures the pods'"
    );
    println!(
        "HTTP calls from the kernel's syscalls (here only ports {HTTP_PORT} and {DB_PORT}), prints each call once,"
    );
    println!(
        "counts it in the endpoint inventory (api.endpoint every 3 seconds) and checks calls to api against its spec:\n"
    );

    let mut agent_command = node.command(agent_binary);
    for pod in &pods {
        agent_command.args(["--iface", &pod.host_interface]);
    }
    agent_command
        .arg("--policy")
        .arg(policy)
        .arg("--inventory")
        .arg(&inventory)
        .args(["--kubernetes", "off"])
        .args([
            "--state-dir",
            state_dir,
            "--output",
            "text",
            "--report-interval",
            "3s",
        ])
        .args(["--metrics-addr", &format!("127.0.0.1:{METRICS_PORT}")])
        .args(["--capture-port", HTTP_PORT, "--capture-port", DB_PORT])
        .stdin(Stdio::null());
    let mut agent = testbed::spawn(&mut agent_command).context("starting moat-agent")?;
    wait_ready(&node)?;

    let quiet_server = |pod: &Pod, port: &str| {
        testbed::spawn(
            pod.command("python3")
                .args(["-m", "http.server", port, "--bind", "::"])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
    };
    let _api_server = quiet_server(api, HTTP_PORT).context("starting a server in the api pod")?;
    let _db_server = quiet_server(db, DB_PORT).context("starting a server in the db pod")?;
    std::thread::sleep(Duration::from_millis(700));

    say(
        "web calls api over HTTP, 5 times over IPv4 and 5 over IPv6: allowed (no rule, api is not isolated)",
    );
    for address in [format!("{}", api.ipv4), format!("[{}]", api.ipv6)] {
        for _ in 0..5 {
            curl(web, &format!("http://{address}:{HTTP_PORT}/"))?;
        }
    }
    say(
        "web probes api for /admin, which api's spec does not have: a shadow endpoint (spec.undocumented_endpoint), reported with the spec's pointer",
    );
    curl(web, &format!("http://{}:{HTTP_PORT}/admin", api.ipv4))?;
    say(
        "web sends api a SQL injection in a query parameter: the detectors report threat.sqli with the rule that fired, web's identity and masked evidence (docs/detection.md)",
    );
    curl(
        web,
        &format!(
            "http://{}:{HTTP_PORT}/?id=1%27%20OR%20%271%27%3D%271",
            api.ipv4
        ),
    )?;
    say("api calls db on 5432: allowed by rule api-to-db");
    curl(api, &format!("http://{}:{DB_PORT}/", db.ipv4))?;
    say(
        "web calls db on 5432: db is isolated and no rule allows web, so the kernel program drops the SYN",
    );
    let reached = curl(web, &format!("http://{}:{DB_PORT}/", db.ipv4)).is_ok();
    println!("web reached db: {reached}");

    say(
        "the policy file is edited to allow web too; the agent notices within a second and switches atomically",
    );
    std::fs::write(
        policy,
        format!("{POLICY}  - {{ name: web-to-db, action: allow, from: web, to: db, protocol: tcp, ports: [5432] }}\n"),
    )
    .context("editing the policy")?;
    std::thread::sleep(Duration::from_millis(2000));
    let reached = curl(web, &format!("http://{}:{DB_PORT}/", db.ipv4)).is_ok();
    println!("web reached db: {reached}");

    std::thread::sleep(Duration::from_millis(2500));
    say(&format!(
        "what Prometheus would scrape from 127.0.0.1:{METRICS_PORT}/metrics (policy and call counters):"
    ));
    let exposition = node
        .http_get(METRICS_PORT, "/metrics")
        .context("scraping the agent's metrics")?;
    for line in exposition.lines().filter(|line| {
        line.starts_with("moat_policy_packets_total") || line.starts_with("moat_api_calls")
    }) {
        println!("  {line}");
    }

    say(
        "stopping the agent: its last report lists every source's totals; enforcement would stay pinned for the next agent, so the demo removes it with `moat-agent cleanup`",
    );
    agent.signal_and_wait(libc::SIGTERM, Duration::from_secs(10));
    println!("\nEverything the demo created is removed now.");
    Ok(())
}

/// Waits until the agent says on /readyz that its programs are attached and capture runs: calls
/// made before are not seen.
fn wait_ready(node: &Node) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while node
        .http_get(METRICS_PORT, "/readyz")
        .map_or(true, |body| body.trim() != "ready")
    {
        if std::time::Instant::now() > deadline {
            bail!("moat-agent was not ready within a minute; its log above says why");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn curl(pod: &Pod, url: &str) -> anyhow::Result<()> {
    pod.run("curl", &["-sS", "-o", "/dev/null", "--max-time", "2", url])
        .map(|_| ())
        .with_context(|| format!("curl {url} from {}", pod.name))
}

fn say(what: &str) {
    println!("\n>>> {what}\n");
}
