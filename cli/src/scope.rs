//! The flags `moat calls` and `moat findings` share: who and when, how many, and follow mode;
//! `moat dataflow` shares when and how many.

use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Scope {
    /// Only those with either end in this namespace.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Only those with either end in this workload (a Deployment's, StatefulSet's... name).
    #[arg(long, short = 'w')]
    pub workload: Option<String>,
    /// Only those of this cluster (the inventory's `cluster`).
    #[arg(long)]
    pub cluster: Option<String>,
    /// Only those with this tag on either end, as NAME=VALUE.
    #[arg(long, value_name = "NAME=VALUE")]
    pub tag: Option<String>,
    #[command(flatten)]
    pub window: Window,
    /// Print the latest oldest first, then keep printing new ones as the collector stores them,
    /// until interrupted.
    #[arg(long, short = 'f')]
    pub follow: bool,
}

impl Scope {
    /// (namespace, workload, cluster, tag), empty where not given, as filters take them.
    pub fn names(&self) -> (String, String, String, String) {
        let text = |value: &Option<String>| value.clone().unwrap_or_default();
        (
            text(&self.namespace),
            text(&self.workload),
            text(&self.cluster),
            text(&self.tag),
        )
    }
}

/// When and how many.
#[derive(Debug, clap::Args)]
pub struct Window {
    /// Only those from this long ago on, e.g. `15m`, `2h`.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub since: Option<Duration>,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
}
