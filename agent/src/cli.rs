//! Command-line flags of moat-agent.

use std::{path::PathBuf, time::Duration};

use clap::{Args as ClapArgs, Parser, Subcommand, ValueEnum};

/// Moat's node agent: attaches Moat's kernel program (TC on pod veths, XDP on uplinks) to this
/// node's interfaces, enforces a policy file there (blocklists, deny rules, isolation, per-source rate
/// limits), and reports what passed and what was dropped.
///
/// Needs root (or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON). Runs until SIGINT or SIGTERM, then
/// prints a last report listing every source. Enforcement is pinned in bpffs and stays in force
/// when the agent stops or crashes; the next agent takes it over without a gap, and
/// `moat-agent cleanup` removes it.
#[derive(Debug, Parser)]
#[command(name = "moat-agent", version, args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub run: RunArgs,

    /// Log filter for standard error, e.g. `debug` or `agent=debug,aya=warn`. Defaults to `info`.
    #[arg(long, env = "MOAT_LOG", value_name = "FILTER", global = true)]
    pub log_level: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Detach every program and remove every link and map Moat pinned under the state
    /// directory; enforcement stops. Safe to run when nothing is there.
    Cleanup {
        /// The bpffs directory the agent ran with.
        #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
}

pub const DEFAULT_STATE_DIR: &str = "/sys/fs/bpf/moat";

#[derive(Debug, ClapArgs)]
pub struct RunArgs {
    /// Interface to attach to (the node side of a pod's veth pair, or an uplink). Repeat the flag
    /// for several interfaces.
    #[arg(long = "iface", value_name = "NAME")]
    pub interfaces: Vec<String>,

    /// Attach to every interface whose name matches this glob (`*` and `?`), e.g. `veth*`,
    /// including interfaces created later; interfaces that disappear are let go. Repeatable;
    /// checked every second.
    #[arg(long = "iface-glob", value_name = "GLOB")]
    pub interface_globs: Vec<String>,

    /// Policy file (YAML) to enforce; docs/policy.md describes it. Edits (and SIGHUP) reload it
    /// atomically; an invalid edit is refused with file, line and field, and the last good
    /// policy stays in force. Without it, nothing is dropped.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,

    /// bpffs directory where maps and links are pinned, so enforcement survives the agent.
    /// Agents on one host must not share one.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,

    /// Which kernel hook enforces on an interface: `xdp` (fastest where a NIC driver runs it
    /// natively: uplinks, physical NICs), `tcx` (TC ingress; on veth it keeps the GSO batching
    /// that XDP would make the pair give up, which costs allowed TCP most of its throughput), or
    /// `auto`: tcx on veth interfaces, xdp elsewhere.
    #[arg(long, value_enum, default_value_t = HookArg::Auto)]
    pub hook: HookArg,

    /// How XDP runs where XDP is used: `native` in the driver (fast; veth and most physical NICs have it),
    /// `generic` in the kernel's network stack (works everywhere, slower), or `auto`: native where
    /// the driver supports it, generic elsewhere. The log says which mode each interface got.
    #[arg(long, value_enum, default_value_t = XdpModeArg::Auto)]
    pub xdp_mode: XdpModeArg,

    /// Format of the records on standard output: `jsonl` (one JSON object per line, for
    /// machines; docs/agent-output.md) or `text` (for people).
    #[arg(long, value_enum, default_value_t = OutputFormat::Jsonl)]
    pub output: OutputFormat,

    /// How often to report traffic, e.g. `10s`, `500ms`. Each report lists the sources whose
    /// counters changed since the previous one, with totals kept in the pinned maps (so across
    /// agent restarts, until `moat-agent cleanup`).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_interval)]
    pub report_interval: Duration,

    /// Address for Prometheus metrics (`/metrics`) and health checks (`/healthz`, `/readyz`).
    /// `off` disables the endpoint.
    #[arg(long, value_name = "ADDR|off", default_value = "127.0.0.1:9464")]
    pub metrics_addr: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum HookArg {
    Auto,
    Xdp,
    Tcx,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum XdpModeArg {
    Auto,
    Native,
    Generic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Jsonl,
    Text,
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(text)
        .map_err(|error| format!("{error}; write a duration such as `10s` or `500ms`"))?;
    if interval < Duration::from_millis(100) {
        return Err(format!(
            "{text} is shorter than the 100ms minimum; reading the maps more often costs CPU for no \
             new information"
        ));
    }
    Ok(interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_into_args() {
        let args = Args::try_parse_from([
            "moat-agent",
            "--iface",
            "veth0",
            "--iface",
            "veth1",
            "--iface-glob",
            "lxc*",
            "--policy",
            "/etc/moat/policy.yaml",
            "--xdp-mode",
            "generic",
            "--output",
            "text",
            "--report-interval",
            "500ms",
        ])
        .expect("valid flags");
        assert!(args.command.is_none());
        assert_eq!(args.run.interfaces, ["veth0", "veth1"]);
        assert_eq!(args.run.interface_globs, ["lxc*"]);
        assert_eq!(
            args.run.policy,
            Some(PathBuf::from("/etc/moat/policy.yaml"))
        );
        assert_eq!(args.run.xdp_mode, XdpModeArg::Generic);
        assert_eq!(args.run.output, OutputFormat::Text);
        assert_eq!(args.run.report_interval, Duration::from_millis(500));
        assert_eq!(args.run.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
    }

    #[test]
    fn cleanup_is_a_subcommand_with_its_own_state_dir() {
        let args = Args::try_parse_from(["moat-agent", "cleanup", "--state-dir", "/sys/fs/bpf/x"])
            .expect("valid flags");
        match args.command {
            Some(Command::Cleanup { state_dir }) => {
                assert_eq!(state_dir, PathBuf::from("/sys/fs/bpf/x"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn intervals_are_validated_with_a_hint() {
        assert!(
            parse_interval("fast")
                .unwrap_err()
                .contains("such as `10s`")
        );
        assert!(
            parse_interval("10ms")
                .unwrap_err()
                .contains("100ms minimum")
        );
        assert_eq!(parse_interval("2s"), Ok(Duration::from_secs(2)));
    }
}
