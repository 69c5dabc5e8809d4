//! Security scanners, known by the names their default User-Agents and headers carry.

use aho_corasick::AhoCorasick;

/// Product tokens of attack tools, lower-case, as their default User-Agents carry them.
const TOOLS: &[&str] = &[
    "sqlmap",
    "nikto",
    "nuclei",
    "nmap",
    "masscan",
    "zgrab",
    "havij",
    "arachni",
    "acunetix",
    "netsparker",
    "w3af",
    "dirbuster",
    "gobuster",
    "ffuf",
    "wfuzz",
    "wpscan",
    "openvas",
    "nessus",
    "zaproxy",
    "owasp zap",
    "jaeles",
    "feroxbuster",
    "commix",
    "skipfish",
    "whatweb",
    "paros",
    "webinspect",
    "appscan",
    "burpsuite",
    "burp collaborator",
    "qualys",
    "morfeus",
    "zmeu",
    "jbrofuzz",
    "grabber",
    "nsauditor",
    "bsqlbf",
    "sqlninja",
    "metasploit",
    "hydra",
    "brutus",
    "dirb/",
    "xsser",
    "vega/",
    "webshag",
    "blackwidow",
    "httpx - open-source",
    "interactsh",
    "gospider",
    "katana",
    "dotdotpwn",
    "fimap",
    "joomscan",
    "droopescan",
    "cmsmap",
    "wapiti",
    "grendel-scan",
    "mysqloit",
    "n-stealth",
    "pangolin",
    "sitelock",
    "wprecon",
    "cgichk",
];
/// Header names only scanners send.
const HEADERS: &[&str] = &[
    "acunetix-product",
    "acunetix-scanning-agreement",
    "x-scanner",
    "x-wipp",
    "x-scan-memo",
    "x-ratproxy-loop",
];

/// The attack tools' product tokens, found in one pass over a User-Agent.
pub struct Tools(AhoCorasick);

impl Tools {
    pub fn new() -> Self {
        Self(
            AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .build(TOOLS)
                .expect("tool names compile"),
        )
    }

    pub fn check_user_agent(&self, user_agent: &str) -> Option<&'static str> {
        self.0.is_match(user_agent).then_some("scanner.user_agent")
    }
}

pub fn check_header_name(name: &str) -> Option<&'static str> {
    HEADERS
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
        .then_some("scanner.header")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_are_named_and_browsers_are_not() {
        let tools = Tools::new();
        let check_user_agent = |user_agent: &str| tools.check_user_agent(user_agent);
        assert!(check_user_agent("sqlmap/1.7.2#stable (https://sqlmap.org)").is_some());
        assert!(check_user_agent("Mozilla/5.00 (Nikto/2.1.6)").is_some());
        assert!(check_header_name("Acunetix-Product").is_some());
        assert_eq!(
            check_user_agent("Mozilla/5.0 (X11; Linux x86_64) Firefox/126.0"),
            None
        );
        assert_eq!(check_user_agent("okhttp/4.12.0"), None);
    }
}
