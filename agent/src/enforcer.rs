//! Puts policies into the kernel, atomically, and answers what they did.
//!
//! A policy goes into the inactive slot's maps, which no packet reads; one write to the config
//! array then makes it the active slot. Packets judged before the write saw the old policy in
//! full, packets after it the new one in full, so nothing is ever judged by a half-written
//! policy, and a flow both policies deny is dropped throughout.
//!
//! The enforcement API for the rest of the agent is here too: [`Enforcer::block`] drops a
//! source for a while, in the kernel, where the block lapses by itself.

use std::{collections::BTreeMap, net::IpAddr, sync::Arc, time::Duration};

use agent_common::{
    policy::{
        BLOCK_V4_BITMAP_WORDS, CONFIG_ACTIVE_SLOT, CONFIG_PER_SLOT_STRIDE, CONFIG_SLOT_CONTENTS,
        CONFIG_TIMED_BLOCKS, CONFIG_WORLD_FLAGS, CONFIG_WORLD_RATE_LIMIT, IpKey, MAX_RATE_LIMITS,
        RateLimitConfig, RuleKey, RuleValue, SLOT_HAS_BLOCK_EXACT, SLOT_HAS_BLOCK_PREFIX,
        SLOT_HAS_BLOCK_V4_BITMAP, SLOT_HAS_IDENTITY_EXACT, SLOT_HAS_IDENTITY_PREFIX,
        SLOT_HAS_RULES, TIMED_BLOCK_MAX_ENTRIES, TimedBlock, map_names, verdict_slot,
    },
    xdp::TrafficCounters,
};
use aya::maps::{
    Array, HashMap, LpmTrie, MapData, MapError, PerCpuArray, PerCpuValues, lpm_trie::Key,
};
use ipnetwork::IpNetwork;
use policy::{
    Action, Policy,
    compile::{KernelPolicy, compile, ip_key, prefix_key},
};
use thiserror::Error;

use crate::loader::{Datapath, LoadError};

#[derive(Debug, Error)]
pub enum EnforceError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Compile(#[from] policy::compile::CompileError),
    #[error("writing map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: MapError,
    },
    #[error("a timed block needs a TTL of at least one second, got {0:?}")]
    TtlTooShort(Duration),
    #[error(
        "{capacity} timed blocks are in force, as many as the kernel table holds; block a wider \
         range instead, or wait for some to lapse"
    )]
    TooManyTimedBlocks { capacity: u32 },
    #[error("counting the CPUs whose per-CPU counters to reset: {0}")]
    Cpus(#[source] std::io::Error),
}

fn map_error(map: &'static str) -> impl Fn(MapError) -> EnforceError {
    move |source| EnforceError::Map { map, source }
}

/// What a verdict counter counts, as metrics label it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VerdictLabel {
    /// `pass` or `drop`.
    pub verdict: &'static str,
    /// `rule`, `default`, `reply`, `exempt`, `blocklist`, `isolate`, `timed_block` or
    /// `rate_limit`.
    pub reason: &'static str,
    /// The rule's or rate limit's name; empty for the other reasons.
    pub rule: String,
}

/// A source dropped until its block lapses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimedBlockEntry {
    pub network: IpNetwork,
    pub reason: String,
    /// CLOCK_MONOTONIC nanoseconds, as the kernel compares them.
    pub expires_ns: u64,
}

pub struct Enforcer {
    /// The policy each slot holds (None: empty, or left by an earlier agent).
    slot_policies: [Option<Arc<Policy>>; 2],
    /// Bitmap words each slot has set (None: unknown, as after a restart), so refilling a slot
    /// clears only those instead of the whole 2 MiB.
    bitmap_words: [Option<Vec<u32>>; 2],
    active: u32,
    /// Verdict totals of slots since overwritten, so that counters never go backwards.
    retired: BTreeMap<VerdictLabel, TrafficCounters>,
    timed_blocks: BTreeMap<IpNetwork, TimedBlockEntry>,
}

/// Nanoseconds of CLOCK_MONOTONIC, the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass and nothing else.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    (now.tv_sec as u64) * 1_000_000_000 + now.tv_nsec as u64
}

impl Enforcer {
    /// Takes over the slots as the pinned maps hold them: whatever an earlier agent made active
    /// stays in force until [`Enforcer::apply`] replaces it.
    pub fn adopt(datapath: &Datapath) -> Result<Self, EnforceError> {
        let config: Array<&MapData, u32> = Array::try_from(datapath.map(map_names::CONFIG)?)
            .map_err(map_error(map_names::CONFIG))?;
        let active = config
            .get(&CONFIG_ACTIVE_SLOT, 0)
            .map_err(map_error(map_names::CONFIG))?
            .min(1);
        Ok(Self {
            slot_policies: [None, None],
            bitmap_words: [None, None],
            active,
            retired: BTreeMap::new(),
            timed_blocks: BTreeMap::new(),
        })
    }

    pub fn active_policy(&self) -> Option<&Arc<Policy>> {
        self.slot_policies[self.active as usize].as_ref()
    }

    /// Makes `policy` the one in force: written to the idle slot, then switched to in one write.
    pub fn apply(
        &mut self,
        datapath: &mut Datapath,
        policy: Arc<Policy>,
    ) -> Result<(), EnforceError> {
        let kernel = compile(&policy)?;
        let target = 1 - self.active;
        self.retire_slot(datapath, target)?;
        write_slot(datapath, target as usize, &kernel)?;
        self.write_bitmap(datapath, target as usize, &kernel)?;
        let mut config: Array<&mut MapData, u32> =
            Array::try_from(datapath.map_mut(map_names::CONFIG)?)
                .map_err(map_error(map_names::CONFIG))?;
        let stride = target * CONFIG_PER_SLOT_STRIDE;
        config
            .set(CONFIG_WORLD_FLAGS + stride, kernel.world.flags, 0)
            .map_err(map_error(map_names::CONFIG))?;
        config
            .set(CONFIG_WORLD_RATE_LIMIT + stride, kernel.world.rate_limit, 0)
            .map_err(map_error(map_names::CONFIG))?;
        config
            .set(CONFIG_SLOT_CONTENTS + stride, slot_contents(&kernel), 0)
            .map_err(map_error(map_names::CONFIG))?;
        // The switch: from here on every packet is judged by `policy`.
        config
            .set(CONFIG_ACTIVE_SLOT, target, 0)
            .map_err(map_error(map_names::CONFIG))?;
        self.slot_policies[target as usize] = Some(policy);
        self.active = target;
        Ok(())
    }

    /// Replaces the slot's IPv4 blocklist bitmap: zeroes the words it had set (all nonzero words
    /// when that is unknown), then sets the new ones.
    fn write_bitmap(
        &mut self,
        datapath: &mut Datapath,
        slot: usize,
        kernel: &KernelPolicy,
    ) -> Result<(), EnforceError> {
        let name = map_names::BLOCK_V4_BITMAP[slot];
        let mut bitmap: Array<&mut MapData, u64> =
            Array::try_from(datapath.map_mut(name)?).map_err(map_error(name))?;
        let stale: Vec<u32> = match self.bitmap_words[slot].take() {
            Some(words) => words,
            None => (0..BLOCK_V4_BITMAP_WORDS)
                .filter(|&index| bitmap.get(&index, 0).is_ok_and(|word| word != 0))
                .collect(),
        };
        for index in stale {
            if !kernel.block_v4_bitmap.contains_key(&index) {
                bitmap.set(index, 0, 0).map_err(map_error(name))?;
            }
        }
        for (&index, &word) in &kernel.block_v4_bitmap {
            bitmap.set(index, word, 0).map_err(map_error(name))?;
        }
        self.bitmap_words[slot] = Some(kernel.block_v4_bitmap.keys().copied().collect());
        Ok(())
    }

    /// Folds the slot's counters into the retired totals and zeroes them, before reuse.
    fn retire_slot(&mut self, datapath: &mut Datapath, slot: u32) -> Result<(), EnforceError> {
        let name = map_names::VERDICTS[slot as usize];
        let previous = self.slot_policies[slot as usize].take();
        if let Some(policy) = &previous {
            add_slot_counts(&mut self.retired, datapath, slot, policy)?;
        }
        // Only the counters the previous policy could have touched, unless nobody knows which
        // (a slot left by an earlier agent).
        let used: Vec<u32> = match &previous {
            Some(policy) => counters_in_use(policy).collect(),
            None => (0..verdict_slot::COUNT).collect(),
        };
        let mut verdicts: PerCpuArray<&mut MapData, TrafficCounters> =
            PerCpuArray::try_from(datapath.map_mut(name)?).map_err(map_error(name))?;
        let cpus = aya::util::nr_cpus().map_err(|(_, error)| EnforceError::Cpus(error))?;
        for index in used {
            let zeros = PerCpuValues::try_from(vec![TrafficCounters::default(); cpus])
                .map_err(EnforceError::Cpus)?;
            verdicts.set(index, zeros, 0).map_err(map_error(name))?;
        }
        Ok(())
    }

    /// Packets and bytes per verdict since this agent started, over both slots and every policy
    /// it has applied.
    pub fn verdict_totals(
        &self,
        datapath: &Datapath,
    ) -> Result<BTreeMap<VerdictLabel, TrafficCounters>, EnforceError> {
        let mut totals = self.retired.clone();
        for slot in 0..2u32 {
            if let Some(policy) = &self.slot_policies[slot as usize] {
                add_slot_counts(&mut totals, datapath, slot, policy)?;
            }
        }
        Ok(totals)
    }

    /// The name of what dropped a packet, for a drop event from `slot`.
    pub fn drop_cause(&self, slot: u32, counter: u32) -> VerdictLabel {
        match self
            .slot_policies
            .get(slot as usize)
            .and_then(Option::as_ref)
        {
            Some(policy) => verdict_label(policy, counter),
            None => verdict_label(&Policy::allow_all(), counter),
        }
    }

    /// Drops every packet from `network` for `ttl`. The kernel compares the deadline itself, so
    /// the block lapses on time even if this agent is gone; [`Enforcer::expire_blocks`] removes
    /// the lapsed entries.
    pub fn block(
        &mut self,
        datapath: &mut Datapath,
        network: IpNetwork,
        ttl: Duration,
        reason: &str,
    ) -> Result<TimedBlockEntry, EnforceError> {
        if ttl < Duration::from_secs(1) {
            return Err(EnforceError::TtlTooShort(ttl));
        }
        let network = IpNetwork::new(network.network(), network.prefix()).unwrap_or(network);
        if !self.timed_blocks.contains_key(&network)
            && self.timed_blocks.len() >= TIMED_BLOCK_MAX_ENTRIES as usize
        {
            return Err(EnforceError::TooManyTimedBlocks {
                capacity: TIMED_BLOCK_MAX_ENTRIES,
            });
        }
        let expires_ns = monotonic_ns().saturating_add(ttl.as_nanos() as u64);
        let value = TimedBlock { expires_ns };
        if is_single_address(&network) {
            let name = map_names::TIMED_BLOCK_EXACT;
            let mut map: HashMap<&mut MapData, IpKey, TimedBlock> =
                HashMap::try_from(datapath.map_mut(name)?).map_err(map_error(name))?;
            map.insert(ip_key(network.ip()), value, 0)
                .map_err(map_error(name))?;
        } else {
            let name = map_names::TIMED_BLOCK_PREFIX;
            let mut map: LpmTrie<&mut MapData, IpKey, TimedBlock> =
                LpmTrie::try_from(datapath.map_mut(name)?).map_err(map_error(name))?;
            map.insert(&trie_key(network), value, 0)
                .map_err(map_error(name))?;
        }
        let entry = TimedBlockEntry {
            network,
            reason: reason.to_owned(),
            expires_ns,
        };
        self.timed_blocks.insert(network, entry.clone());
        self.publish_timed_block_count(datapath)?;
        Ok(entry)
    }

    /// The most specific timed block holding `address`, if any.
    pub fn timed_block_of(&self, address: std::net::IpAddr) -> Option<&TimedBlockEntry> {
        self.timed_blocks
            .values()
            .filter(|block| block.network.contains(address))
            .max_by_key(|block| block.network.prefix())
    }

    pub fn timed_blocks(&self) -> impl Iterator<Item = &TimedBlockEntry> {
        self.timed_blocks.values()
    }

    /// Removes lapsed blocks from the kernel and returns them.
    pub fn expire_blocks(
        &mut self,
        datapath: &mut Datapath,
    ) -> Result<Vec<TimedBlockEntry>, EnforceError> {
        let now = monotonic_ns();
        let lapsed: Vec<TimedBlockEntry> = self
            .timed_blocks
            .values()
            .filter(|entry| entry.expires_ns <= now)
            .cloned()
            .collect();
        for entry in &lapsed {
            if is_single_address(&entry.network) {
                let name = map_names::TIMED_BLOCK_EXACT;
                let mut map: HashMap<&mut MapData, IpKey, TimedBlock> =
                    HashMap::try_from(datapath.map_mut(name)?).map_err(map_error(name))?;
                ignore_missing(map.remove(&ip_key(entry.network.ip())), name)?;
            } else {
                let name = map_names::TIMED_BLOCK_PREFIX;
                let mut map: LpmTrie<&mut MapData, IpKey, TimedBlock> =
                    LpmTrie::try_from(datapath.map_mut(name)?).map_err(map_error(name))?;
                ignore_missing(map.remove(&trie_key(entry.network)), name)?;
            }
            self.timed_blocks.remove(&entry.network);
        }
        if !lapsed.is_empty() {
            self.publish_timed_block_count(datapath)?;
        }
        Ok(lapsed)
    }

    /// The program skips the timed-block lookups while the count is zero.
    fn publish_timed_block_count(&self, datapath: &mut Datapath) -> Result<(), EnforceError> {
        let mut config: Array<&mut MapData, u32> =
            Array::try_from(datapath.map_mut(map_names::CONFIG)?)
                .map_err(map_error(map_names::CONFIG))?;
        config
            .set(CONFIG_TIMED_BLOCKS, self.timed_blocks.len() as u32, 0)
            .map_err(map_error(map_names::CONFIG))
    }
}

/// Which tables of a slot hold entries, so the program looks only into those.
fn slot_contents(kernel: &KernelPolicy) -> u32 {
    [
        (!kernel.identity_exact.is_empty(), SLOT_HAS_IDENTITY_EXACT),
        (!kernel.identity_prefix.is_empty(), SLOT_HAS_IDENTITY_PREFIX),
        (!kernel.block_exact.is_empty(), SLOT_HAS_BLOCK_EXACT),
        (!kernel.block_prefix.is_empty(), SLOT_HAS_BLOCK_PREFIX),
        (!kernel.rules.is_empty(), SLOT_HAS_RULES),
        (!kernel.block_v4_bitmap.is_empty(), SLOT_HAS_BLOCK_V4_BITMAP),
    ]
    .into_iter()
    .filter(|(present, _)| *present)
    .fold(0, |contents, (_, flag)| contents | flag)
}

fn ignore_missing(result: Result<(), MapError>, map: &'static str) -> Result<(), EnforceError> {
    match result {
        Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
        Err(source) => Err(EnforceError::Map { map, source }),
    }
}

fn is_single_address(network: &IpNetwork) -> bool {
    match network.ip() {
        IpAddr::V4(_) => network.prefix() == 32,
        IpAddr::V6(_) => network.prefix() == 128,
    }
}

fn trie_key(network: IpNetwork) -> Key<IpKey> {
    let key = prefix_key(network);
    Key::new(key.prefix_len, key.ip)
}

/// The verdict counters `policy` can touch: the fixed reasons, one per rate limit, one per rule.
/// Reading only these keeps the once-a-second refresh to a few syscalls for a small policy
/// instead of one per slot of the 4,000-entry array.
fn counters_in_use(policy: &Policy) -> impl Iterator<Item = u32> + use<> {
    let rate_limits = policy.rate_limits.len() as u32;
    let rules = policy.rules.len() as u32;
    (0..verdict_slot::RATE_LIMIT_DROP_BASE)
        .chain(verdict_slot::RATE_LIMIT_DROP_BASE..verdict_slot::RATE_LIMIT_DROP_BASE + rate_limits)
        .chain(verdict_slot::RULE_BASE..verdict_slot::RULE_BASE + rules)
}

/// Adds the counts slot `slot` holds for `policy` to `totals`, under the policy's names.
fn add_slot_counts(
    totals: &mut BTreeMap<VerdictLabel, TrafficCounters>,
    datapath: &Datapath,
    slot: u32,
    policy: &Policy,
) -> Result<(), EnforceError> {
    let name = map_names::VERDICTS[slot as usize];
    let verdicts: PerCpuArray<&MapData, TrafficCounters> =
        PerCpuArray::try_from(datapath.map(name)?).map_err(map_error(name))?;
    for index in counters_in_use(policy) {
        let per_cpu = verdicts.get(&index, 0).map_err(map_error(name))?;
        let value = crate::traffic::sum_per_cpu(per_cpu.iter().copied());
        if value.packets > 0 {
            let total = totals.entry(verdict_label(policy, index)).or_default();
            total.packets += value.packets;
            total.bytes += value.bytes;
        }
    }
    Ok(())
}

/// The label of verdict counter `index` under `policy`.
pub fn verdict_label(policy: &Policy, index: u32) -> VerdictLabel {
    let fixed = |verdict, reason| VerdictLabel {
        verdict,
        reason,
        rule: String::new(),
    };
    match index {
        verdict_slot::DEFAULT_PASS => fixed("pass", "default"),
        verdict_slot::REPLY_PASS => fixed("pass", "reply"),
        verdict_slot::EXEMPT_PASS => fixed("pass", "exempt"),
        verdict_slot::BLOCKLIST_DROP => fixed("drop", "blocklist"),
        verdict_slot::ISOLATE_DROP => fixed("drop", "isolate"),
        verdict_slot::TIMED_BLOCK_DROP => fixed("drop", "timed_block"),
        index
            if (verdict_slot::RATE_LIMIT_DROP_BASE
                ..verdict_slot::RATE_LIMIT_DROP_BASE + MAX_RATE_LIMITS)
                .contains(&index) =>
        {
            let limit = (index - verdict_slot::RATE_LIMIT_DROP_BASE) as usize;
            VerdictLabel {
                verdict: "drop",
                reason: "rate_limit",
                rule: policy
                    .rate_limits
                    .get(limit)
                    .map_or_else(|| format!("#{limit}"), |limit| limit.name.clone()),
            }
        }
        index if index >= verdict_slot::RULE_BASE => {
            let position = (index - verdict_slot::RULE_BASE) as usize;
            match policy.rules.get(position) {
                Some(rule) => VerdictLabel {
                    verdict: if rule.action == Action::Allow {
                        "pass"
                    } else {
                        "drop"
                    },
                    reason: "rule",
                    rule: rule.name.clone(),
                },
                None => VerdictLabel {
                    verdict: "unknown",
                    reason: "rule",
                    rule: format!("#{position}"),
                },
            }
        }
        _ => fixed("unknown", "unknown"),
    }
}

/// Empties slot `slot`'s maps and writes `kernel` into them.
fn write_slot(
    datapath: &mut Datapath,
    slot: usize,
    kernel: &KernelPolicy,
) -> Result<(), EnforceError> {
    replace_hash(
        datapath,
        map_names::IDENTITY_EXACT[slot],
        kernel.identity_exact.iter().copied(),
    )?;
    replace_trie(
        datapath,
        map_names::IDENTITY_PREFIX[slot],
        kernel
            .identity_prefix
            .iter()
            .map(|(key, value)| (Key::new(key.prefix_len, key.ip), *value)),
    )?;
    replace_hash(
        datapath,
        map_names::BLOCK_EXACT[slot],
        kernel.block_exact.iter().map(|key| (*key, 1u8)),
    )?;
    replace_trie(
        datapath,
        map_names::BLOCK_PREFIX[slot],
        kernel
            .block_prefix
            .iter()
            .map(|key| (Key::new(key.prefix_len, key.ip), 1u8)),
    )?;
    replace_hash::<RuleKey, RuleValue>(
        datapath,
        map_names::RULES[slot],
        kernel.rules.iter().copied(),
    )?;
    let name = map_names::RATE_LIMITS[slot];
    let mut limits: Array<&mut MapData, RateLimitConfig> =
        Array::try_from(datapath.map_mut(name)?).map_err(map_error(name))?;
    for index in 0..MAX_RATE_LIMITS {
        let config = kernel
            .rate_limits
            .get(index as usize)
            .copied()
            .unwrap_or_default();
        limits.set(index, config, 0).map_err(map_error(name))?;
    }
    Ok(())
}

/// The two kinds of map a slot's tables are, behind one interface, so that replacing a table's
/// contents is written once.
trait Table<K, V> {
    fn existing_keys(&self) -> Result<Vec<K>, MapError>;
    fn remove_key(&mut self, key: &K) -> Result<(), MapError>;
    fn put(&mut self, key: K, value: V) -> Result<(), MapError>;
}

impl<K: aya::Pod + Eq + std::hash::Hash, V: aya::Pod> Table<K, V> for HashMap<&mut MapData, K, V> {
    fn existing_keys(&self) -> Result<Vec<K>, MapError> {
        self.keys().collect()
    }
    fn remove_key(&mut self, key: &K) -> Result<(), MapError> {
        self.remove(key)
    }
    fn put(&mut self, key: K, value: V) -> Result<(), MapError> {
        self.insert(key, value, 0)
    }
}

impl<V: aya::Pod> Table<Key<IpKey>, V> for LpmTrie<&mut MapData, IpKey, V> {
    fn existing_keys(&self) -> Result<Vec<Key<IpKey>>, MapError> {
        self.keys().collect()
    }
    fn remove_key(&mut self, key: &Key<IpKey>) -> Result<(), MapError> {
        self.remove(key)
    }
    fn put(&mut self, key: Key<IpKey>, value: V) -> Result<(), MapError> {
        self.insert(&key, value, 0)
    }
}

/// Empties `table` and fills it with `entries`. Only ever called on the idle slot.
fn replace<K, V>(
    mut table: impl Table<K, V>,
    name: &'static str,
    entries: impl Iterator<Item = (K, V)>,
) -> Result<(), EnforceError> {
    for key in &table.existing_keys().map_err(map_error(name))? {
        ignore_missing(table.remove_key(key), name)?;
    }
    for (key, value) in entries {
        table.put(key, value).map_err(map_error(name))?;
    }
    Ok(())
}

fn replace_hash<K: aya::Pod + Eq + std::hash::Hash, V: aya::Pod>(
    datapath: &mut Datapath,
    name: &'static str,
    entries: impl Iterator<Item = (K, V)>,
) -> Result<(), EnforceError> {
    let map: HashMap<&mut MapData, K, V> =
        HashMap::try_from(datapath.map_mut(name)?).map_err(map_error(name))?;
    replace(map, name, entries)
}

fn replace_trie<V: aya::Pod>(
    datapath: &mut Datapath,
    name: &'static str,
    entries: impl Iterator<Item = (Key<IpKey>, V)>,
) -> Result<(), EnforceError> {
    let map: LpmTrie<&mut MapData, IpKey, V> =
        LpmTrie::try_from(datapath.map_mut(name)?).map_err(map_error(name))?;
    replace(map, name, entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_verdict_counter_has_the_name_metrics_and_events_use() {
        let policy = policy::parse(
            "identities: { db: { cidrs: [198.18.3.10] } }
rules:
  - { name: allow-all, action: allow, from: any, to: any }
  - { name: no-db, action: deny, from: any, to: db }
rateLimits:
  - { name: db-flood, to: db, perSource: { packetsPerSecond: 10, burst: 1 } }
",
            std::path::Path::new("p.yaml"),
            &|_| unreachable!("no files"),
        )
        .expect("valid policy");
        let label = |index| {
            let label = verdict_label(&policy, index);
            (label.verdict, label.reason, label.rule)
        };
        assert_eq!(
            label(verdict_slot::RULE_BASE),
            ("pass", "rule", "allow-all".into())
        );
        assert_eq!(
            label(verdict_slot::RULE_BASE + 1),
            ("drop", "rule", "no-db".into())
        );
        assert_eq!(
            label(verdict_slot::RATE_LIMIT_DROP_BASE),
            ("drop", "rate_limit", "db-flood".into())
        );
        assert_eq!(
            label(verdict_slot::BLOCKLIST_DROP),
            ("drop", "blocklist", String::new())
        );
        assert_eq!(
            label(verdict_slot::ISOLATE_DROP),
            ("drop", "isolate", String::new())
        );
        assert_eq!(
            label(verdict_slot::TIMED_BLOCK_DROP),
            ("drop", "timed_block", String::new())
        );
        assert_eq!(
            label(verdict_slot::REPLY_PASS),
            ("pass", "reply", String::new())
        );
        assert_eq!(
            label(verdict_slot::RULE_BASE + 9),
            ("unknown", "rule", "#9".into())
        );
    }
}
