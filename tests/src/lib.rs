//! Shared harness of the end-to-end tests: find the built moat-agent, run it on a testbed node,
//! and read its JSON-lines reports.

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

pub mod apiserver;
pub mod capture;
pub mod cgroup;
pub mod collector;
pub mod pcap;
pub mod tls;
pub mod traffic;

use serde_json::Value;
use testbed::{Background, Node, Pod, PodSpec};

/// A node with a client and a server pod in different subnets, so that their traffic is routed
/// through the node as on a Kubernetes node.
pub fn two_pods(label: &str) -> (Node, Pod, Pod) {
    let mut node = Node::new(label).expect("create node");
    let client = node
        .add_pod(PodSpec::new(
            "client",
            "198.18.1.10/24",
            "fd00:198:18:1::10/64",
        ))
        .expect("add client pod");
    let server = node
        .add_pod(PodSpec::new(
            "server",
            "198.18.2.10/24",
            "fd00:198:18:2::10/64",
        ))
        .expect("add server pod");
    (node, client, server)
}

/// The moat-agent binary under test: `$MOAT_AGENT_BIN`, or the one cargo built next to this test.
pub fn agent_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("MOAT_AGENT_BIN") {
        return PathBuf::from(path);
    }
    built_binary("moat-agent")
}

/// A binary of this workspace that cargo built next to this test (`moat-collector`, `moat`).
pub fn built_binary(name: &str) -> PathBuf {
    let test_exe = std::env::current_exe().expect("path of the running test");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let profile_dir = test_exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in target/<profile>/deps");
    let binary = profile_dir.join(name);
    assert!(
        binary.exists(),
        "{} does not exist: build it with `cargo build --bins` (`cargo xtask test` does)",
        binary.display()
    );
    binary
}

/// A scratch directory for one test's files, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(label: &str) -> Self {
        let path = std::env::temp_dir().join(format!("moat-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|error| panic!("create {}: {error}", path.display()));
        Self(path)
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Fails the test (never skips it) when it cannot run for lack of privileges.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this end-to-end test loads eBPF programs and builds network namespaces: run it as root \
         (CI does); it fails rather than skipping so that a CI run cannot pass without running it"
    );
}

static NEXT_STATE_DIR: AtomicU32 = AtomicU32::new(0);

/// A bpffs directory for one test's pins, removed (with everything Moat pinned there, which
/// detaches its programs) when dropped.
pub struct StateDir {
    pub path: PathBuf,
}

impl StateDir {
    pub fn new() -> Self {
        let sequence = NEXT_STATE_DIR.fetch_add(1, Ordering::Relaxed);
        Self {
            path: PathBuf::from(format!(
                "/sys/fs/bpf/moat-test-{}-{sequence}",
                std::process::id()
            )),
        }
    }

    /// `moat-agent cleanup` on this directory; asserts it succeeds.
    pub fn cleanup(&self) {
        let status = Command::new(agent_binary())
            .args(["cleanup", "--state-dir"])
            .arg(&self.path)
            .status()
            .expect("run moat-agent cleanup");
        assert!(status.success(), "moat-agent cleanup failed: {status}");
        assert!(!self.path.exists(), "cleanup left {}", self.path.display());
    }
}

impl Default for StateDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        if self.path.exists() {
            let _ = Command::new(agent_binary())
                .args(["cleanup", "--state-dir"])
                .arg(&self.path)
                .status();
        }
    }
}

/// A moat-agent running in a node's namespace, with its stdout parsed line by line.
pub struct RunningAgent {
    process: Background,
    records: mpsc::Receiver<Value>,
    seen: Vec<Value>,
}

impl RunningAgent {
    /// Starts the agent on `interfaces` of `node` with its pins in `state`, and waits until it
    /// reports `agent.ready`.
    pub fn start(node: &Node, state: &StateDir, interfaces: &[&str], extra_args: &[&str]) -> Self {
        let mut agent = Self::spawn(node, state, interfaces, extra_args);
        agent.wait_for(Duration::from_secs(20), |record| {
            record["kind"] == "agent.ready"
        });
        agent
    }

    /// Starts the agent without waiting for anything.
    pub fn spawn(node: &Node, state: &StateDir, interfaces: &[&str], extra_args: &[&str]) -> Self {
        let mut command = node.command(agent_binary());
        for interface in interfaces {
            command.args(["--iface", interface]);
        }
        command
            .args([
                "--output",
                "jsonl",
                "--report-interval",
                "200ms",
                "--state-dir",
            ])
            .arg(&state.path)
            .args(extra_args);
        if !extra_args.contains(&"--metrics-addr") {
            command.args(["--metrics-addr", "off"]);
        }
        // Capture is on by default and sees every process on the host; tests of other features
        // leave it off so that they neither pay for it nor see each other's traffic.
        if !extra_args.contains(&"--capture") {
            command.args(["--capture", "off"]);
        }
        command.stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut process = testbed::spawn(&mut command).expect("start moat-agent");
        let stdout = process.child_mut().stdout.take().expect("piped stdout");
        let (sender, records) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let record: Value = serde_json::from_str(&line).unwrap_or_else(|error| {
                    panic!("agent wrote a line that is not JSON ({error}): {line}")
                });
                if sender.send(record).is_err() {
                    break;
                }
            }
        });
        Self {
            process,
            records,
            seen: Vec::new(),
        }
    }

    /// Every record read so far, after draining what is already waiting.
    pub fn records(&mut self) -> &[Value] {
        while let Ok(record) = self.records.try_recv() {
            self.seen.push(record);
        }
        &self.seen
    }

    /// The `agent.ready` record, if it was written.
    pub fn seen_ready(&self) -> Option<&Value> {
        self.seen
            .iter()
            .find(|record| record["kind"] == "agent.ready")
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// Sends a signal (SIGHUP to reload, SIGKILL to crash it).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the agent we started and have not reaped.
        unsafe { libc::kill(self.process.id() as i32, signal) };
    }

    /// Waits until a record matches, failing the test at the deadline. Returns the match.
    pub fn wait_for(&mut self, timeout: Duration, matches: impl Fn(&Value) -> bool) -> Value {
        if let Some(found) = self.seen.iter().find(|record| matches(record)) {
            return found.clone();
        }
        self.wait_since(self.seen.len(), timeout, matches)
    }

    /// A position in the record stream: take it before an action, then wait for the records the
    /// action causes with [`RunningAgent::wait_since`].
    pub fn mark(&mut self) -> usize {
        self.records().len()
    }

    /// Like [`RunningAgent::wait_for`], but only records from `mark` on count.
    pub fn wait_since(
        &mut self,
        mark: usize,
        timeout: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        self.records();
        if let Some(found) = self.seen[mark..].iter().find(|record| matches(record)) {
            return found.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.records.recv_timeout(left) {
                Ok(record) => {
                    self.seen.push(record.clone());
                    if matches(&record) {
                        return record;
                    }
                }
                Err(error) => panic!(
                    "no matching agent record within {timeout:?} ({error}); records so far:\n{}",
                    self.seen
                        .iter()
                        .map(Value::to_string)
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
            }
        }
    }

    /// Sends SIGTERM, checks that the agent exits cleanly, and returns every record it wrote.
    pub fn stop(mut self) -> Vec<Value> {
        let status = self
            .process
            .signal_and_wait(libc::SIGTERM, Duration::from_secs(10))
            .expect("moat-agent ends within 10s of SIGTERM");
        assert!(status.success(), "moat-agent exited with {status}");
        while let Ok(record) = self.records.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(record);
        }
        self.seen
    }
}

/// Writes `text` to `path`, replacing it atomically (as editors and config managers do).
pub fn write_atomically(path: &Path, text: &str) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text).expect("write temporary file");
    std::fs::rename(&temporary, path).expect("rename into place");
}

/// The latest `traffic.source` totals for (interface, source, protocol), if any were reported.
pub fn source_totals(
    records: &[Value],
    interface: &str,
    source: &str,
    protocol: &str,
) -> Option<(u64, u64)> {
    records
        .iter()
        .rfind(|record| {
            record["kind"] == "traffic.source"
                && record["interface"] == interface
                && record["source"] == source
                && record["protocol"] == protocol
        })
        .map(|record| {
            (
                record["packets"].as_u64().expect("packets is a number"),
                record["bytes"].as_u64().expect("bytes is a number"),
            )
        })
}
