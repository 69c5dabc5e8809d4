//! Path traversal and local file inclusion: `../` climbs, encoded dots no client needs, and
//! names of files that hold secrets or system state.

use crate::decode;

/// Files and folders whose contents an attacker wants, matched after a `/` or at the start.
const SENSITIVE: &[&str] = &[
    "etc/passwd",
    "etc/shadow",
    "etc/group",
    "etc/hosts",
    "etc/issue",
    "etc/sudoers",
    "etc/crontab",
    "etc/security/",
    "etc/ssh/",
    "proc/self/",
    "proc/version",
    "proc/net/",
    "windows/win.ini",
    "windows/system32",
    "winnt/",
    "boot.ini",
    "win.ini",
    ".htaccess",
    ".htpasswd",
    "web.config",
    ".git/",
    ".svn/",
    ".hg/",
    ".env",
    "id_rsa",
    ".ssh/",
    "wp-config.php",
    "var/log/",
    ".bash_history",
    "applicationhost.config",
    "web-inf/",
    "meta-inf/",
    ".aws/credentials",
    ".docker/config.json",
    "var/run/secrets/",
    ".kube/config",
];
/// Encodings of dots and slashes that only a filter evasion sends: dots are never encoded by a
/// client (they need no encoding), nor anything twice or in overlong UTF-8.
const ENCODED: &[&str] = &[
    "%2e%2e", "%2e./", ".%2e/", "%252e", "%c0%ae", "%c0%af", "%c1%9c", "%u002e", "%uff0e",
    "..%255c", "..%252f",
];
/// A climb with its slash encoded, as clients encode any `/` in a value: an evasion only where
/// the value is a path, not a sentence that mentions one.
const ENCODED_SLASH: &[&str] = &["..%2f", "..%5c"];

/// The rule the `variant` (lower-cased) breaks; `raw` is the undecoded value.
pub fn check(variant: &str, raw: &str) -> Option<&'static str> {
    let raw = raw.to_ascii_lowercase();
    let path = variant.replace('\\', "/");
    // In a sentence a sensitive name is talk about it; in a path-shaped value it is a request.
    let path_shaped = !path.trim().contains(' ');
    let slash_encoded_in_path = || {
        ENCODED_SLASH.iter().any(|encoded| raw.contains(encoded))
            && !decode::percent_decode(&raw, true).trim().contains(' ')
    };
    if ENCODED.iter().any(|encoded| raw.contains(encoded)) || slash_encoded_in_path() {
        return Some("traversal.encoded_dots");
    }
    let climbs = path.matches("../").count()
        + path.matches("..;/").count()
        + usize::from(path.ends_with("/.."));
    if climbs >= 2 {
        return Some("traversal.dot_dot");
    }
    let sensitive = SENSITIVE.iter().any(|name| {
        path.match_indices(name).any(|(at, _)| {
            let before = path[..at].chars().next_back();
            at == 0 || matches!(before, Some('/' | ':' | '=' | '\0'))
        })
    });
    if sensitive && (climbs > 0 || path_shaped) {
        return Some("traversal.sensitive_file");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn climbs_and_secrets_are_found_and_docs_are_not() {
        for value in [
            "../../../etc/passwd",
            "..\\..\\windows\\win.ini",
            "/etc/shadow",
            "file=../.env",
            "/.git/config",
            "....//....//etc/hosts",
        ] {
            assert!(check(value, value).is_some(), "missed {value:?}");
        }
        assert!(check("../../x", "..%2f..%2fx").is_some());
        assert!(check("../x", "..%2fx").is_some());
        assert!(
            check(
                "the config lives in ../config/app.yaml",
                "the%20config%20lives%20in%20..%2fconfig%2fapp.yaml"
            )
            .is_none()
        );
        for value in [
            "the config lives in ../config/app.yaml",
            "see docs/install.md",
            "edit /etc/nginx/nginx.conf then reload",
            "we never read /etc/passwd in the app",
            "the config lives in ../config/app.yaml; edit it",
        ] {
            assert_eq!(check(value, value), None, "flagged {value:?}");
        }
    }
}
