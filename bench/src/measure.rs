//! What a benchmark measures: wall time, and the busy time of all CPUs meanwhile (trafgen pins
//! its own worker, and on veth the receive path runs where the sender runs, so the whole
//! machine is the honest scope). Keep the machine otherwise idle while a benchmark runs.

use std::time::{Duration, Instant};

use anyhow::Context as _;

/// Busy time (user, nice, system, irq, softirq) of all CPUs from /proc/stat, in clock ticks.
fn busy_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines()
        .find(|line| line.starts_with("cpu "))
        .map(|line| {
            let fields: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|field| field.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal ...
            [0, 1, 2, 5, 6, 7]
                .iter()
                .filter_map(|&index| fields.get(index))
                .sum()
        })
        .unwrap_or(0)
}

fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).unwrap_or(100)
}

/// Wall time of `work`, and the machine's busy CPU time meanwhile.
pub struct Cost {
    pub wall: Duration,
    pub cpu: Duration,
}

pub fn cost_of<T>(work: impl FnOnce() -> T) -> (T, Cost) {
    let busy_before = busy_ticks();
    let started = Instant::now();
    let result = work();
    let wall = started.elapsed();
    let busy = busy_ticks().saturating_sub(busy_before);
    let cpu = Duration::from_nanos(busy * 1_000_000_000 / ticks_per_second());
    (result, Cost { wall, cpu })
}

/// A memory field of /proc/PID/status (`VmRSS`, `VmHWM`, ...) in bytes; `pid` may be `self`.
pub fn proc_status_bytes(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib * 1024)
}

/// User plus system CPU time of a process so far, from /proc/<pid>/stat.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may contain spaces: state is
    // the first, utime the 12th and stime the 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |index: usize| -> anyhow::Result<u64> {
        fields
            .get(index)
            .and_then(|field| field.parse().ok())
            .with_context(|| format!("no CPU time in /proc/{pid}/stat: {stat}"))
    };
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_nanos(
        total * 1_000_000_000 / ticks_per_second(),
    ))
}
