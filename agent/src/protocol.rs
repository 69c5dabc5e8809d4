//! Names of IP protocol numbers (IANA "Assigned Internet Protocol Numbers"), for reports.

/// The lowercase IANA keyword for the protocols a node commonly carries, `ip-proto-N` otherwise,
/// so every number has a stable, greppable name.
pub fn ip_protocol_name(number: u8) -> std::borrow::Cow<'static, str> {
    let known = match number {
        0 => "hopopt",
        1 => "icmp",
        2 => "igmp",
        4 => "ipip",
        6 => "tcp",
        17 => "udp",
        41 => "ipv6",
        43 => "ipv6-route",
        44 => "ipv6-frag",
        47 => "gre",
        50 => "esp",
        51 => "ah",
        58 => "ipv6-icmp",
        59 => "ipv6-nonxt",
        60 => "ipv6-opts",
        89 => "ospf",
        103 => "pim",
        112 => "vrrp",
        132 => "sctp",
        136 => "udplite",
        _ => return format!("ip-proto-{number}").into(),
    };
    known.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_protocols_have_iana_names_and_the_rest_a_number() {
        assert_eq!(ip_protocol_name(6), "tcp");
        assert_eq!(ip_protocol_name(17), "udp");
        assert_eq!(ip_protocol_name(58), "ipv6-icmp");
        assert_eq!(ip_protocol_name(253), "ip-proto-253");
    }

    #[test]
    fn every_number_has_a_distinct_name() {
        let names: std::collections::HashSet<_> = (0..=u8::MAX).map(ip_protocol_name).collect();
        assert_eq!(names.len(), 256);
    }
}
