//! Ground truth for what crossed the wire: tcpdump writes a capture that must hold every packet
//! it saw (it reports its own drops), and tests read it back with tcpdump or tshark.

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use testbed::Background;

/// A running tcpdump writing to a pcap file.
pub struct PacketCapture {
    process: Background,
    lines: mpsc::Receiver<String>,
    pub file: PathBuf,
}

impl PacketCapture {
    /// Starts `tcpdump -i interface -w file filter` through `command` (made in the namespace of
    /// the interface), and waits until it is capturing.
    pub fn start(mut command: Command, interface: &str, file: &Path, filter: &str) -> Self {
        let mut process = testbed::spawn(
            command
                // A 64 MiB buffer, so that tcpdump keeps up with a veth at full speed.
                .args([
                    "-i",
                    interface,
                    "-nn",
                    "-U",
                    "--immediate-mode",
                    "-B",
                    "65536",
                    "-w",
                ])
                .arg(file)
                .arg(filter)
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        )
        .expect("start tcpdump");
        // tcpdump says "listening on" once its capture is open; what it says after is its
        // summary.
        let stderr = BufReader::new(process.child_mut().stderr.take().expect("piped stderr"));
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        let listening = lines
            .recv_timeout(Duration::from_secs(10))
            .expect("tcpdump starts within 10s");
        assert!(listening.contains("listening on"), "tcpdump: {listening}");
        Self {
            process,
            lines,
            file: file.to_owned(),
        }
    }

    /// Stops tcpdump and checks that the capture holds every packet it saw.
    pub fn stop(mut self) -> PathBuf {
        let status = self
            .process
            .signal_and_wait(libc::SIGINT, Duration::from_secs(5));
        assert!(status.is_some(), "tcpdump did not stop");
        let summary: String = self.lines.iter().collect::<Vec<_>>().join("\n");
        let summary_count = |what: &str| {
            summary
                .lines()
                .find_map(|line| line.strip_suffix(what))
                .and_then(|number| number.trim().parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no {what:?} in tcpdump's summary:\n{summary}"))
        };
        assert_eq!(summary_count("packets dropped by kernel"), 0, "{summary}");
        assert_eq!(
            summary_count("packets captured"),
            summary_count("packets received by filter"),
            "tcpdump must write every packet it saw to be ground truth:\n{summary}"
        );
        self.file
    }
}
