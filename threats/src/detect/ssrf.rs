//! Server-side request forgery: URLs in parameters that point at the node's own, the
//! cluster's or the cloud's internal addresses, however the address is spelled.

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Schemes that make a fetching server speak raw protocols or read files.
const DANGEROUS_SCHEMES: &[&str] = &[
    "gopher", "dict", "file", "tftp", "netdoc", "jar", "ldap", "expect",
];
const FETCH_SCHEMES: &[&str] = &["http", "https", "ftp", "ftps", "sftp", "ws", "wss"];
/// Public DNS names that resolve to the loopback address, for local development.
const LOOPBACK_NAMES: &[&str] = &["localtest.me", "lvh.me", "vcap.me"];
/// Domains of out-of-band interaction services: a server made to fetch one proves it can be
/// made to fetch anything.
const INTERACTION_DOMAINS: &[&str] = &[
    "burpcollaborator.net",
    "oastify.com",
    "interact.sh",
    "oast.fun",
    "oast.live",
    "oast.me",
    "oast.pro",
    "oast.site",
    "oast.online",
    "dnslog.cn",
    "ceye.io",
];
/// Host names of cloud instance metadata services.
const METADATA_HOSTS: &[&str] = &[
    "metadata.google.internal",
    "metadata",
    "instance-data",
    "metadata.azure.com",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Metadata,
    Internal,
    /// A public address written as a bare IP, or a URL ending in `?` so that what the server
    /// appends becomes a query: the shapes of remote file inclusion.
    RemoteInclude,
    Scheme,
}

/// The worst target among the URLs in `value`.
pub fn check(value: &str) -> Option<Target> {
    let mut worst = None;
    let mut rest = value;
    while let Some(at) = rest.find("://") {
        // After the last character that cannot be in a scheme (which may be several bytes).
        let scheme_start = rest[..at]
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-')))
            .map_or(0, |(index, c)| index + c.len_utf8());
        let scheme = &rest[scheme_start..at];
        let after = &rest[at + 3..];
        let at_value_start = value.len() - rest.len() + scheme_start == 0;
        // `jar:http://host!/`: Java fetches the archive and reads inside it.
        let nested = rest[..scheme_start].ends_with("jar:");
        let target = if nested {
            Some(Target::Scheme)
        } else {
            judge(scheme, after, at_value_start)
        };
        worst = match (worst, target) {
            (Some(Target::Metadata), _) | (_, None) => worst,
            (_, Some(Target::Metadata)) => target,
            (Some(Target::Scheme | Target::Internal), _) => worst,
            _ => target,
        };
        rest = after;
    }
    worst
}

fn judge(scheme: &str, after: &str, at_value_start: bool) -> Option<Target> {
    let authority_end = after
        .find(['/', '?', '#', '\\', ' ', '"', '\'', '<', '>'])
        .unwrap_or(after.len());
    let authority = &after[..authority_end];
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = if let Some(bracketed) = host_port.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    let host = normalize_host(host.trim_end_matches('.'));
    let class = classify_host(&host);
    if class.is_some() && (FETCH_SCHEMES.contains(&scheme) || DANGEROUS_SCHEMES.contains(&scheme)) {
        return class;
    }
    if DANGEROUS_SCHEMES.contains(&scheme) {
        return Some(Target::Scheme);
    }
    let ends_in_query_trick = after.ends_with('?') || after.ends_with("%00");
    let bare_ip = parse_ipv4(&host).is_some() || host.parse::<Ipv6Addr>().is_ok();
    (FETCH_SCHEMES.contains(&scheme) && at_value_start && (bare_ip || ends_in_query_trick))
        .then_some(Target::RemoteInclude)
}

/// A host as URL parsers read it: circled digits (`①②⑦`) and ideographic full stops are the
/// digits and dots they look like (IDNA maps them so).
fn normalize_host(host: &str) -> Cow<'_, str> {
    if host.is_ascii() {
        return Cow::Borrowed(host);
    }
    Cow::Owned(
        host.chars()
            .map(|c| match c {
                '\u{2460}'..='\u{2468}' => char::from(b'1' + (u32::from(c) - 0x2460) as u8),
                '\u{24ea}' => '0',
                '\u{3002}' | '\u{ff61}' => '.',
                other => other,
            })
            .collect(),
    )
}

/// Whether `host` is `domain` or a name under it.
fn under(host: &str, domain: &str) -> bool {
    host.strip_suffix(domain)
        .is_some_and(|rest| rest.is_empty() || rest.ends_with('.'))
}

fn classify_host(host: &str) -> Option<Target> {
    if METADATA_HOSTS.contains(&host) {
        return Some(Target::Metadata);
    }
    if host == "localhost"
        || host.ends_with(".localhost")
        || host.ends_with(".internal")
        || host.ends_with(".cluster.local")
        || host.ends_with(".local")
        || host.ends_with(".svc")
        || LOOPBACK_NAMES.iter().any(|name| under(host, name))
    {
        return Some(Target::Internal);
    }
    if INTERACTION_DOMAINS.iter().any(|domain| under(host, domain)) {
        return Some(Target::RemoteInclude);
    }
    if let Some(ip) = parse_ipv4(host).or_else(|| embedded_ipv4(host)) {
        return classify_ipv4(ip);
    }
    let ip: Ipv6Addr = host.parse().ok()?;
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_ipv4(v4);
    }
    let first = ip.segments()[0];
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        Some(Target::Metadata)
    } else if ip.is_loopback()
        || ip.is_unspecified()
        || first & 0xfe00 == 0xfc00
        || first & 0xffc0 == 0xfe80
    {
        Some(Target::Internal)
    } else {
        None
    }
}

/// Wildcard-DNS names (`10.0.0.1.nip.io`) resolve to the address they spell.
fn embedded_ipv4(host: &str) -> Option<Ipv4Addr> {
    let labels: Vec<&str> = host.split(['.', '-']).collect();
    labels
        .windows(4)
        .find_map(|window| window.join(".").parse().ok())
}

fn classify_ipv4(ip: Ipv4Addr) -> Option<Target> {
    let [a, b, ..] = ip.octets();
    if ip == Ipv4Addr::new(169, 254, 169, 254) || ip == Ipv4Addr::new(100, 100, 100, 200) {
        Some(Target::Metadata)
    } else if ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || (a == 100 && (64..128).contains(&b))
    {
        Some(Target::Internal)
    } else {
        None
    }
}

/// An IPv4 address as `inet_aton` reads it: one to four parts, each decimal, octal (leading
/// 0) or hex (0x), the last filling the remaining bytes (`127.1`, `2130706433`, `0x7f.1`).
pub fn parse_ipv4(host: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = host.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut values = Vec::with_capacity(parts.len());
    for part in &parts {
        let (digits, radix) =
            if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
                (hex, 16)
            } else if part.len() > 1 && part.starts_with('0') {
                (&part[1..], 8)
            } else {
                (*part, 10)
            };
        if digits.is_empty() && radix != 16 {
            return None;
        }
        values.push(if digits.is_empty() {
            0
        } else {
            u32::from_str_radix(digits, radix).ok()?
        });
    }
    let (last, leading) = values.split_last()?;
    if leading.iter().any(|v| *v > 255) {
        return None;
    }
    let last_bits = 8 * (4 - leading.len() as u32);
    if last_bits < 32 && *last >= 1 << last_bits {
        return None;
    }
    let high = leading
        .iter()
        .enumerate()
        .fold(0u32, |acc, (i, v)| acc | (v << (24 - 8 * i as u32)));
    Some(Ipv4Addr::from(high | last))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_multibyte_character_before_a_scheme_is_not_cut() {
        assert_eq!(
            super::check("¥http://169.254.169.254/"),
            Some(super::Target::Metadata)
        );
        assert_eq!(super::check("é://x"), None);
    }

    use super::*;

    #[test]
    fn internal_targets_in_every_spelling() {
        for (value, target) in [
            ("http://169.254.169.254/latest/meta-data/", Target::Metadata),
            (
                "http://metadata.google.internal/computeMetadata/v1/",
                Target::Metadata,
            ),
            ("https://127.0.0.1:8443/admin", Target::Internal),
            ("http://2130706433/", Target::Internal),
            ("http://0x7f000001/", Target::Internal),
            ("http://0177.0.0.1/", Target::Internal),
            ("http://127.1/", Target::Internal),
            ("http://[::ffff:127.0.0.1]/", Target::Internal),
            ("http://[::1]:80/", Target::Internal),
            ("http://example.com@10.0.0.5/", Target::Internal),
            ("http://192.168.1.1.nip.io/", Target::Internal),
            ("gopher://evil.example:70/_payload", Target::Scheme),
            ("http://203.0.113.9/shell.txt", Target::RemoteInclude),
            ("https://evil.example/shell.txt?", Target::RemoteInclude),
            (
                "http://\u{2460}\u{2461}\u{2466}.\u{24ea}.\u{24ea}.\u{2460}/",
                Target::Internal,
            ),
            ("http://app.localtest.me/", Target::Internal),
            ("http://x.oastify.com/", Target::RemoteInclude),
            ("jar:http://evil.example!/", Target::Scheme),
            ("http://kubernetes.default.svc/", Target::Internal),
        ] {
            assert_eq!(check(value), Some(target), "{value}");
        }
    }

    #[test]
    fn public_urls_are_not() {
        for value in [
            "https://example.com/callback?x=1",
            "see https://docs.example.org/guide#ssrf for details",
            "https://api.github.com/repos",
            "version 10.0.0.1 of the app",
            "https://notoastify.com/",
            "https://lvh.meadows.example/",
        ] {
            assert_eq!(check(value), None, "{value}");
        }
    }
}
