//! `cargo xtask demo`: Moat on one machine, as a newcomer's first look. A node built from network
//! namespaces holds a small shop (frontend, api, payments, db, an internal dev workload) with a
//! customer and an attacker outside it; moat-agent watches it from the kernel and ships to a
//! moat-collector on its embedded store; realistic traffic runs (HTTP/1.1, HTTP/2, gRPC, TLS,
//! personal data, a client that breaks the spec, an injection, recon, lateral movement); then the
//! `moat` CLI shows, from the collector, what a security team would ask for.

use std::{
    fs::File,
    io::BufRead as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use testbed::{
    Background, Node, Pod, PodSpec,
    tls::{Issued, TestCa},
};

use crate::shell::{exec, is_root, workspace_root};

const METRICS_PORT: u16 = 9464;
const COLLECTOR_PORT: u16 = 7070;
const SITE_PORT: u16 = 8000;
const API_PORT: u16 = 8080;
const GRPC_PORT: u16 = 50051;
const PAYMENTS_TLS_PORT: u16 = 8443;
const DB_PORT: u16 = 5432;

/// Each workload: its name, its /24 (IPv4) and /64 (IPv6) number, its inventory range.
const SHOP: [(&str, u8, &str); 7] = [
    (
        "frontend",
        1,
        "{name: frontend, kind: pod-network, cidrs: [198.18.1.0/24, \"fd00:198:18:1::/64\"], owner: web-team@example.com}",
    ),
    (
        "api",
        2,
        "{name: api, kind: pod-network, cidrs: [198.18.2.0/24, \"fd00:198:18:2::/64\"], owner: api-team@example.com}",
    ),
    (
        "db",
        3,
        "{name: db, kind: pod-network, cidrs: [198.18.3.0/24, \"fd00:198:18:3::/64\"], owner: dba@example.com}",
    ),
    (
        "payments",
        4,
        "{name: payments, kind: pod-network, cidrs: [198.18.4.0/24, \"fd00:198:18:4::/64\"], owner: payments@example.com, tags: {pci: in-scope}}",
    ),
    (
        "dev",
        5,
        "{name: dev, kind: internal, cidrs: [198.18.5.0/24, \"fd00:198:18:5::/64\"], environment: dev}",
    ),
    (
        "customer",
        7,
        "{name: acme, kind: customer, customer: Acme Corp, cidrs: [198.18.7.0/24, \"fd00:198:18:7::/64\"]}",
    ),
    (
        "attacker",
        66,
        "{name: attacker, kind: scanner, cidrs: [198.18.66.0/24, \"fd00:198:18:66::/64\"]}",
    ),
];

const POLICY: &str = r#"# The shop's policy; docs/policy.md explains every field.
identities:
  frontend: { cidrs: ["198.18.1.10/32"] }
  api:      { cidrs: ["198.18.2.10/32"] }
  db:       { cidrs: ["198.18.3.10/32"] }
  payments: { cidrs: ["198.18.4.10/32"] }
  dev:      { cidrs: ["198.18.5.10/32"] }
isolate: [db, payments]  # only what an allow rule names may reach them
rules:
  - { name: api-to-db, action: allow, from: api, to: db, protocol: tcp, ports: [5432] }
  - { name: api-to-payments, action: allow, from: api, to: payments, protocol: tcp, ports: [50051, 8443] }
"#;

const SPEC: &str = r#"# The shop api's OpenAPI spec (docs/api-intelligence.md).
openapi: 3.0.3
info: {title: shop-api, version: "1"}
paths:
  /customers:
    get:
      responses:
        "200":
          description: the customers
          content: {application/json: {schema: {type: array, items: {type: object}}}}
  /orders/{id}:
    get:
      parameters: [{name: id, in: path, required: true, schema: {type: integer}}]
      responses:
        "200":
          description: an order
          content: {application/json: {schema: {type: object}}}
  /orders:
    post:
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              required: [item, quantity]
              properties:
                item: {type: string}
                quantity: {type: integer, minimum: 1}
      responses:
        "201":
          description: the order was placed
          content: {application/json: {schema: {type: object}}}
"#;

const DETECTION: &str = r#"# What the detectors do (docs/detection.md).
modes:
  "*": detect
  threat.*: block         # an attack blocks its source in the kernel for blockFor
  threat.recon: detect
  threat.scanner: detect
blockFor: 10m
"#;

/// Where the demo keeps its files, the collector's store and the agent's logs.
struct Files {
    dir: PathBuf,
}

impl Files {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn write(&self, name: &str, contents: &str) -> anyhow::Result<PathBuf> {
        let path = self.path(name);
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    fn log(&self, name: &str) -> anyhow::Result<File> {
        let path = self.path(name);
        File::create(&path).with_context(|| format!("creating {}", path.display()))
    }
}

pub fn run(keep: bool) -> anyhow::Result<()> {
    if !is_root() {
        bail!(
            "the demo builds network namespaces and loads eBPF programs: run `sudo -E cargo xtask demo`"
        );
    }
    let root = workspace_root();
    exec(
        Command::new("cargo")
            .args(["build", "--quiet", "--bins"])
            .args(["--package", "agent", "--package", "collector"])
            .args(["--package", "cli"])
            .current_dir(&root),
    )?;
    let files = Files {
        dir: std::env::temp_dir().join(format!("moat-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&files.dir).context("creating the demo's directory")?;
    let state_dir = format!("/sys/fs/bpf/moat-demo-{}", std::process::id());
    let agent_binary = root.join("target/debug/moat-agent");
    let outcome = show(&root, &files, &state_dir, keep);
    // Whatever happened, leave nothing enforced and nothing on disk.
    let _ = Command::new(&agent_binary)
        .args(["cleanup", "--state-dir", &state_dir])
        .stderr(Stdio::null())
        .status();
    let _ = std::fs::remove_dir_all(&files.dir);
    outcome
}

fn show(root: &Path, files: &Files, state_dir: &str, keep: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut node = Node::new("shop").context("building the demo node")?;
    let mut pods = Vec::new();
    for (name, subnet, _) in SHOP {
        let spec = PodSpec::new(
            name,
            &format!("198.18.{subnet}.10/24"),
            &format!("fd00:198:18:{subnet}::10/64"),
        );
        pods.push(node.add_pod(spec).context("adding the demo pods")?);
    }
    let pod = |name: &str| {
        pods.iter()
            .find(|pod| pod.name == name)
            .expect("every workload of SHOP is a pod")
    };
    let (frontend, api, db, payments, dev, customer, attacker) = (
        pod("frontend"),
        pod("api"),
        pod("db"),
        pod("payments"),
        pod("dev"),
        pod("customer"),
        pod("attacker"),
    );

    println!(
        "\nA node (network namespace {}) runs a small shop; a customer and an attacker reach it from outside:",
        node.netns()
    );
    for pod in &pods {
        println!("  {:<9} {:<14} {}", pod.name, pod.ipv4, pod.ipv6);
    }
    let policy = files.write("policy.yaml", POLICY)?;
    let inventory = files.write("inventory.yaml", &inventory_yaml())?;
    files.write("shop-api.yaml", SPEC)?;
    let detection = files.write("detection.yaml", DETECTION)?;
    println!("\nThe policy ({}):\n\n{POLICY}", policy.display());
    println!(
        "The inventory ({}) names each address range (on Kubernetes the agent names pods, services and\nnodes from the API server) and binds the api's OpenAPI spec:\n\n{}\n{SPEC}",
        inventory.display(),
        inventory_yaml()
    );
    println!(
        "The detection file ({}):\n\n{DETECTION}",
        detection.display()
    );

    let ca = TestCa::new(&files.dir, "moat demo shop CA")?;
    let payments_certificate = ca.issue(
        "payments",
        "payments",
        &[&format!("IP:{}", payments.ipv4)],
        2,
    )?;
    let _servers = start_servers(
        root,
        files,
        &[frontend, api, db, payments],
        &payments_certificate,
    )?;

    let collector = start_collector(root, files, &node)?;
    let mut agent = start_agent(root, files, &node, &pods, state_dir)?;
    say(&format!(
        "moat-agent runs on the node: XDP/TC on every pod's interface enforces the policy, syscall tracepoints and\nOpenSSL uprobes capture the API calls, and everything is shipped to moat-collector (store {}).\nIts records also go to {}, its log to {}.",
        files.path("moat.db").display(),
        files.path("records.jsonl").display(),
        files.path("agent.log").display()
    ));

    drive_traffic(
        root,
        &ca.root.certificate,
        frontend,
        api,
        db,
        payments,
        dev,
        customer,
        attacker,
    )?;

    // The agent reports endpoints every 3 seconds and ships within a second.
    std::thread::sleep(Duration::from_secs(5));
    report(root, &node)?;
    println!(
        "\n(The demo took {} s from the node's creation.)",
        started.elapsed().as_secs()
    );

    if keep {
        let moat = root.join("target/debug/moat");
        println!(
            "\nEverything keeps running. Ask the collector yourself, from the node's namespace, for example:\n\n  ip netns exec {netns} {moat} --collector http://127.0.0.1:{COLLECTOR_PORT} findings --severity medium\n  ip netns exec {netns} {moat} --collector http://127.0.0.1:{COLLECTOR_PORT} map\n  ip netns exec {netns} {moat} --collector http://127.0.0.1:{COLLECTOR_PORT} calls --follow\n\nand make traffic from a pod: ip netns exec {netns}-frontend curl http://{api}:{API_PORT}/customers\n\nPress Enter to stop the demo and remove everything it made.",
            netns = node.netns(),
            moat = moat.display(),
            api = api.ipv4,
        );
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).ok();
    }
    agent.signal_and_wait(libc::SIGTERM, Duration::from_secs(10));
    drop(collector);
    println!("\nEverything the demo created is removed now.");
    if !keep {
        println!(
            "To keep the shop, agent and collector running and query them by hand with `moat`, run `sudo -E cargo xtask demo --keep`."
        );
    }
    Ok(())
}

fn inventory_yaml() -> String {
    let ranges: String = SHOP
        .iter()
        .map(|(_, _, range)| format!("  - {range}\n"))
        .collect();
    format!(
        "cluster: demo-shop\nenvironment: production\nranges:\n{ranges}apis:\n  - name: shop-api\n    spec: shop-api.yaml\n    servers: [{{address: 198.18.2.10/32, port: {API_PORT}}}]\n"
    )
}

fn start_servers(
    root: &Path,
    files: &Files,
    servers: &[&Pod; 4],
    payments_certificate: &Issued,
) -> anyhow::Result<Vec<Background>> {
    let [frontend, api, db, payments] = *servers;
    let peer = |name: &str| root.join("tests/peers").join(name).display().to_string();
    let site = files.path("site");
    std::fs::create_dir_all(&site).context("creating the frontend's site")?;
    std::fs::write(site.join("index.html"), "<h1>The shop</h1>\n")
        .context("writing the frontend's page")?;
    let spawn = |pod: &Pod, program: &str, args: &[&str]| {
        testbed::spawn(
            pod.command(program)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .with_context(|| format!("starting {program} in {}", pod.name))
    };
    let servers = vec![
        spawn(
            frontend,
            "nghttpd",
            &[
                "--no-tls",
                "-d",
                &site.display().to_string(),
                &SITE_PORT.to_string(),
            ],
        )?,
        spawn(
            api,
            PYTHON,
            &[
                &peer("leaky_api.py"),
                &api.ipv4.to_string(),
                &API_PORT.to_string(),
            ],
        )?,
        spawn(
            db,
            PYTHON,
            &[
                "-m",
                "http.server",
                &DB_PORT.to_string(),
                "--bind",
                &db.ipv4.to_string(),
            ],
        )?,
        spawn(
            payments,
            PYTHON,
            &[
                &peer("grpc_peer.py"),
                "serve",
                &format!("{}:{GRPC_PORT}", payments.ipv4),
            ],
        )?,
        spawn(
            payments,
            PYTHON,
            &[
                &root.join("xtask/demo/payments.py").display().to_string(),
                &payments.ipv4.to_string(),
                &PAYMENTS_TLS_PORT.to_string(),
                payments_certificate.certificate(),
                payments_certificate.key(),
            ],
        )?,
    ];
    for (pod, port) in [
        (frontend, SITE_PORT),
        (api, API_PORT),
        (db, DB_PORT),
        (payments, GRPC_PORT),
        (payments, PAYMENTS_TLS_PORT),
    ] {
        wait_listening(pod, SocketAddr::new(pod.ipv4.into(), port))?;
    }
    Ok(servers)
}

/// Debian's python, which has grpcio; a python earlier on PATH (pyenv) may not.
const PYTHON: &str = "/usr/bin/python3";

fn wait_listening(pod: &Pod, address: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let listening = pod.enter(|| {
            std::net::TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok()
        })?;
        if listening {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{} does not listen on {address} within 15 s", pod.name);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start_collector(root: &Path, files: &Files, node: &Node) -> anyhow::Result<Background> {
    let mut command = node.command(root.join("target/debug/moat-collector"));
    command
        .args(["--listen", &format!("127.0.0.1:{COLLECTOR_PORT}")])
        .arg("--store")
        .arg(format!("sqlite:{}", files.path("moat.db").display()))
        .stdin(Stdio::null())
        .stderr(files.log("collector.log")?);
    let collector = testbed::spawn(&mut command).context("starting moat-collector")?;
    let address = SocketAddr::from(([127, 0, 0, 1], COLLECTOR_PORT));
    let deadline = Instant::now() + Duration::from_secs(15);
    while !node.enter(|| {
        std::net::TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok()
    })? {
        if Instant::now() > deadline {
            bail!(
                "moat-collector does not listen within 15 s; its log is {}",
                files.path("collector.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(collector)
}

fn start_agent(
    root: &Path,
    files: &Files,
    node: &Node,
    pods: &[Pod],
    state_dir: &str,
) -> anyhow::Result<Background> {
    let mut command = node.command(root.join("target/debug/moat-agent"));
    for pod in pods {
        command.args(["--iface", &pod.host_interface]);
    }
    for port in [SITE_PORT, API_PORT, GRPC_PORT, PAYMENTS_TLS_PORT, DB_PORT] {
        command.args(["--capture-port", &port.to_string()]);
    }
    command
        .arg("--policy")
        .arg(files.path("policy.yaml"))
        .arg("--inventory")
        .arg(files.path("inventory.yaml"))
        .arg("--detection")
        .arg(files.path("detection.yaml"))
        .args(["--kubernetes", "off", "--state-dir", state_dir])
        .args(["--report-interval", "3s", "--new-caller-findings", "off"])
        .args(["--metrics-addr", &format!("127.0.0.1:{METRICS_PORT}")])
        .args(["--collector", &format!("http://127.0.0.1:{COLLECTOR_PORT}")])
        .stdin(Stdio::null())
        .stdout(files.log("records.jsonl")?)
        .stderr(files.log("agent.log")?);
    let agent = testbed::spawn(&mut command).context("starting moat-agent")?;
    // Calls made before the agent says on /readyz that its programs are attached are not seen.
    let deadline = Instant::now() + Duration::from_secs(60);
    while node
        .http_get(METRICS_PORT, "/readyz")
        .map_or(true, |body| body.trim() != "ready")
    {
        if Instant::now() > deadline {
            bail!(
                "moat-agent was not ready within a minute; its log is {}",
                files.path("agent.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(agent)
}

/// The shop's day: customers shop, services call each other, one client breaks the spec, an
/// attacker probes and attacks, and a dev workload reaches for the database.
#[allow(clippy::too_many_arguments)]
fn drive_traffic(
    root: &Path,
    ca: &Path,
    frontend: &Pod,
    api: &Pod,
    db: &Pod,
    payments: &Pod,
    dev: &Pod,
    customer: &Pod,
    attacker: &Pod,
) -> anyhow::Result<()> {
    let site = format!("http://{}:{SITE_PORT}", frontend.ipv4);
    let shop_api = format!("http://{}:{API_PORT}", api.ipv4);
    say("the customer loads the shop's page over HTTP/2 (h2c)");
    for _ in 0..3 {
        expect(
            customer,
            &["--http2-prior-knowledge", &format!("{site}/index.html")],
            "200",
        )?;
    }
    say(
        "the frontend calls the api over HTTP/1.1: customers (names, emails, card numbers), orders, a new order",
    );
    expect(frontend, &[&format!("{shop_api}/customers")], "200")?;
    for order in 1..=3 {
        expect(frontend, &[&format!("{shop_api}/orders/{order}")], "200")?;
    }
    let order = r#"{"item": "mug", "quantity": 2}"#;
    expect(
        frontend,
        &json_post(&format!("{shop_api}/orders"), order),
        "201",
    )?;
    say(
        "the customer's integration reads the customer list with its API key: personal data leaves for Acme Corp",
    );
    expect(
        customer,
        &[
            "-H",
            "X-API-Key: ak_live_7f3a9c2e41d8",
            &format!("{shop_api}/customers"),
        ],
        "200",
    )?;
    say(
        "the api charges a card at payments over TLS (Python's ssl, libssl: read in clear by the uprobes) and calls its gRPC service",
    );
    for _ in 0..3 {
        expect(
            api,
            &[
                "--cacert",
                &ca.display().to_string(),
                &format!("https://{}:{PAYMENTS_TLS_PORT}/charges", payments.ipv4),
                "-H",
                "Content-Type: application/json",
                "-d",
                r#"{"amount": 1200, "currency": "EUR"}"#,
            ],
            "201",
        )?;
    }
    let grpc = api
        .run(
            PYTHON,
            &[
                &root.join("tests/peers/grpc_peer.py").display().to_string(),
                "call",
                &format!("{}:{GRPC_PORT}", payments.ipv4),
            ],
        )
        .context("gRPC calls from api to payments")?;
    println!("{}", String::from_utf8_lossy(&grpc.stdout).trim_end());
    say("the api reads the db (plaintext, allowed by rule api-to-db)");
    expect(api, &[&format!("http://{}:{DB_PORT}/", db.ipv4)], "200")?;
    say(
        "an old frontend build sends an order the spec refuses (quantity is text) and calls an undocumented /admin",
    );
    expect(
        frontend,
        &json_post(
            &format!("{shop_api}/orders"),
            r#"{"item": "mug", "quantity": "lots"}"#,
        ),
        "201",
    )?;
    expect(frontend, &[&format!("{shop_api}/admin")], "200")?;
    say(
        "the attacker sweeps the site for pages (recon: 24 paths answered 404) with a scanner's User-Agent",
    );
    // Names that are not attacks in themselves: a request for /.env or /.git/config would be
    // (threat.path_traversal), and would block the attacker before the story's injection.
    for path in [
        "old", "backup", "test", "v1", "v2", "beta", "staging", "internal", "cart", "checkout",
        "users", "accounts", "login", "signup", "search", "invoices", "reports", "export",
        "status", "health", "api", "graphql", "console", "metrics",
    ] {
        expect(
            attacker,
            &[
                "--http2-prior-knowledge",
                "-A",
                "Nikto/2.5.0",
                &format!("{site}/{path}"),
            ],
            "404",
        )?;
    }
    say(
        "the attacker tries a SQL injection on the api: threat.sqli, in block mode, so its next connection is dropped in the kernel",
    );
    expect(
        attacker,
        &[&format!(
            "{shop_api}/customers?id=1%27%20OR%20%271%27%3D%271"
        )],
        "200",
    )?;
    std::thread::sleep(Duration::from_millis(500));
    let next = curl(
        attacker,
        &["--max-time", "2", &format!("{shop_api}/customers")],
    );
    println!("the attacker's next request: {}", outcome(&next));
    say(
        "the dev workload reaches for the db and for payments (lateral movement): both are isolated, XDP drops the SYNs",
    );
    let to_db = curl(
        dev,
        &["--max-time", "2", &format!("http://{}:{DB_PORT}/", db.ipv4)],
    );
    println!("dev to db: {}", outcome(&to_db));
    let to_payments = curl(
        dev,
        &[
            "--max-time",
            "2",
            "-k",
            &format!("https://{}:{PAYMENTS_TLS_PORT}/charges", payments.ipv4),
        ],
    );
    println!("dev to payments: {}", outcome(&to_payments));
    Ok(())
}

fn json_post(url: &str, body: &str) -> Vec<String> {
    ["-H", "Content-Type: application/json", "-d", body, url]
        .map(str::to_owned)
        .to_vec()
}

/// curl from a pod; its HTTP status, or why it got none.
fn curl(pod: &Pod, args: &[&str]) -> Result<String, String> {
    let mut all = vec![
        "-sS",
        "--max-time",
        "5",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
    ];
    all.extend(args);
    pod.run("curl", &all)
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
        .map_err(|error| error.to_string())
}

/// curl that must get `status`: the demo's story depends on it.
fn expect(pod: &Pod, args: &[impl AsRef<str>], status: &str) -> anyhow::Result<()> {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    match curl(pod, &args) {
        Ok(got) if got == status => Ok(()),
        Ok(got) => bail!(
            "curl {args:?} from {} got HTTP {got}, not {status}",
            pod.name
        ),
        Err(error) => bail!("curl {args:?} from {}: {error}", pod.name),
    }
}

fn outcome(result: &Result<String, String>) -> String {
    match result {
        Ok(status) => format!("answered (HTTP {status})"),
        Err(_) => "no answer (dropped)".to_owned(),
    }
}

/// What a security team asks the collector, through the `moat` CLI.
fn report(root: &Path, node: &Node) -> anyhow::Result<()> {
    let moat = |args: &[&str]| -> anyhow::Result<String> {
        let mut command = node.command(root.join("target/debug/moat"));
        command
            .args(["--collector", &format!("http://127.0.0.1:{COLLECTOR_PORT}")])
            .args(args);
        let output = command.output().context("running moat")?;
        if !output.status.success() {
            bail!(
                "moat {args:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let show = |title: &str, args: &[&str]| -> anyhow::Result<()> {
        say(&format!("{title}: moat {}", args.join(" ")));
        print!("{}", moat(args)?);
        Ok(())
    };
    show("the endpoint inventory", &["endpoints"])?;
    show("who calls whom, and whether it is encrypted", &["map"])?;
    say("the findings by severity: moat findings --limit 10000 --output json, counted");
    let findings = moat(&["findings", "--limit", "10000", "--output", "json"])?;
    print!("{}", severity_summary(&findings));
    show(
        "the findings of high severity and above",
        &["findings", "--severity", "high"],
    )?;
    show("what was blocked", &["drops"])?;
    show("where sensitive data flows", &["dataflow"])?;
    Ok(())
}

/// Counts of findings per severity (most severe first) and kind, from `moat findings` JSON lines.
fn severity_summary(json_lines: &str) -> String {
    const SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "info"];
    let mut counts = std::collections::BTreeMap::<(usize, String), u32>::new();
    for line in json_lines.lines() {
        let Ok(finding) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let severity = finding["severity"].as_str().unwrap_or("");
        let rank = SEVERITIES
            .iter()
            .position(|known| *known == severity)
            .unwrap_or(SEVERITIES.len());
        let kind = finding["kind"].as_str().unwrap_or("?").to_owned();
        *counts.entry((rank, kind)).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|((rank, kind), count)| {
            format!(
                "  {:<9} {count:>3}  {kind}\n",
                SEVERITIES.get(rank).unwrap_or(&"unknown")
            )
        })
        .collect()
}

fn say(what: &str) {
    println!("\n>>> {what}\n");
}
