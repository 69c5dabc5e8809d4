//! The kernel/userspace boundary of Moat.
//!
//! Every type that crosses between `agent-ebpf` and `agent` lives here, `#[repr(C)]` with explicit
//! padding and a compile-time size check, so both sides agree on the layout byte for byte. Map
//! names are constants so that a rename on one side cannot silently break the lookup on the other.
#![no_std]

pub mod capture;
pub mod policy;
pub mod xdp;

/// Addresses cross the boundary as 16 bytes and a family ([`xdp::FAMILY_IPV4`] or
/// [`xdp::FAMILY_IPV6`]): IPv4 in the first four bytes, the rest zero. These two functions are the
/// only translation between that layout and `IpAddr`.
pub mod address {
    use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use crate::xdp::{FAMILY_IPV4, FAMILY_IPV6};

    pub fn decode(family: u8, bytes: &[u8; 16]) -> IpAddr {
        if family == FAMILY_IPV4 {
            IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
        } else {
            IpAddr::V6(Ipv6Addr::from(*bytes))
        }
    }

    pub fn encode(address: IpAddr) -> (u8, [u8; 16]) {
        match address {
            IpAddr::V4(v4) => {
                let mut bytes = [0u8; 16];
                let [a, b, c, d] = v4.octets();
                bytes[0] = a;
                bytes[1] = b;
                bytes[2] = c;
                bytes[3] = d;
                (FAMILY_IPV4, bytes)
            }
            IpAddr::V6(v6) => (FAMILY_IPV6, v6.octets()),
        }
    }
}
