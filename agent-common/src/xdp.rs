//! What the XDP program on pod-facing interfaces records per packet.

/// Map names, as the loader looks them up in the object file.
pub mod map_names {
    /// Per-CPU hash of [`super::SourceKey`] to [`super::TrafficCounters`].
    pub const SOURCE_TRAFFIC: &str = "SOURCE_TRAFFIC";
    /// Per-CPU array of `u64`, indexed by [`super::XdpStat`].
    pub const XDP_STATS: &str = "XDP_STATS";
}

/// Distinct (interface, source address, protocol) triples the kernel tracks. When the table is
/// full, further new sources are not tracked and each of their frames counts as
/// [`XdpStat::SourceTableFull`], so the loss is visible rather than silent.
pub const SOURCE_TRAFFIC_MAX_ENTRIES: u32 = 65_536;

/// Values of [`SourceKey::family`] (the Linux AF_* numbers).
pub const FAMILY_IPV4: u8 = 2;
pub const FAMILY_IPV6: u8 = 10;

/// Who sent a frame, as seen on one interface. The address is laid out as everywhere on the
/// boundary (see [`crate::address`]): IPv4 in the first four bytes, the rest zero, with
/// [`SourceKey::family`] saying which.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SourceKey {
    /// Source address in network byte order.
    pub addr: [u8; 16],
    /// Index of the interface the frame arrived on.
    pub ifindex: u32,
    /// [`FAMILY_IPV4`] or [`FAMILY_IPV6`].
    pub family: u8,
    /// IP protocol number of the first header after the IP header (IPv6: the first next-header,
    /// which is an extension header's number when one is present).
    pub protocol: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<SourceKey>() == 24);

impl SourceKey {
    pub const fn new(family: u8, addr: [u8; 16], ifindex: u32, protocol: u8) -> Self {
        Self {
            addr,
            ifindex,
            family,
            protocol,
            _pad: [0; 2],
        }
    }
}

/// Packets and bytes (whole frames as XDP sees them: from the Ethernet header on, without FCS).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrafficCounters {
    pub packets: u64,
    pub bytes: u64,
}
const _: () = assert!(core::mem::size_of::<TrafficCounters>() == 16);

/// Slots of the per-CPU `XDP_STATS` array. Numbers are part of the boundary: never reuse one.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpStat {
    /// Every frame the program ran on.
    Frames = 0,
    /// Frames that carry neither IPv4 nor IPv6 (ARP, LLDP, ...): passed, not attributed.
    NonIp = 1,
    /// Frames too short for the headers they announce: passed, not attributed.
    Truncated = 2,
    /// Frames from a source the full `SOURCE_TRAFFIC` table could not take.
    SourceTableFull = 3,
    /// Drop events lost because the ring buffer to userspace was full.
    DropEventsLost = 4,
    /// Drop events not sent because the flow had one less than a second before (by design).
    DropEventsSuppressed = 5,
    /// Packets passed without rate limiting because the per-source state table refused an entry.
    RateStateFull = 6,
    /// Allowed flows whose connection-tracking entry could not be written: their replies will be
    /// judged as new traffic.
    ConntrackInsertFailed = 7,
}

impl XdpStat {
    /// Number of slots; the array map is sized with it.
    pub const COUNT: u32 = 8;
    pub const ALL: [XdpStat; Self::COUNT as usize] = [
        XdpStat::Frames,
        XdpStat::NonIp,
        XdpStat::Truncated,
        XdpStat::SourceTableFull,
        XdpStat::DropEventsLost,
        XdpStat::DropEventsSuppressed,
        XdpStat::RateStateFull,
        XdpStat::ConntrackInsertFailed,
    ];
}

#[cfg(feature = "user")]
mod pod_impls {
    // SAFETY: both types are #[repr(C)], Copy, made only of integers, with padding made explicit,
    // so every byte pattern the kernel writes is a valid value.
    unsafe impl aya::Pod for super::SourceKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::TrafficCounters {}
}
