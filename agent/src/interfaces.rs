//! Which interfaces exist, and which of them a `--iface-glob` selects.

use std::ffi::CStr;

/// Names of this network namespace's interfaces, from if_nameindex(3).
pub fn list() -> Vec<String> {
    // SAFETY: if_nameindex returns an array terminated by a zeroed entry, or null; we free it
    // with if_freenameindex and copy the names out before that.
    unsafe {
        let head = libc::if_nameindex();
        if head.is_null() {
            return Vec::new();
        }
        let mut names = Vec::new();
        let mut entry = head;
        while (*entry).if_index != 0 && !(*entry).if_name.is_null() {
            names.push(
                CStr::from_ptr((*entry).if_name)
                    .to_string_lossy()
                    .into_owned(),
            );
            entry = entry.add(1);
        }
        libc::if_freenameindex(head);
        names
    }
}

/// The kernel driver behind an interface (`veth`, `virtio_net`, `mlx5_core`, ...), from the
/// ETHTOOL_GDRVINFO ioctl; None if the interface does not exist or will not say.
pub fn driver_of(interface: &str) -> Option<String> {
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    const ETHTOOL_GDRVINFO: u32 = 0x0000_0003;
    /// struct ethtool_drvinfo from linux/ethtool.h.
    #[repr(C)]
    struct DriverInfo {
        cmd: u32,
        driver: [u8; 32],
        version: [u8; 32],
        fw_version: [u8; 32],
        bus_info: [u8; 32],
        erom_version: [u8; 32],
        reserved2: [u8; 12],
        n_priv_flags: u32,
        n_stats: u32,
        testinfo_len: u32,
        eedump_len: u32,
        regdump_len: u32,
    }
    let name = interface.as_bytes();
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return None;
    }
    // SAFETY: both structs are plain C data for which all-zero bytes are valid; the ioctl writes
    // only into `info` through the pointer we give it, which outlives the call; the socket is
    // closed on every path.
    unsafe {
        let mut info: DriverInfo = std::mem::zeroed();
        info.cmd = ETHTOOL_GDRVINFO;
        let mut request: libc::ifreq = std::mem::zeroed();
        for (slot, byte) in request.ifr_name.iter_mut().zip(name) {
            *slot = *byte as libc::c_char;
        }
        request.ifr_ifru.ifru_data = (&raw mut info).cast();
        let socket = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if socket < 0 {
            return None;
        }
        let result = libc::ioctl(socket, SIOCETHTOOL, &mut request);
        libc::close(socket);
        if result != 0 {
            return None;
        }
        let length = info.driver.iter().position(|&byte| byte == 0).unwrap_or(32);
        Some(String::from_utf8_lossy(&info.driver[..length]).into_owned())
    }
}

/// Shell-style match of `name` against `pattern`: `*` any run of characters, `?` one character.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    // Iterative with one backtrack point, so it is linear-ish and never recurses.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == '?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((star_p, star_n)) => {
                    p = star_p + 1;
                    n = star_n + 1;
                    star = Some((star_p, star_n + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_a_shell() {
        assert!(glob_matches("veth*", "veth1234"));
        assert!(glob_matches("veth*", "veth"));
        assert!(!glob_matches("veth*", "eth0"));
        assert!(glob_matches("v?-*", "v0-web"));
        assert!(!glob_matches("v?-*", "v10-web"));
        assert!(glob_matches("*", "lo"));
        assert!(glob_matches("*-db", "v2-db"));
        assert!(!glob_matches("*-db", "v2-dbx"));
        assert!(glob_matches("a*b*c", "axxbyyc"));
        assert!(!glob_matches("a*b*c", "axxbyy"));
        assert!(glob_matches("lo", "lo"));
        assert!(!glob_matches("lo", "lo0"));
    }

    #[test]
    fn drivers_are_named_and_missing_interfaces_have_none() {
        assert_eq!(driver_of("moat-no-such0"), None);
        assert_eq!(driver_of(""), None);
        assert_eq!(driver_of("a-name-far-too-long-for-linux"), None);
    }

    #[test]
    fn this_namespace_has_a_loopback() {
        assert!(list().iter().any(|name| name == "lo"));
    }
}
