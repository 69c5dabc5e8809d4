//! Fixed-header parsing: Ethernet (one VLAN tag), IPv4 or IPv6 (up to four extension headers),
//! and the first bytes of TCP, UDP and ICMP. Every read is bounds-checked against the frame end.

use agent_common::xdp::{FAMILY_IPV4, FAMILY_IPV6};
use aya_ebpf::programs::{TcContext, XdpContext};

/// Where a hook's packet bytes are: XDP and TC both give direct access between two addresses.
pub trait Frame {
    fn data(&self) -> usize;
    fn data_end(&self) -> usize;
}

impl Frame for XdpContext {
    #[inline(always)]
    fn data(&self) -> usize {
        XdpContext::data(self)
    }
    #[inline(always)]
    fn data_end(&self) -> usize {
        XdpContext::data_end(self)
    }
}

impl Frame for TcContext {
    #[inline(always)]
    fn data(&self) -> usize {
        TcContext::data(self)
    }
    #[inline(always)]
    fn data_end(&self) -> usize {
        TcContext::data_end(self)
    }
}

const ETH_HEADER_LEN: usize = 14;
const VLAN_TAG_LEN: usize = 4;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPV6_HEADER_LEN: usize = 40;
const MAX_IPV6_EXTENSION_HEADERS: usize = 4;

pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_ICMPV6: u8 = 58;
pub const TCP_FIN: u8 = 0x01;
pub const TCP_RST: u8 = 0x04;

/// Why a frame carries nothing to judge or attribute.
pub enum NotParsed {
    NotIp,
    Truncated,
}

/// What the program needs to know about an IP packet.
pub struct Packet {
    pub family: u8,
    /// Addresses as in the header; IPv4 in the first 4 bytes.
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// The header after IP (IPv6: the first next-header, extension or not), for per-source counts.
    pub first_protocol: u8,
    /// The transport protocol after any IPv6 extension headers.
    pub protocol: u8,
    /// Host byte order. For ICMP echo, the identifier stands in for a port (request: source,
    /// reply: destination), so that replies find their request in connection tracking.
    pub src_port: u16,
    pub dst_port: u16,
    /// True when `dst_port` is a real TCP or UDP destination port.
    pub has_ports: bool,
    pub tcp_flags: u8,
    /// ICMP or ICMPv6 type; 255 when not ICMP.
    pub icmp_type: u8,
}

#[inline(always)]
fn bytes_at<F: Frame>(ctx: &F, offset: usize, len: usize) -> Result<*const u8, NotParsed> {
    let start = ctx.data() + offset;
    if start + len > ctx.data_end() {
        return Err(NotParsed::Truncated);
    }
    Ok(start as *const u8)
}

/// Copies the `N` header bytes at `offset`, after one bounds check for all of them. Reading a
/// header whole (rather than byte by byte) keeps each check in the form the verifier tracks.
#[inline(always)]
fn header<const N: usize, F: Frame>(ctx: &F, offset: usize) -> Result<[u8; N], NotParsed> {
    let start = bytes_at(ctx, offset, N)?;
    let mut bytes = [0u8; N];
    // SAFETY: bytes_at checked that all N bytes lie inside the frame.
    unsafe { core::ptr::copy_nonoverlapping(start, bytes.as_mut_ptr(), N) };
    Ok(bytes)
}

#[inline(always)]
pub fn parse<F: Frame>(ctx: &F) -> Result<Packet, NotParsed> {
    // Only the EtherType matters: the addresses before it are never read.
    let ethertype_bytes: [u8; 2] = header(ctx, ETH_HEADER_LEN - 2)?;
    let mut ethertype = u16::from_be_bytes(ethertype_bytes);
    let mut l3 = ETH_HEADER_LEN;
    // One VLAN tag (802.1Q, or the outer 802.1ad of QinQ) is common on uplinks; deeper stacks
    // count as non-IP rather than cost a loop.
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        let tag: [u8; VLAN_TAG_LEN] = header(ctx, l3)?;
        ethertype = u16::from_be_bytes([tag[2], tag[3]]);
        l3 += VLAN_TAG_LEN;
    }
    let mut packet = Packet {
        family: 0,
        src: [0; 16],
        dst: [0; 16],
        first_protocol: 0,
        protocol: 0,
        src_port: 0,
        dst_port: 0,
        has_ports: false,
        tcp_flags: 0,
        icmp_type: 255,
    };
    let (l4, fragment_without_header) = match ethertype {
        ETH_P_IPV4 => {
            let ip: [u8; 20] = header(ctx, l3)?;
            let header_len = ((ip[0] & 0x0f) as usize) * 4;
            let fragment_offset = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff;
            packet.family = FAMILY_IPV4;
            packet.protocol = ip[9];
            packet.src[..4].copy_from_slice(&ip[12..16]);
            packet.dst[..4].copy_from_slice(&ip[16..20]);
            if header_len < 20 {
                return Err(NotParsed::Truncated);
            }
            (l3 + (header_len & 0x3c), fragment_offset != 0)
        }
        ETH_P_IPV6 => {
            let ip: [u8; IPV6_HEADER_LEN] = header(ctx, l3)?;
            packet.family = FAMILY_IPV6;
            packet.protocol = ip[6];
            packet.src.copy_from_slice(&ip[8..24]);
            packet.dst.copy_from_slice(&ip[24..40]);
            let mut offset = l3 + IPV6_HEADER_LEN;
            let mut fragment_without_header = false;
            packet.first_protocol = packet.protocol;
            for _ in 0..MAX_IPV6_EXTENSION_HEADERS {
                match packet.protocol {
                    // Hop-by-hop, routing, destination options: length in 8-byte units, plus 8.
                    0 | 43 | 60 => {
                        let extension: [u8; 8] = header(ctx, offset & 0x7ff)?;
                        packet.protocol = extension[0];
                        offset += (extension[1] as usize + 1) * 8;
                    }
                    // Fragment header: 8 bytes; only the first fragment carries the L4 header.
                    44 => {
                        let fragment: [u8; 8] = header(ctx, offset & 0x7ff)?;
                        packet.protocol = fragment[0];
                        fragment_without_header =
                            u16::from_be_bytes([fragment[2], fragment[3]]) >> 3 != 0;
                        offset += 8;
                    }
                    _ => break,
                }
            }
            (offset & 0x7ff, fragment_without_header)
        }
        _ => return Err(NotParsed::NotIp),
    };
    if packet.family == FAMILY_IPV4 {
        packet.first_protocol = packet.protocol;
    }
    if fragment_without_header {
        return Ok(packet);
    }
    match packet.protocol {
        PROTO_TCP => {
            let tcp: [u8; 14] = header(ctx, l4)?;
            packet.src_port = u16::from_be_bytes([tcp[0], tcp[1]]);
            packet.dst_port = u16::from_be_bytes([tcp[2], tcp[3]]);
            packet.tcp_flags = tcp[13];
            packet.has_ports = true;
        }
        PROTO_UDP => {
            let udp: [u8; 4] = header(ctx, l4)?;
            packet.src_port = u16::from_be_bytes([udp[0], udp[1]]);
            packet.dst_port = u16::from_be_bytes([udp[2], udp[3]]);
            packet.has_ports = true;
        }
        PROTO_ICMP | PROTO_ICMPV6 => {
            let icmp: [u8; 8] = header(ctx, l4)?;
            packet.icmp_type = icmp[0];
            let identifier = u16::from_be_bytes([icmp[4], icmp[5]]);
            let echo_request = if packet.protocol == PROTO_ICMP {
                8
            } else {
                128
            };
            let echo_reply = if packet.protocol == PROTO_ICMP {
                0
            } else {
                129
            };
            if packet.icmp_type == echo_request {
                packet.src_port = identifier;
            } else if packet.icmp_type == echo_reply {
                packet.dst_port = identifier;
            }
        }
        _ => {}
    }
    Ok(packet)
}

impl Packet {
    /// IPv6 neighbour discovery and multicast listener messages: IPv6 does not work without
    /// them, so policy never judges them (as ARP, which is not IP, is never judged).
    #[inline(always)]
    pub fn is_network_control(&self) -> bool {
        self.protocol == PROTO_ICMPV6 && matches!(self.icmp_type, 130..=137 | 143)
    }
}
