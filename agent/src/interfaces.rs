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
    fn this_namespace_has_a_loopback() {
        assert!(list().iter().any(|name| name == "lo"));
    }
}
