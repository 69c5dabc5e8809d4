//! Uploads of files the web server runs or reads as its configuration: a script dropped where
//! the server serves it is code execution (a web shell), a configuration file changes what the
//! server runs, a name that climbs folders writes anywhere.

use super::ThreatKind;

/// Extensions servers hand to an interpreter, by the kind of code they run.
const SCRIPT_EXTENSIONS: &[(&str, ThreatKind)] = &[
    ("php", ThreatKind::CommandInjection),
    ("phtml", ThreatKind::CommandInjection),
    ("pht", ThreatKind::CommandInjection),
    ("phar", ThreatKind::CommandInjection),
    ("asp", ThreatKind::CommandInjection),
    ("aspx", ThreatKind::CommandInjection),
    ("ashx", ThreatKind::CommandInjection),
    ("asmx", ThreatKind::CommandInjection),
    ("cshtml", ThreatKind::CommandInjection),
    ("shtml", ThreatKind::CommandInjection),
    ("cgi", ThreatKind::CommandInjection),
    ("jsp", ThreatKind::Jndi),
    ("jspx", ThreatKind::Jndi),
    ("jspf", ThreatKind::Jndi),
];
/// Files whose contents configure the server or application that reads them.
const SERVER_CONFIGURATION: &[&str] = &[
    ".htaccess",
    ".htpasswd",
    ".user.ini",
    "php.ini",
    "web.config",
    "wp-config.php",
    "settings.php",
    "config.yml",
    "config.php",
];

/// The kind and rule an uploaded file's `name` (as sent) breaks, if any.
pub fn check(name: &str) -> Option<(ThreatKind, &'static str)> {
    // A name that climbs out of the upload folder writes where the server reads.
    if name.contains("../") || name.contains("..\\") {
        return Some((ThreatKind::PathTraversal, "upload.path_climb"));
    }
    // Servers and file systems drop spaces and trailing dots: `shell.php. `, `a. php`.
    let name: String = name
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    if SERVER_CONFIGURATION.contains(&base) {
        return Some((ThreatKind::CommandInjection, "upload.server_configuration"));
    }
    // Apache runs `shell.php.jpg` and `shell.php5` too: every extension counts, with a version.
    base.split('.').skip(1).find_map(|extension| {
        let family = extension.trim_end_matches(|c: char| c.is_ascii_digit());
        SCRIPT_EXTENSIONS
            .iter()
            .find(|(script, _)| *script == family)
            .map(|(_, kind)| (*kind, "upload.server_script"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_and_server_configuration_are_found() {
        for name in [
            "shell.php",
            "photo. php",
            "a.php..",
            "test.php5.gif",
            "dir/x.phtml",
            "x.aspx",
            ".htaccess",
            "wp-config. php",
        ] {
            assert_eq!(
                check(name).map(|(kind, _)| kind),
                Some(ThreatKind::CommandInjection),
                "{name}"
            );
        }
        assert_eq!(
            check("shell.jsp  ").map(|(kind, _)| kind),
            Some(ThreatKind::Jndi)
        );
        for name in ["../1.7z", "..\\1.7z"] {
            assert_eq!(
                check(name).map(|(kind, _)| kind),
                Some(ThreatKind::PathTraversal),
                "{name}"
            );
        }
    }

    #[test]
    fn documents_and_images_are_not() {
        for name in [
            "report.pdf",
            "photo.jpeg",
            "phpinfo-notes.txt",
            "my.aspiration.doc",
            "config.yml.example",
            "archive.tar.gz",
            "notes..final.txt",
        ] {
            assert_eq!(check(name), None, "{name}");
        }
    }
}
