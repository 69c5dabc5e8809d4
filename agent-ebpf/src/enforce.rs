//! The policy verdict for one packet. The order, and what each step costs:
//! timed blocks and the blocklist (one hash lookup, one trie lookup each), connection tracking
//! (one LRU lookup: replies to allowed flows pass), identities (hash then trie, per side), rules
//! (at most 12 hash lookups, usually 1 to 3), isolation, rate limits (one LRU update), then the
//! connection-tracking refresh of an allowed flow. docs/policy.md states the semantics; the
//! policy crate's reference evaluator defines them and the tests hold the two together.

use agent_common::{
    policy::{
        ACTION_DENY, CONFIG_ACTIVE_SLOT, CONFIG_PER_SLOT_STRIDE, CONFIG_SLOT_CONTENTS,
        CONFIG_TIMED_BLOCKS, CONFIG_WORLD_FLAGS, CONFIG_WORLD_RATE_LIMIT, CONNTRACK_OTHER_NS,
        CONNTRACK_TCP_CLOSING_NS, CONNTRACK_TCP_NS, ConntrackEntry, DROP_EVENT_INTERVAL_NS,
        DROP_EVENT_RECENT_SLOTS, DropEvent, FlowKey, IDENTITY_ANY, IDENTITY_ISOLATED,
        IDENTITY_WORLD, IdentityValue, IpKey, PORT_ANY, PREFIX_FAMILY_BITS, PROTOCOL_ANY,
        RateStateKey, RuleKey, RuleValue, SLOT_HAS_BLOCK_EXACT, SLOT_HAS_BLOCK_PREFIX,
        SLOT_HAS_BLOCK_V4_BITMAP, SLOT_HAS_IDENTITY_EXACT, SLOT_HAS_IDENTITY_PREFIX,
        SLOT_HAS_RULES, verdict_slot,
    },
    xdp::{FAMILY_IPV4, XdpStat},
};
use aya_ebpf::{
    helpers::{bpf_ktime_get_coarse_ns, bpf_ktime_get_ns},
    maps::lpm_trie::Key,
};

use crate::maps::{
    CONNTRACK, DROP_EVENT_RECENT, DROP_EVENTS, POLICY_CONFIG, PolicySlot, RATE_STATE,
    TIMED_BLOCK_EXACT, TIMED_BLOCK_PREFIX, policy_slot,
};
use crate::{
    hook::bump,
    packet::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, Packet, TCP_FIN, TCP_RST},
};

/// The verdict, and the counter (`verdict_slot`) that records it, which also says why.
pub enum Verdict {
    Pass(u32),
    Drop(u32),
}

/// Judges `packet` and counts the verdict (packets and `frame_len` bytes) in the active slot.
#[inline(always)]
pub fn judge(packet: &Packet, ifindex: u32, frame_len: u64) -> Verdict {
    let slot_index = match POLICY_CONFIG.get(CONFIG_ACTIVE_SLOT) {
        Some(&1) => 1,
        _ => 0,
    };
    let slot = policy_slot(slot_index);
    let contents = config(CONFIG_SLOT_CONTENTS + slot_index * CONFIG_PER_SLOT_STRIDE);
    let verdict = decide(packet, slot_index, contents);
    let counter = match verdict {
        Verdict::Pass(counter) => counter,
        Verdict::Drop(counter) => {
            report_drop(packet, ifindex, slot_index, counter);
            counter
        }
    };
    if let Some(counters) = slot.verdicts.get_ptr_mut(counter) {
        // SAFETY: this CPU's slot of a per-CPU array; XDP runs with migration disabled.
        unsafe {
            (*counters).packets += 1;
            (*counters).bytes += frame_len;
        }
    }
    verdict
}

/// A function of its own (a BPF-to-BPF call) so that its stack frame and `report_drop`'s are
/// never live at once: together they would exceed the 512-byte BPF stack.
#[inline(never)]
fn decide(packet: &Packet, slot_index: u32, contents: u32) -> Verdict {
    let slot = &policy_slot(slot_index);
    if packet.is_network_control() {
        return Verdict::Pass(verdict_slot::EXEMPT_PASS);
    }
    // The parser leaves the bytes after an IPv4 address zero, as keys need them.
    let src = IpKey::new(packet.family, packet.src);
    if config(CONFIG_TIMED_BLOCKS) != 0 && timed_block(&src) {
        return Verdict::Drop(verdict_slot::TIMED_BLOCK_DROP);
    }
    let blocked = (contents & SLOT_HAS_BLOCK_V4_BITMAP != 0
        && packet.family == FAMILY_IPV4
        && in_v4_bitmap(slot, &packet.src))
        || (contents & SLOT_HAS_BLOCK_EXACT != 0 && slot.block_exact.get_ptr(src).is_some())
        || (contents & SLOT_HAS_BLOCK_PREFIX != 0
            && slot.block_prefix.get(prefix_key(&src)).is_some());
    if blocked {
        return Verdict::Drop(verdict_slot::BLOCKLIST_DROP);
    }
    // Connection lifetimes are seconds to hours: the coarse clock (a tick's resolution) is
    // precise enough and costs a fraction of the precise one.
    let now = coarse_now();
    if is_reply(packet, now) {
        return Verdict::Pass(verdict_slot::REPLY_PASS);
    }
    // Built only now: a dropped packet never needs it.
    let dst = IpKey::new(packet.family, packet.dst);
    let source = identity(slot, slot_index, contents, &src);
    let destination = identity(slot, slot_index, contents, &dst);
    let rules = if contents & SLOT_HAS_RULES != 0 {
        rule_verdict(packet, slot, source.id, destination.id)
    } else {
        None
    };
    let verdict = match rules {
        Some(value) if value.action == ACTION_DENY => {
            return Verdict::Drop(verdict_slot::RULE_BASE + value.rule);
        }
        Some(value) => Verdict::Pass(verdict_slot::RULE_BASE + value.rule),
        None if destination.flags & IDENTITY_ISOLATED != 0 => {
            return Verdict::Drop(verdict_slot::ISOLATE_DROP);
        }
        None => Verdict::Pass(verdict_slot::DEFAULT_PASS),
    };
    if let Some(limit) = destination.rate_limit.checked_sub(1)
        && over_rate(slot, &src, limit)
    {
        return Verdict::Drop(verdict_slot::RATE_LIMIT_DROP_BASE + limit);
    }
    track(packet, now);
    verdict
}

/// CLOCK_MONOTONIC at the resolution of a scheduler tick, for deadlines of a second or more.
#[inline(always)]
fn coarse_now() -> u64 {
    // SAFETY: bpf_ktime_get_coarse_ns has no preconditions.
    unsafe { bpf_ktime_get_coarse_ns() }
}

#[inline(always)]
fn prefix_key(key: &IpKey) -> Key<IpKey> {
    let bits = if key.family == FAMILY_IPV4 { 32 } else { 128 };
    Key::new(PREFIX_FAMILY_BITS + bits, *key)
}

/// Is the IPv4 source in a blocklisted /24 (or wider) range? One array lookup.
#[inline(always)]
fn in_v4_bitmap(slot: &PolicySlot, address: &[u8; 16]) -> bool {
    let slash24 = ((address[0] as u32) << 16) | ((address[1] as u32) << 8) | address[2] as u32;
    slot.block_v4_bitmap
        .get(slash24 >> 6)
        .is_some_and(|word| (*word >> (slash24 & 63)) & 1 == 1)
}

#[inline(always)]
fn timed_block(src: &IpKey) -> bool {
    let now = coarse_now();
    let exact = TIMED_BLOCK_EXACT.get_ptr(src);
    let block = match exact {
        Some(block) => Some(block),
        None => TIMED_BLOCK_PREFIX
            .get(prefix_key(src))
            .map(|block| block as *const _),
    };
    // SAFETY: a pointer into a map value the lookup just returned.
    block.is_some_and(|block| unsafe { (*block).expires_ns } > now)
}

#[inline(always)]
fn identity(slot: &PolicySlot, slot_index: u32, contents: u32, key: &IpKey) -> IdentityValue {
    if contents & SLOT_HAS_IDENTITY_EXACT != 0
        && let Some(value) = slot.identity_exact.get_ptr(key)
    {
        // SAFETY: a pointer into a map value the lookup just returned.
        return unsafe { *value };
    }
    if contents & SLOT_HAS_IDENTITY_PREFIX != 0
        && let Some(value) = slot.identity_prefix.get(prefix_key(key))
    {
        return *value;
    }
    IdentityValue {
        id: IDENTITY_WORLD,
        flags: config(CONFIG_WORLD_FLAGS + slot_index * CONFIG_PER_SLOT_STRIDE),
        rate_limit: config(CONFIG_WORLD_RATE_LIMIT + slot_index * CONFIG_PER_SLOT_STRIDE),
    }
}

#[inline(always)]
fn config(index: u32) -> u32 {
    POLICY_CONFIG.get(index).copied().unwrap_or(0)
}

/// Most specific identity pair first; (source, any) and (any, destination) are equally specific,
/// so both are looked up and combined.
#[inline(always)]
fn rule_verdict(
    packet: &Packet,
    slot: &PolicySlot,
    source: u32,
    destination: u32,
) -> Option<RuleValue> {
    if let Some(value) = pair_verdict(packet, slot, source, destination) {
        return Some(value);
    }
    let from_source = pair_verdict(packet, slot, source, IDENTITY_ANY);
    let to_destination = pair_verdict(packet, slot, IDENTITY_ANY, destination);
    match (from_source, to_destination) {
        (Some(a), Some(b)) => return Some(a.combine(b)),
        (Some(value), None) | (None, Some(value)) => return Some(value),
        (None, None) => {}
    }
    pair_verdict(packet, slot, IDENTITY_ANY, IDENTITY_ANY)
}

/// Within one pair, the first hit of (protocol, port), (protocol, any port), (any, any port):
/// userspace folded the broader entries into the narrower ones.
#[inline(always)]
fn pair_verdict(packet: &Packet, slot: &PolicySlot, from: u32, to: u32) -> Option<RuleValue> {
    if packet.has_ports {
        let key = RuleKey::new(from, to, packet.protocol, packet.dst_port);
        if let Some(value) = slot.rules.get_ptr(key) {
            // SAFETY: a pointer into a map value the lookup just returned.
            return Some(unsafe { *value });
        }
    }
    for (protocol, port) in [(packet.protocol, PORT_ANY), (PROTOCOL_ANY, PORT_ANY)] {
        if let Some(value) = slot.rules.get_ptr(RuleKey::new(from, to, protocol, port)) {
            // SAFETY: as above.
            return Some(unsafe { *value });
        }
    }
    None
}

#[inline(always)]
fn flow_key(packet: &Packet) -> FlowKey {
    FlowKey {
        src: packet.src,
        dst: packet.dst,
        src_port: packet.src_port,
        dst_port: packet.dst_port,
        protocol: packet.protocol,
        family: packet.family,
        _pad: [0; 2],
    }
}

#[inline(always)]
fn lifetime(packet: &Packet) -> u64 {
    if packet.protocol == PROTO_TCP {
        if packet.tcp_flags & (TCP_FIN | TCP_RST) != 0 {
            CONNTRACK_TCP_CLOSING_NS
        } else {
            CONNTRACK_TCP_NS
        }
    } else {
        CONNTRACK_OTHER_NS
    }
}

/// Is this packet the reverse direction of a tracked, allowed flow? Refreshes the entry if so.
#[inline(always)]
fn is_reply(packet: &Packet, now: u64) -> bool {
    let reverse = FlowKey {
        src: packet.dst,
        dst: packet.src,
        src_port: packet.dst_port,
        dst_port: packet.src_port,
        protocol: packet.protocol,
        family: packet.family,
        _pad: [0; 2],
    };
    match CONNTRACK.get_ptr_mut(reverse) {
        // SAFETY: a pointer into a map value the lookup just returned; a racing writer can only
        // store another expiry, which is as good as ours.
        Some(entry) if unsafe { (*entry).expires_ns } > now => {
            // SAFETY: as above.
            unsafe { refresh(&mut *entry, packet, now) };
            true
        }
        _ => false,
    }
}

/// Extends a tracked flow's life. Written only when it matters (a non-TCP flow, a closing one,
/// or half the life gone), so a busy flow costs a lookup rather than a write per packet, and
/// replies on another CPU do not bounce the entry's cache line.
#[inline(always)]
fn refresh(entry: &mut ConntrackEntry, packet: &Packet, now: u64) {
    let life = lifetime(packet);
    if life < CONNTRACK_TCP_NS || entry.expires_ns < now + life / 2 {
        entry.expires_ns = now + life;
    }
}

/// Records an allowed flow so its replies pass.
#[inline(always)]
fn track(packet: &Packet, now: u64) {
    let trackable = packet.has_ports
        || ((packet.protocol == PROTO_ICMP || packet.protocol == PROTO_ICMPV6)
            && packet.src_port != 0);
    if !trackable {
        return;
    }
    let key = flow_key(packet);
    if let Some(entry) = CONNTRACK.get_ptr_mut(key) {
        // SAFETY: as in is_reply.
        unsafe { refresh(&mut *entry, packet, now) };
        return;
    }
    let entry = ConntrackEntry {
        expires_ns: now + lifetime(packet),
    };
    if CONNTRACK.insert(key, entry, 0).is_err() {
        bump(XdpStat::ConntrackInsertFailed, 1);
    }
}

/// Generic cell-rate algorithm: each packet pushes the source's theoretical arrival time one
/// interval further; a source more than `tolerance` ahead of the clock is over its budget.
#[inline(always)]
fn over_rate(slot: &PolicySlot, src: &IpKey, limit: u32) -> bool {
    let Some(config) = slot.rate_limits.get(limit) else {
        return false;
    };
    // Intervals of a millisecond or less need the precise clock.
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let key = RateStateKey {
        source: *src,
        rate_limit: limit,
    };
    match RATE_STATE.get_ptr_mut(key) {
        Some(arrival) => {
            // SAFETY: a pointer into a map value the lookup just returned. Concurrent packets of
            // one source on two CPUs may each read the same time and both pass: the limit can be
            // overshot by one packet per racing CPU, never undershot.
            unsafe {
                let theoretical = if *arrival > now { *arrival } else { now };
                if theoretical - now > config.tolerance_ns {
                    return true;
                }
                *arrival = theoretical + config.interval_ns;
            }
            false
        }
        None => {
            if RATE_STATE.insert(key, now + config.interval_ns, 0).is_err() {
                bump(XdpStat::RateStateFull, 1);
            }
            false
        }
    }
}

/// A cheap, well-mixed hash of a packet's flow, to pick its slot in the recent-drop table.
#[inline(always)]
fn flow_hash(packet: &Packet) -> u64 {
    #[inline(always)]
    fn word(bytes: &[u8; 16], half: usize) -> u64 {
        let mut value = 0u64;
        for index in 0..8 {
            value = (value << 8) | bytes[half * 8 + index] as u64;
        }
        value
    }
    #[inline(always)]
    fn mix(hash: u64, value: u64) -> u64 {
        let hash = (hash ^ value).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        hash ^ (hash >> 29)
    }
    let tail = ((packet.src_port as u64) << 32)
        | ((packet.dst_port as u64) << 16)
        | ((packet.protocol as u64) << 8)
        | packet.family as u64;
    // IPv4 addresses fill only the first four bytes: one word holds both, and the hash costs a
    // third of the IPv6 one.
    if packet.family == FAMILY_IPV4 {
        let addresses =
            (u32::from_be_bytes([packet.src[0], packet.src[1], packet.src[2], packet.src[3]])
                as u64)
                << 32
                | u32::from_be_bytes([packet.dst[0], packet.dst[1], packet.dst[2], packet.dst[3]])
                    as u64;
        return mix(mix(0xcbf2_9ce4_8422_2325, addresses), tail);
    }
    let mut hash = mix(0xcbf2_9ce4_8422_2325, word(&packet.src, 0));
    hash = mix(hash, word(&packet.src, 1));
    hash = mix(hash, word(&packet.dst, 0));
    hash = mix(hash, word(&packet.dst, 1));
    mix(hash, tail)
}

/// The first dropped packet of a flow, and then at most one a second per CPU, reaches
/// userspace. Not inlined, for the stack's sake (see `decide`).
#[inline(never)]
fn report_drop(packet: &Packet, ifindex: u32, slot: u32, counter: u32) {
    let hash = flow_hash(packet);
    let now = coarse_now();
    if let Some(recent) =
        DROP_EVENT_RECENT.get_ptr_mut((hash % DROP_EVENT_RECENT_SLOTS as u64) as u32)
    {
        // SAFETY: this CPU's slot of a per-CPU array; XDP runs with migration disabled.
        unsafe {
            if (*recent).flow_hash == hash && now - (*recent).time_ns < DROP_EVENT_INTERVAL_NS {
                bump(XdpStat::DropEventsSuppressed, 1);
                return;
            }
            (*recent).flow_hash = hash;
            (*recent).time_ns = now;
        }
    }
    match DROP_EVENTS.reserve::<DropEvent>(0) {
        Some(mut entry) => {
            entry.write(DropEvent {
                time_ns: now,
                flow: flow_key(packet),
                ifindex,
                counter,
                slot,
                _pad: 0,
            });
            entry.submit(0);
        }
        None => bump(XdpStat::DropEventsLost, 1),
    }
}
