//! Enforcement tables: what userspace compiles a policy into and the XDP program looks up.
//!
//! Policy tables come in two slots. Userspace fills the inactive slot, then flips
//! [`CONFIG_ACTIVE_SLOT`] with one array write; the program reads the slot once per packet, so
//! every packet is judged wholly by the old policy or wholly by the new one.

/// Map names; policy maps have one per slot, `_0` and `_1`.
pub mod map_names {
    pub const CONFIG: &str = "POLICY_CONFIG";
    pub const IDENTITY_EXACT: [&str; 2] = ["IDENTITY_EXACT_0", "IDENTITY_EXACT_1"];
    pub const IDENTITY_PREFIX: [&str; 2] = ["IDENTITY_PREFIX_0", "IDENTITY_PREFIX_1"];
    pub const BLOCK_EXACT: [&str; 2] = ["BLOCK_EXACT_0", "BLOCK_EXACT_1"];
    pub const BLOCK_PREFIX: [&str; 2] = ["BLOCK_PREFIX_0", "BLOCK_PREFIX_1"];
    pub const BLOCK_V4_BITMAP: [&str; 2] = ["BLOCK_V4_BITMAP_0", "BLOCK_V4_BITMAP_1"];
    pub const RULES: [&str; 2] = ["RULES_0", "RULES_1"];
    pub const RATE_LIMITS: [&str; 2] = ["RATE_LIMITS_0", "RATE_LIMITS_1"];
    pub const VERDICTS: [&str; 2] = ["VERDICTS_0", "VERDICTS_1"];
    /// Sources blocked for a while through the agent's API, outside the policy file.
    pub const TIMED_BLOCK_EXACT: &str = "TIMED_BLOCK_EXACT";
    pub const TIMED_BLOCK_PREFIX: &str = "TIMED_BLOCK_PREFIX";
    pub const CONNTRACK: &str = "CONNTRACK";
    pub const RATE_STATE: &str = "RATE_STATE";
    pub const DROP_EVENT_RECENT: &str = "DROP_EVENT_RECENT";
    pub const DROP_EVENTS: &str = "DROP_EVENTS";
}

/// Capacities. Userspace refuses a policy that does not fit rather than load part of it.
pub const IDENTITY_EXACT_MAX_ENTRIES: u32 = 65_536;
pub const IDENTITY_PREFIX_MAX_ENTRIES: u32 = 65_536;
pub const BLOCK_EXACT_MAX_ENTRIES: u32 = 262_144;
pub const BLOCK_PREFIX_MAX_ENTRIES: u32 = 262_144;
/// The IPv4 blocklist down to /24 as a bitmap, one bit per /24, in 64-bit words (2 MiB): one
/// array lookup instead of a trie walk. A blocklist needs only "is it in any listed range", not
/// the longest match, so ranges can be merged into bits.
pub const BLOCK_V4_BITMAP_WORDS: u32 = 1 << 18;
/// IPv4 prefixes longer than /24 (at most 128 addresses) go into the exact table address by
/// address; only IPv6 prefixes use the trie.
pub const BLOCK_V4_BITMAP_PREFIX: u8 = 24;
pub const RULES_MAX_ENTRIES: u32 = 65_536;
pub const MAX_RULES: u32 = 4_096;
pub const MAX_RATE_LIMITS: u32 = 64;
pub const TIMED_BLOCK_MAX_ENTRIES: u32 = 65_536;
/// Connections tracked so replies pass; least recently used ones are evicted first.
pub const CONNTRACK_MAX_ENTRIES: u32 = 262_144;
pub const RATE_STATE_MAX_ENTRIES: u32 = 131_072;
/// Per CPU, the last drop event of the flows hashing to each slot: a direct-mapped table, far
/// cheaper per dropped packet than an LRU map. Two flows sharing a slot may each get more than
/// one event a second; ring-buffer loss stays counted either way.
pub const DROP_EVENT_RECENT_SLOTS: u32 = 4_096;
pub const DROP_EVENTS_BYTES: u32 = 1 << 20;

/// Identity ids: 0 is "world" (an address no identity covers); named identities count from 1.
pub const IDENTITY_WORLD: u32 = 0;
/// In a rule key, "any identity".
pub const IDENTITY_ANY: u32 = u32::MAX;
/// In a rule key, "any protocol" (255 is reserved by IANA, so it never names a real one).
pub const PROTOCOL_ANY: u8 = 255;
/// In a rule key, "any port" (port 0 is never a real destination).
pub const PORT_ANY: u16 = 0;

/// Identity flags.
pub const IDENTITY_ISOLATED: u32 = 1;

/// Slots of the config array.
pub const CONFIG_ACTIVE_SLOT: u32 = 0;
/// How many timed blocks are in force; at 0 the program skips their lookups.
pub const CONFIG_TIMED_BLOCKS: u32 = 1;
/// Flags of the world identity (no map entry carries them), for policy slot 0; slot 1's is at
/// this index plus [`CONFIG_PER_SLOT_STRIDE`], as for the next two.
pub const CONFIG_WORLD_FLAGS: u32 = 2;
/// Rate-limit slot of the world identity, plus one (0: none).
pub const CONFIG_WORLD_RATE_LIMIT: u32 = 3;
/// Which of the slot's tables hold entries (`SLOT_HAS_*`): an empty table costs no lookup.
pub const CONFIG_SLOT_CONTENTS: u32 = 4;
pub const CONFIG_PER_SLOT_STRIDE: u32 = 3;
pub const CONFIG_SLOTS: u32 = 8;

pub const SLOT_HAS_IDENTITY_EXACT: u32 = 1;
pub const SLOT_HAS_IDENTITY_PREFIX: u32 = 2;
pub const SLOT_HAS_BLOCK_EXACT: u32 = 4;
pub const SLOT_HAS_BLOCK_PREFIX: u32 = 8;
pub const SLOT_HAS_RULES: u32 = 16;
pub const SLOT_HAS_BLOCK_V4_BITMAP: u32 = 32;

/// Connection-tracking lifetimes, refreshed by every packet of the flow.
pub const CONNTRACK_TCP_NS: u64 = 6 * 3600 * 1_000_000_000;
pub const CONNTRACK_TCP_CLOSING_NS: u64 = 10 * 1_000_000_000;
pub const CONNTRACK_OTHER_NS: u64 = 60 * 1_000_000_000;
/// At most one drop event per flow in this interval; the rest are only counted.
pub const DROP_EVENT_INTERVAL_NS: u64 = 1_000_000_000;

/// An address with its family, as hash maps key it. IPv4 fills the first 4 bytes of `addr`;
/// the rest stays zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpKey {
    /// [`crate::xdp::FAMILY_IPV4`] or [`crate::xdp::FAMILY_IPV6`].
    pub family: u8,
    pub _pad: [u8; 3],
    pub addr: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<IpKey>() == 20);

impl IpKey {
    /// `addr` as the packet carries it: IPv4 in the first 4 bytes, the rest already zero.
    #[inline(always)]
    pub const fn new(family: u8, addr: [u8; 16]) -> Self {
        Self {
            family,
            _pad: [0; 3],
            addr,
        }
    }
}

/// Bits of an [`IpKey`] before the address: the family byte and its padding. A prefix-trie key
/// always covers them, so an IPv6 prefix never matches an IPv4 address or the other way round.
pub const PREFIX_FAMILY_BITS: u32 = 32;

/// Key of the prefix tries: [`PREFIX_FAMILY_BITS`] plus the network's prefix length.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PrefixKey {
    pub prefix_len: u32,
    pub ip: IpKey,
}
const _: () = assert!(core::mem::size_of::<PrefixKey>() == 24);

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct IdentityValue {
    pub id: u32,
    /// [`IDENTITY_ISOLATED`], ...
    pub flags: u32,
    /// Index into the rate-limit array plus one; 0 when the identity has no rate limit.
    pub rate_limit: u32,
}
const _: () = assert!(core::mem::size_of::<IdentityValue>() == 12);

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RuleKey {
    pub from: u32,
    pub to: u32,
    pub port: u16,
    pub protocol: u8,
    pub _pad: u8,
}
const _: () = assert!(core::mem::size_of::<RuleKey>() == 12);

impl RuleKey {
    pub const fn new(from: u32, to: u32, protocol: u8, port: u16) -> Self {
        Self {
            from,
            to,
            port,
            protocol,
            _pad: 0,
        }
    }
}

pub const ACTION_ALLOW: u32 = 1;
pub const ACTION_DENY: u32 = 2;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RuleValue {
    /// [`ACTION_ALLOW`] or [`ACTION_DENY`].
    pub action: u32,
    /// Index of the deciding rule in the policy file.
    pub rule: u32,
}
const _: () = assert!(core::mem::size_of::<RuleValue>() == 8);

impl RuleValue {
    /// Two rules decide together: deny beats allow, and within the winning action the first rule
    /// of the file is the one reported. Userspace folds rule entries with it, and the kernel
    /// combines equally specific lookups with it, so both sides always agree.
    #[inline(always)]
    pub fn combine(self, other: RuleValue) -> RuleValue {
        match (self.action == ACTION_DENY, other.action == ACTION_DENY) {
            (true, false) => self,
            (false, true) => other,
            _ if self.rule <= other.rule => self,
            _ => other,
        }
    }
}

/// Generic cell-rate algorithm parameters of one per-source rate limit.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct RateLimitConfig {
    /// Nanoseconds one packet costs: 1e9 / packets per second.
    pub interval_ns: u64,
    /// How far ahead of now a source may run: burst * interval.
    pub tolerance_ns: u64,
}
const _: () = assert!(core::mem::size_of::<RateLimitConfig>() == 16);

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RateStateKey {
    pub source: IpKey,
    pub rate_limit: u32,
}
const _: () = assert!(core::mem::size_of::<RateStateKey>() == 24);

/// A timed block: the source is dropped until `expires_ns` (CLOCK_MONOTONIC, as
/// `bpf_ktime_get_ns`), so it lapses in the kernel even if the agent is gone.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimedBlock {
    pub expires_ns: u64,
}

/// When the flow hashing to a [`DROP_EVENT_RECENT_SLOTS`] slot last had a drop event.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecentDrop {
    pub flow_hash: u64,
    pub time_ns: u64,
}

/// One direction of a flow, as connection tracking and drop-event suppression key it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    pub protocol: u8,
    /// [`crate::xdp::FAMILY_IPV4`] (addresses in the first 4 bytes) or
    /// [`crate::xdp::FAMILY_IPV6`].
    pub family: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<FlowKey>() == 40);

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConntrackEntry {
    pub expires_ns: u64,
}

/// Verdict counters: one slot per reason, then one per rule. Numbers are part of the boundary.
pub mod verdict_slot {
    /// Passed: no rule matched and the destination is not isolated.
    pub const DEFAULT_PASS: u32 = 0;
    /// Passed as a reply on a tracked connection.
    pub const REPLY_PASS: u32 = 1;
    /// Passed without judgement: ARP, IPv6 neighbour discovery and MLD, which the network
    /// cannot work without.
    pub const EXEMPT_PASS: u32 = 2;
    /// Dropped: the source is on the blocklist.
    pub const BLOCKLIST_DROP: u32 = 3;
    /// Dropped: the destination is isolated and no allow rule matched.
    pub const ISOLATE_DROP: u32 = 4;
    /// Dropped: the source is under a timed block.
    pub const TIMED_BLOCK_DROP: u32 = 5;
    /// First of `MAX_RATE_LIMITS` slots: dropped by rate limit i.
    pub const RATE_LIMIT_DROP_BASE: u32 = 8;
    /// First of `MAX_RULES` slots: decided by rule i (allow or deny, as the rule says).
    pub const RULE_BASE: u32 = RATE_LIMIT_DROP_BASE + super::MAX_RATE_LIMITS;
    pub const COUNT: u32 = RULE_BASE + super::MAX_RULES;
}

/// Sent to userspace for the first dropped packet of a flow, then at most once per
/// [`DROP_EVENT_INTERVAL_NS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropEvent {
    pub time_ns: u64,
    pub flow: FlowKey,
    pub ifindex: u32,
    /// The verdict counter ([`verdict_slot`]) the drop was counted in: it says why (blocklist,
    /// rule i, rate limit i, ...), so userspace names it exactly as the metrics do.
    pub counter: u32,
    /// Which policy slot judged it, so userspace names the rule of the right policy.
    pub slot: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<DropEvent>() == 64);

#[cfg(feature = "user")]
mod pod_impls {
    // SAFETY: each is #[repr(C)], Copy, made only of integers with explicit padding, so any
    // byte pattern the kernel writes is a valid value.
    unsafe impl aya::Pod for super::IpKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::PrefixKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::IdentityValue {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RuleKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RuleValue {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RateLimitConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RateStateKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::TimedBlock {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FlowKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ConntrackEntry {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::DropEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RecentDrop {}
}
