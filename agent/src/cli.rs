//! Command-line flags of moat-agent.

use std::time::Duration;

use clap::{Parser, ValueEnum};

/// Moat's node agent: attaches Moat's kernel programs to this node's pod-facing interfaces and
/// reports, per interface and source address, the traffic they saw.
///
/// Needs root (or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON). Runs until SIGINT or SIGTERM, then
/// prints a last report with every source and detaches everything it attached.
#[derive(Debug, Parser)]
#[command(name = "moat-agent", version)]
pub struct Args {
    /// Interface to attach to (the node side of a pod's veth pair, or an uplink). Repeat the flag
    /// for several interfaces.
    #[arg(long = "iface", value_name = "NAME", required = true)]
    pub interfaces: Vec<String>,

    /// How XDP runs: `native` in the driver (fast; veth and most physical NICs have it),
    /// `generic` in the kernel's network stack (works everywhere, slower), or `auto`: native where
    /// the driver supports it, generic elsewhere. The log says which mode each interface got.
    #[arg(long, value_enum, default_value_t = XdpModeArg::Auto)]
    pub xdp_mode: XdpModeArg,

    /// Format of the reports on standard output: `jsonl` (one JSON object per line, for machines)
    /// or `text` (an aligned table, for people).
    #[arg(long, value_enum, default_value_t = OutputFormat::Jsonl)]
    pub output: OutputFormat,

    /// How often to report, e.g. `10s`, `500ms`. Each report lists the sources whose counters
    /// changed since the previous one, with totals since the agent started; the last report, on
    /// SIGINT or SIGTERM, lists every source.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_interval)]
    pub report_interval: Duration,

    /// Log filter for standard error, e.g. `debug` or `agent=debug,aya=warn`. Defaults to `info`.
    #[arg(long, env = "MOAT_LOG", value_name = "FILTER")]
    pub log_level: Option<String>,
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
            "--xdp-mode",
            "generic",
            "--output",
            "text",
            "--report-interval",
            "500ms",
        ])
        .expect("valid flags");
        assert_eq!(args.interfaces, ["veth0", "veth1"]);
        assert_eq!(args.xdp_mode, XdpModeArg::Generic);
        assert_eq!(args.output, OutputFormat::Text);
        assert_eq!(args.report_interval, Duration::from_millis(500));
    }

    #[test]
    fn an_interface_is_required() {
        let error = Args::try_parse_from(["moat-agent"]).expect_err("no --iface");
        assert!(error.to_string().contains("--iface"), "{error}");
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
