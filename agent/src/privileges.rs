//! Does this process hold what loading and attaching eBPF programs takes?
//!
//! Checked up front so that an operator who forgot `sudo` reads one sentence naming the missing
//! capabilities instead of a raw EPERM from deep inside the loader.

use thiserror::Error;

/// Capabilities moat-agent needs, by number (linux/capability.h) and name.
const REQUIRED: [(u32, &str); 3] = [(39, "CAP_BPF"), (12, "CAP_NET_ADMIN"), (38, "CAP_PERFMON")];
/// CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON on every kernel.
const CAP_SYS_ADMIN: u32 = 21;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PrivilegeError {
    #[error(
        "moat-agent needs {missing} to load eBPF programs and attach them to interfaces; run it as \
         root (e.g. `sudo moat-agent ...`) or grant them with \
         `setcap cap_bpf,cap_net_admin,cap_perfmon+ep $(command -v moat-agent)`",
        missing = .missing.join(", ")
    )]
    Missing { missing: Vec<&'static str> },
    #[error("cannot read this process's capabilities from /proc/self/status: {reason}")]
    Unreadable { reason: String },
}

/// Checks the effective capabilities of the running process.
pub fn check() -> Result<(), PrivilegeError> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|error| {
        PrivilegeError::Unreadable {
            reason: error.to_string(),
        }
    })?;
    let effective = effective_capabilities(&status).ok_or_else(|| PrivilegeError::Unreadable {
        reason: "no parseable CapEff line".to_owned(),
    })?;
    missing_capabilities(effective)
}

/// The CapEff bit set from the text of /proc/PID/status.
fn effective_capabilities(status: &str) -> Option<u64> {
    let hex = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

fn missing_capabilities(effective: u64) -> Result<(), PrivilegeError> {
    let has = |cap: u32| effective & (1u64 << cap) != 0;
    let missing: Vec<&'static str> = REQUIRED
        .iter()
        .filter(|(cap, _)| {
            let covered_by_sys_admin = *cap != 12 && has(CAP_SYS_ADMIN);
            !has(*cap) && !covered_by_sys_admin
        })
        .map(|(_, name)| *name)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(PrivilegeError::Missing { missing })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT_CAPS: u64 = 0x0000_01ff_ffff_ffff;

    #[test]
    fn reads_capeff_from_proc_status() {
        let status = "Name:\tmoat-agent\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(effective_capabilities(status), Some(ROOT_CAPS));
        assert_eq!(effective_capabilities("Name:\tx\n"), None);
        assert_eq!(effective_capabilities("CapEff:\tnot-hex\n"), None);
    }

    #[test]
    fn root_has_everything() {
        assert_eq!(missing_capabilities(ROOT_CAPS), Ok(()));
    }

    #[test]
    fn an_unprivileged_process_is_told_all_three() {
        let error = missing_capabilities(0).unwrap_err();
        assert_eq!(
            error,
            PrivilegeError::Missing {
                missing: vec!["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"]
            }
        );
        assert!(error.to_string().contains("sudo moat-agent"));
    }

    #[test]
    fn sys_admin_covers_bpf_and_perfmon_but_not_net_admin() {
        let error = missing_capabilities(1 << CAP_SYS_ADMIN).unwrap_err();
        assert_eq!(
            error,
            PrivilegeError::Missing {
                missing: vec!["CAP_NET_ADMIN"]
            }
        );
        assert_eq!(
            missing_capabilities((1 << CAP_SYS_ADMIN) | (1 << 12)),
            Ok(())
        );
    }

    #[test]
    fn the_three_fine_grained_capabilities_suffice() {
        assert_eq!(
            missing_capabilities((1 << 39) | (1 << 12) | (1 << 38)),
            Ok(())
        );
    }
}
