//! Strict CIDR parsing: a typo in a security policy must fail loudly, not widen a range.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CidrError {
    #[error(
        "{text:?} is not an IP address or CIDR; write one like 198.18.1.0/24, 198.18.1.7 or fd00:198:18::/64"
    )]
    Malformed { text: String },
    #[error("{text:?} has host bits set; did you mean {suggestion}?")]
    HostBitsSet { text: String, suggestion: IpNetwork },
    #[error("{text:?} is an IPv4-mapped IPv6 range; write the IPv4 form instead")]
    Ipv4Mapped { text: String },
}

/// Parses `a.b.c.d/len`, `x::y/len`, or a bare address (a /32 or /128).
pub fn parse_cidr(text: &str) -> Result<IpNetwork, CidrError> {
    let trimmed = text.trim();
    let malformed = || CidrError::Malformed {
        text: text.to_owned(),
    };
    let network = if trimmed.contains('/') {
        trimmed.parse::<IpNetwork>().map_err(|_| malformed())?
    } else {
        IpNetwork::from(trimmed.parse::<IpAddr>().map_err(|_| malformed())?)
    };
    if network.ip() != network.network() {
        let suggestion =
            IpNetwork::new(network.network(), network.prefix()).map_err(|_| malformed())?;
        return Err(CidrError::HostBitsSet {
            text: text.to_owned(),
            suggestion,
        });
    }
    if let IpNetwork::V6(v6) = network
        && v6.ip().to_ipv4_mapped().is_some()
    {
        return Err(CidrError::Ipv4Mapped {
            text: text.to_owned(),
        });
    }
    Ok(network)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_networks_and_bare_addresses() {
        assert_eq!(
            parse_cidr("198.18.1.0/24").unwrap().to_string(),
            "198.18.1.0/24"
        );
        assert_eq!(
            parse_cidr(" 198.18.1.7 ").unwrap().to_string(),
            "198.18.1.7/32"
        );
        assert_eq!(
            parse_cidr("fd00:198:18::/64").unwrap().to_string(),
            "fd00:198:18::/64"
        );
        assert_eq!(parse_cidr("fd00::1").unwrap().prefix(), 128);
        assert_eq!(parse_cidr("0.0.0.0/0").unwrap().prefix(), 0);
    }

    #[test]
    fn refuses_what_would_silently_mean_something_else() {
        assert_eq!(
            parse_cidr("198.18.1.5/24").unwrap_err().to_string(),
            "\"198.18.1.5/24\" has host bits set; did you mean 198.18.1.0/24?"
        );
        assert!(matches!(
            parse_cidr("198.18.1/24"),
            Err(CidrError::Malformed { .. })
        ));
        assert!(matches!(
            parse_cidr("198.18.1.0/33"),
            Err(CidrError::Malformed { .. })
        ));
        assert!(matches!(parse_cidr("db"), Err(CidrError::Malformed { .. })));
        assert!(matches!(
            parse_cidr("::ffff:198.18.0.1"),
            Err(CidrError::Ipv4Mapped { .. })
        ));
    }
}
