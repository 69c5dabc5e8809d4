//! Path traversal and local file inclusion: `../` climbs, encoded dots no client needs, and
//! names of files that hold secrets or system state.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder};

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
    "proc/sys/",
    "proc/interrupts",
    "proc/cpuinfo",
    "proc/meminfo",
    "proc/mounts",
    "proc/cmdline",
    "sys/class",
    "sys/kernel",
    "sys/devices",
    "etc/subuid",
    "etc/subgid",
    "etc/apache2/",
    "etc/httpd/",
    "etc/mysql/",
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
    ".docker/",
    "var/run/secrets/",
    ".kube/config",
];
/// Commands that print or copy a file: a sensitive path as their argument is being read.
const FILE_READERS: &[&str] = &[
    "cat", "more", "less", "head", "tail", "type", "nl", "tac", "strings", "od", "xxd", "base64",
    "grep", "cp", "vi", "vim", "nano", "source", "include", "require",
];
/// Dot folders a path may name: the one registry of well-known locations.
const PUBLIC_DOT_FOLDERS: &[&str] = &[".well-known"];
/// Encodings of dots and slashes that only a filter evasion sends: dots are never encoded by a
/// client (they need no encoding), nor anything twice or in overlong UTF-8.
const ENCODED: &[&str] = &[
    "%2e%2e", "%2e./", ".%2e/", "%252e", "%c0%ae", "%c0%af", "%c1%9c", "%u002e", "%uff0e",
    "..%255c", "..%252f",
];
/// A climb with its slash encoded, as clients encode any `/` in a value: an evasion only where
/// the value is a path, not a sentence that mentions one.
const ENCODED_SLASH: &[&str] = &["..%2f", "..%5c"];

/// The names and encodings to look for, each set found in one pass.
pub struct Traversal {
    sensitive: AhoCorasick,
    /// [`ENCODED`], then [`ENCODED_SLASH`], in any case.
    encoded: AhoCorasick,
}

impl Traversal {
    pub fn new() -> Self {
        Self {
            sensitive: AhoCorasick::new(SENSITIVE).expect("sensitive names compile"),
            encoded: AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .build(ENCODED.iter().chain(ENCODED_SLASH))
                .expect("encodings compile"),
        }
    }

    /// The rule the `variant` (lower-cased) breaks; `raw` is the undecoded value, `in_path`
    /// whether it is the request's path.
    pub fn check(&self, variant: &str, raw: &str, in_path: bool) -> Option<&'static str> {
        let mut slash_encoded = false;
        for found in self.encoded.find_overlapping_iter(raw) {
            if found.pattern().as_usize() < ENCODED.len() {
                return Some("traversal.encoded_dots");
            }
            slash_encoded = true;
        }
        if slash_encoded && !decode::percent_decode(raw, true).trim().contains(' ') {
            return Some("traversal.encoded_dots");
        }
        let path = variant.replace('\\', "/");
        let climbs = path.matches("../").count()
            + path.matches("..;/").count()
            + usize::from(path.ends_with("/.."));
        if climbs >= 2 {
            return Some("traversal.dot_dot");
        }
        let sensitive = self.sensitive.find_overlapping_iter(&path).any(|found| {
            let before = path[..found.start()].chars().next_back();
            found.start() == 0 || matches!(before, Some('/' | ':' | '=' | '\0'))
        });
        // In a sentence a sensitive name is talk about it; in a path-shaped value it is a
        // request.
        let path_shaped = !path.trim().contains(' ');
        if sensitive && (climbs > 0 || path_shaped || self.read_by_command(&path)) {
            return Some("traversal.sensitive_file");
        }
        (in_path && hidden_segment(&path)).then_some("traversal.hidden_file")
    }

    /// `cat /root/.ssh/id_rsa`: a sensitive name in the argument of a command that reads
    /// files.
    fn read_by_command(&self, text: &str) -> bool {
        let mut words =
            text.split(|c: char| c.is_whitespace() || matches!(c, ';' | '|' | '&' | '`' | '('));
        let mut previous = words.next().unwrap_or_default();
        for argument in words {
            let reader = std::mem::replace(&mut previous, argument);
            let names_sensitive = || {
                self.sensitive.find_overlapping_iter(argument).any(|found| {
                    let name = SENSITIVE[found.pattern().as_usize()];
                    let after = &argument[found.end()..];
                    name.ends_with('/') || after.is_empty() || after.starts_with('/')
                })
            };
            if FILE_READERS.contains(&reader)
                && (argument.starts_with('/') || argument.starts_with("~/"))
                && names_sensitive()
            {
                return true;
            }
        }
        false
    }
}

/// A path segment naming a hidden file or folder (`/.git/`, `/.cursor/mcp.json`): servers
/// keep tools' configuration and secrets there, and serve none of it on purpose.
fn hidden_segment(path: &str) -> bool {
    path.split('/').any(|segment| {
        segment.len() > 1
            && segment.starts_with('.')
            && segment[1..].starts_with(|c: char| c.is_ascii_alphanumeric())
            && !PUBLIC_DOT_FOLDERS.contains(&segment)
    })
}

#[cfg(test)]
mod tests {
    use super::Traversal;

    #[test]
    fn climbs_and_secrets_are_found_and_docs_are_not() {
        let traversal = Traversal::new();
        let check =
            |variant: &str, raw: &str, in_path: bool| traversal.check(variant, raw, in_path);
        for value in [
            "../../../etc/passwd",
            "..\\..\\windows\\win.ini",
            "/etc/shadow",
            "file=../.env",
            "/.git/config",
            "....//....//etc/hosts",
            "cat /root/.ssh/id_rsa",
            "/proc/sys/kernel/randomize_va_space",
            "/sys/class",
        ] {
            assert!(check(value, value, false).is_some(), "missed {value:?}");
        }
        assert!(check("../../x", "..%2f..%2fx", false).is_some());
        assert!(check("../x", "..%2fx", false).is_some());
        for path in [
            "/.cursor/mcp.json",
            "/app/.claude/settings.local.json",
            "/.git/head",
        ] {
            assert!(check(path, path, true).is_some(), "missed {path}");
        }
        for path in [
            "/.well-known/openid-configuration",
            "/v1/files/report.v2.pdf",
            "/a/../b",
        ] {
            assert_eq!(check(path, path, true), None, "flagged {path}");
        }
        // A dot folder in a value is a name, not a request for it.
        assert_eq!(check("see .cursor/rules", "see .cursor/rules", false), None);
        assert!(
            check(
                "the config lives in ../config/app.yaml",
                "the%20config%20lives%20in%20..%2fconfig%2fapp.yaml",
                true
            )
            .is_none()
        );
        for value in [
            "the config lives in ../config/app.yaml",
            "see docs/install.md",
            "edit /etc/nginx/nginx.conf then reload",
            "we never read /etc/passwd in the app",
            "please cat /etc/passwd-style lists into the doc",
            "the root/admin split is documented",
            "the config lives in ../config/app.yaml; edit it",
        ] {
            assert_eq!(check(value, value, false), None, "flagged {value:?}");
        }
    }
}
