//! `cargo xtask demo`: Moat on a namespace testbed, with traffic between pods, as a newcomer's
//! first look.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};
use testbed::{Node, Pod, PodSpec};

use crate::shell::{exec, is_root, workspace_root};

const HTTP_PORT: &str = "8080";

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
    println!(
        "\nmoat-agent attaches its XDP program to the node side of each pod's veth and reports,"
    );
    println!(
        "every 2 seconds, the traffic each source sent (a table; `--output jsonl` for machines):\n"
    );

    let mut agent_command = node.command(&agent_binary);
    for pod in &pods {
        agent_command.args(["--iface", &pod.host_interface]);
    }
    agent_command
        .args(["--output", "text", "--report-interval", "2s"])
        .stdin(Stdio::null());
    let mut agent = testbed::spawn(&mut agent_command).context("starting moat-agent")?;
    std::thread::sleep(Duration::from_secs(1));

    let _server = testbed::spawn(
        api.command("python3")
            .args(["-m", "http.server", HTTP_PORT, "--bind", "::"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .context("starting an HTTP server in the api pod")?;
    say("web calls api over HTTP, 10 times over IPv4 and 10 over IPv6 (curl)");
    for address in [format!("{}", api.ipv4), format!("[{}]", api.ipv6)] {
        let url = format!("http://{address}:{HTTP_PORT}/");
        for _ in 0..10 {
            web.run(
                "curl",
                &[
                    "-sS",
                    "-o",
                    "/dev/null",
                    "--retry",
                    "20",
                    "--retry-connrefused",
                    "--retry-delay",
                    "0",
                    &url,
                ],
            )
            .context("curl from web to api")?;
        }
    }
    say("web pings db 5 times; api pings db over IPv6 3 times");
    web.run("ping", &["-c", "5", "-i", "0.2", &db.ipv4.to_string()])
        .context("ping from web to db")?;
    api.run("ping", &["-c", "3", "-i", "0.2", &db.ipv6.to_string()])
        .context("ping from api to db")?;

    std::thread::sleep(Duration::from_millis(2500));
    say("stopping the agent: its last report lists every source's totals, then it detaches");
    agent.signal_and_wait(libc::SIGTERM, Duration::from_secs(10));
    println!(
        "\nEach row: the node-side interface the frames arrived on, the pod that sent them, the IP \
         protocol, and totals since the agent started. Frames from the node to a pod are not \
         counted on the pod's interface: XDP sees what pods send."
    );
    println!("Everything the demo created is removed now.");
    Ok(())
}

fn say(what: &str) {
    println!("\n>>> {what}\n");
}
