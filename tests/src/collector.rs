//! The collector and the `moat` CLI as end-to-end tests run them: the collector in the node's
//! network namespace, where the agent ships to it and the CLI asks it.

use std::{
    net::SocketAddr,
    process::Stdio,
    time::{Duration, Instant},
};

use serde_json::Value;
use testbed::{Background, Node};

use crate::built_binary;

pub const COLLECTOR_PORT: u16 = 17070;

/// The collector, in the node's network namespace where the agent and the CLI reach it.
pub fn start_collector(node: &Node, database: &std::path::Path, extra: &[&str]) -> Background {
    let mut command = node.command(built_binary("moat-collector"));
    command
        .args([
            "--listen",
            &format!("127.0.0.1:{COLLECTOR_PORT}"),
            "--store",
        ])
        .arg(format!("sqlite:{}", database.display()))
        .args(extra)
        .stdin(Stdio::null());
    let collector = testbed::spawn(&mut command).expect("start moat-collector");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !node
        .enter(|| {
            std::net::TcpStream::connect_timeout(
                &SocketAddr::from(([127, 0, 0, 1], COLLECTOR_PORT)),
                Duration::from_millis(200),
            )
            .is_ok()
        })
        .expect("enter the node")
    {
        assert!(Instant::now() < deadline, "moat-collector does not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    collector
}

/// `moat <args> --output json` against the plain-HTTP collector, run in the node.
pub fn moat_json(node: &Node, args: &[&str]) -> Vec<Value> {
    moat_json_at(
        node.command(built_binary("moat")),
        &format!("http://127.0.0.1:{COLLECTOR_PORT}"),
        args,
    )
}

/// `moat <args> --output json` against the collector at `url`, run as `moat` (a command for the
/// binary, in a node or on the host): its JSON lines.
pub fn moat_json_at(mut moat: std::process::Command, url: &str, args: &[&str]) -> Vec<Value> {
    let output = moat
        .args(["--collector", url])
        .args(args)
        .args(["--output", "json"])
        .output()
        .expect("run moat");
    assert!(
        output.status.success(),
        "moat {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("moat writes JSON lines"))
        .collect()
}
