//! Every map of every program, in one place, so their sizes can be reviewed together. All are
//! pinned by name under the agent's state directory: a restarted agent adopts them, and
//! enforcement survives the agent.

use agent_common::{
    policy::{
        BLOCK_EXACT_MAX_ENTRIES, BLOCK_PREFIX_MAX_ENTRIES, BLOCK_V4_BITMAP_WORDS, CONFIG_SLOTS,
        CONNTRACK_MAX_ENTRIES, ConntrackEntry, DROP_EVENT_RECENT_SLOTS, DROP_EVENTS_BYTES, FlowKey,
        IDENTITY_EXACT_MAX_ENTRIES, IDENTITY_PREFIX_MAX_ENTRIES, IdentityValue, IpKey,
        MAX_RATE_LIMITS, RATE_STATE_MAX_ENTRIES, RULES_MAX_ENTRIES, RateLimitConfig, RateStateKey,
        RecentDrop, RuleKey, RuleValue, TIMED_BLOCK_MAX_ENTRIES, TimedBlock, verdict_slot,
    },
    xdp::{SOURCE_TRAFFIC_MAX_ENTRIES, SourceKey, TrafficCounters, XdpStat},
};
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, PerCpuHashMap, RingBuf},
};

#[map]
pub static SOURCE_TRAFFIC: PerCpuHashMap<SourceKey, TrafficCounters> =
    PerCpuHashMap::pinned(SOURCE_TRAFFIC_MAX_ENTRIES, 0);

#[map]
pub static XDP_STATS: PerCpuArray<u64> = PerCpuArray::pinned(XdpStat::COUNT, 0);

#[map]
pub static POLICY_CONFIG: Array<u32> = Array::pinned(CONFIG_SLOTS, 0);

/// One policy slot's maps. Two exist; the config says which one judges packets.
pub struct PolicySlot {
    pub identity_exact: &'static HashMap<IpKey, IdentityValue>,
    pub identity_prefix: &'static LpmTrie<IpKey, IdentityValue>,
    pub block_exact: &'static HashMap<IpKey, u8>,
    pub block_prefix: &'static LpmTrie<IpKey, u8>,
    pub block_v4_bitmap: &'static Array<u64>,
    pub rules: &'static HashMap<RuleKey, RuleValue>,
    pub rate_limits: &'static Array<RateLimitConfig>,
    pub verdicts: &'static PerCpuArray<TrafficCounters>,
}

macro_rules! policy_slot_maps {
    ($identity_exact:ident, $identity_prefix:ident, $block_exact:ident, $block_prefix:ident,
     $block_v4_bitmap:ident, $rules:ident, $rate_limits:ident, $verdicts:ident) => {
        #[map]
        static $identity_exact: HashMap<IpKey, IdentityValue> =
            HashMap::pinned(IDENTITY_EXACT_MAX_ENTRIES, 0);
        #[map]
        static $identity_prefix: LpmTrie<IpKey, IdentityValue> =
            LpmTrie::pinned(IDENTITY_PREFIX_MAX_ENTRIES, 0);
        #[map]
        static $block_exact: HashMap<IpKey, u8> = HashMap::pinned(BLOCK_EXACT_MAX_ENTRIES, 0);
        #[map]
        static $block_prefix: LpmTrie<IpKey, u8> = LpmTrie::pinned(BLOCK_PREFIX_MAX_ENTRIES, 0);
        #[map]
        static $block_v4_bitmap: Array<u64> = Array::pinned(BLOCK_V4_BITMAP_WORDS, 0);
        #[map]
        static $rules: HashMap<RuleKey, RuleValue> = HashMap::pinned(RULES_MAX_ENTRIES, 0);
        #[map]
        static $rate_limits: Array<RateLimitConfig> = Array::pinned(MAX_RATE_LIMITS, 0);
        #[map]
        static $verdicts: PerCpuArray<TrafficCounters> =
            PerCpuArray::pinned(verdict_slot::COUNT, 0);
    };
}

policy_slot_maps!(
    IDENTITY_EXACT_0,
    IDENTITY_PREFIX_0,
    BLOCK_EXACT_0,
    BLOCK_PREFIX_0,
    BLOCK_V4_BITMAP_0,
    RULES_0,
    RATE_LIMITS_0,
    VERDICTS_0
);
policy_slot_maps!(
    IDENTITY_EXACT_1,
    IDENTITY_PREFIX_1,
    BLOCK_EXACT_1,
    BLOCK_PREFIX_1,
    BLOCK_V4_BITMAP_1,
    RULES_1,
    RATE_LIMITS_1,
    VERDICTS_1
);

/// The maps of policy slot `index` (0 or 1).
#[inline(always)]
pub fn policy_slot(index: u32) -> PolicySlot {
    if index == 0 {
        PolicySlot {
            identity_exact: &IDENTITY_EXACT_0,
            identity_prefix: &IDENTITY_PREFIX_0,
            block_exact: &BLOCK_EXACT_0,
            block_prefix: &BLOCK_PREFIX_0,
            block_v4_bitmap: &BLOCK_V4_BITMAP_0,
            rules: &RULES_0,
            rate_limits: &RATE_LIMITS_0,
            verdicts: &VERDICTS_0,
        }
    } else {
        PolicySlot {
            identity_exact: &IDENTITY_EXACT_1,
            identity_prefix: &IDENTITY_PREFIX_1,
            block_exact: &BLOCK_EXACT_1,
            block_prefix: &BLOCK_PREFIX_1,
            block_v4_bitmap: &BLOCK_V4_BITMAP_1,
            rules: &RULES_1,
            rate_limits: &RATE_LIMITS_1,
            verdicts: &VERDICTS_1,
        }
    }
}

#[map]
pub static TIMED_BLOCK_EXACT: HashMap<IpKey, TimedBlock> =
    HashMap::pinned(TIMED_BLOCK_MAX_ENTRIES, 0);

#[map]
pub static TIMED_BLOCK_PREFIX: LpmTrie<IpKey, TimedBlock> =
    LpmTrie::pinned(TIMED_BLOCK_MAX_ENTRIES, 0);

#[map]
pub static CONNTRACK: LruHashMap<FlowKey, ConntrackEntry> =
    LruHashMap::pinned(CONNTRACK_MAX_ENTRIES, 0);

/// Per (source, rate limit): the GCRA theoretical arrival time, in ns of CLOCK_MONOTONIC.
#[map]
pub static RATE_STATE: LruHashMap<RateStateKey, u64> =
    LruHashMap::pinned(RATE_STATE_MAX_ENTRIES, 0);

/// Per CPU and flow-hash slot: the last drop event sent.
#[map]
pub static DROP_EVENT_RECENT: PerCpuArray<RecentDrop> =
    PerCpuArray::pinned(DROP_EVENT_RECENT_SLOTS, 0);

#[map]
pub static DROP_EVENTS: RingBuf = RingBuf::pinned(DROP_EVENTS_BYTES, 0);
