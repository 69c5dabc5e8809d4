//! Compiles a [`Policy`] into the tables the XDP program looks up, so that the kernel reaches
//! the verdict [`crate::evaluate::evaluate`] defines with a bounded number of lookups:
//!
//! - identities and the blocklist: exact addresses (/32, /128) in hash maps, real prefixes in
//!   longest-prefix-match tries; the hash is tried first (an exact address is the most specific
//!   match there is), and a hash lookup costs a fraction of a trie lookup.
//! - rules: keyed by (from, to, protocol, port), with `any` as a wildcard value. For a packet the
//!   program tries the identity pairs from most to least specific: (source, destination), then
//!   (source, any) and (any, destination) together, then (any, any). Within a pair it tries
//!   (protocol, port), (protocol, any port), (any, any port) and stops at the first hit, so each
//!   entry here already folds in the broader entries of its pair, with deny beating allow.

use std::collections::BTreeMap;

use agent_common::policy::{
    ACTION_ALLOW, ACTION_DENY, BLOCK_EXACT_MAX_ENTRIES, BLOCK_PREFIX_MAX_ENTRIES,
    BLOCK_V4_BITMAP_PREFIX, IDENTITY_ANY, IDENTITY_EXACT_MAX_ENTRIES, IDENTITY_ISOLATED,
    IDENTITY_PREFIX_MAX_ENTRIES, IDENTITY_WORLD, IdentityValue, IpKey, PORT_ANY,
    PREFIX_FAMILY_BITS, PROTOCOL_ANY, PrefixKey, RULES_MAX_ENTRIES, RateLimitConfig, RuleKey,
    RuleValue,
};
use ipnetwork::IpNetwork;
use thiserror::Error;

use crate::model::{Action, Policy, Protocol, Selector};

#[derive(Debug, Error, PartialEq, Eq)]
#[error("the policy needs {count} entries in the kernel's {table} table, which holds {capacity}")]
pub struct CompileError {
    pub table: &'static str,
    pub count: usize,
    pub capacity: u32,
}

/// Everything one policy slot holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelPolicy {
    pub identity_exact: Vec<(IpKey, IdentityValue)>,
    pub identity_prefix: Vec<(PrefixKey, IdentityValue)>,
    /// Flags and rate limit of addresses no identity covers (its id is always world).
    pub world: IdentityValue,
    pub block_exact: Vec<IpKey>,
    /// IPv6 blocklist prefixes only: IPv4 ranges are in the bitmap or expanded into exact
    /// addresses.
    pub block_prefix: Vec<PrefixKey>,
    /// IPv4 blocklist ranges of /24 or wider, one bit per /24: word index to bits.
    pub block_v4_bitmap: BTreeMap<u32, u64>,
    pub rules: Vec<(RuleKey, RuleValue)>,
    pub rate_limits: Vec<RateLimitConfig>,
}

pub fn ip_key(address: std::net::IpAddr) -> IpKey {
    let (family, bytes) = agent_common::address::encode(address);
    IpKey::new(family, bytes)
}

pub fn prefix_key(network: IpNetwork) -> PrefixKey {
    PrefixKey {
        prefix_len: PREFIX_FAMILY_BITS + u32::from(network.prefix()),
        ip: ip_key(network.network()),
    }
}

fn is_exact(network: &IpNetwork) -> bool {
    match network {
        IpNetwork::V4(v4) => v4.prefix() == 32,
        IpNetwork::V6(v6) => v6.prefix() == 128,
    }
}

fn identity_key(selector: Selector) -> u32 {
    match selector {
        Selector::Identity(index) => index as u32 + 1,
        Selector::World => IDENTITY_WORLD,
        Selector::Any => IDENTITY_ANY,
    }
}

pub fn compile(policy: &Policy) -> Result<KernelPolicy, CompileError> {
    let mut kernel = KernelPolicy::default();
    let rate_limit_of = |selector: Selector| {
        policy
            .rate_limits
            .iter()
            .position(|limit| limit.to == selector)
            .map_or(0, |index| index as u32 + 1)
    };
    for (index, identity) in policy.identities.iter().enumerate() {
        let value = IdentityValue {
            id: index as u32 + 1,
            flags: if identity.isolated {
                IDENTITY_ISOLATED
            } else {
                0
            },
            rate_limit: rate_limit_of(Selector::Identity(index)),
        };
        for cidr in &identity.cidrs {
            if is_exact(cidr) {
                kernel.identity_exact.push((ip_key(cidr.ip()), value));
            } else {
                kernel.identity_prefix.push((prefix_key(*cidr), value));
            }
        }
    }
    kernel.world = IdentityValue {
        id: IDENTITY_WORLD,
        flags: 0,
        rate_limit: rate_limit_of(Selector::World),
    };
    for cidr in &policy.blocklist {
        match cidr {
            IpNetwork::V4(v4) if v4.prefix() <= BLOCK_V4_BITMAP_PREFIX => {
                set_bitmap_range(&mut kernel.block_v4_bitmap, *v4);
            }
            IpNetwork::V4(v4) => {
                let first = u32::from(v4.network());
                let count = 1u32 << (32 - v4.prefix());
                kernel
                    .block_exact
                    .extend((first..first + count).map(|address| {
                        ip_key(std::net::IpAddr::V4(std::net::Ipv4Addr::from(address)))
                    }));
            }
            IpNetwork::V6(_) if is_exact(cidr) => kernel.block_exact.push(ip_key(cidr.ip())),
            IpNetwork::V6(_) => kernel.block_prefix.push(prefix_key(*cidr)),
        }
    }
    kernel
        .block_exact
        .sort_unstable_by_key(|key| (key.family, key.addr));
    kernel.block_exact.dedup();
    kernel.rules = rule_entries(policy);
    kernel.rate_limits = policy
        .rate_limits
        .iter()
        .map(|limit| {
            let interval_ns = 1_000_000_000 / limit.packets_per_second;
            RateLimitConfig {
                interval_ns,
                tolerance_ns: interval_ns.saturating_mul(limit.burst),
            }
        })
        .collect();

    check(
        "identity exact",
        kernel.identity_exact.len(),
        IDENTITY_EXACT_MAX_ENTRIES,
    )?;
    check(
        "identity prefix",
        kernel.identity_prefix.len(),
        IDENTITY_PREFIX_MAX_ENTRIES,
    )?;
    check(
        "blocklist exact",
        kernel.block_exact.len(),
        BLOCK_EXACT_MAX_ENTRIES,
    )?;
    check(
        "blocklist prefix",
        kernel.block_prefix.len(),
        BLOCK_PREFIX_MAX_ENTRIES,
    )?;
    check("rules", kernel.rules.len(), RULES_MAX_ENTRIES)?;
    Ok(kernel)
}

/// Sets the bit of every /24 inside `network` (a /24 or wider).
fn set_bitmap_range(bitmap: &mut BTreeMap<u32, u64>, network: ipnetwork::Ipv4Network) {
    let first = u32::from(network.network()) >> 8;
    let count = 1u32 << (BLOCK_V4_BITMAP_PREFIX - network.prefix());
    for slash24 in first..first + count {
        *bitmap.entry(slash24 >> 6).or_default() |= 1u64 << (slash24 & 63);
    }
}

/// Is `address` inside a range the bitmap holds?
pub fn bitmap_covers(bitmap: &BTreeMap<u32, u64>, address: std::net::Ipv4Addr) -> bool {
    let slash24 = u32::from(address) >> 8;
    bitmap
        .get(&(slash24 >> 6))
        .is_some_and(|word| word >> (slash24 & 63) & 1 == 1)
}

fn check(table: &'static str, count: usize, capacity: u32) -> Result<(), CompileError> {
    if count > capacity as usize {
        return Err(CompileError {
            table,
            count,
            capacity,
        });
    }
    Ok(())
}

/// One rule's (protocol, port) entries: `any` with ports means TCP or UDP to those ports, and
/// ICMP covers both families.
fn atoms(protocol: Protocol, ports: &[u16]) -> Vec<(u8, u16)> {
    let numbers: &[u8] = match protocol {
        Protocol::Tcp => &[6],
        Protocol::Udp => &[17],
        Protocol::Icmp => &[1, 58],
        Protocol::Any if ports.is_empty() => &[PROTOCOL_ANY],
        Protocol::Any => &[6, 17],
    };
    let port_keys: Vec<u16> = if ports.is_empty() {
        vec![PORT_ANY]
    } else {
        ports.to_vec()
    };
    numbers
        .iter()
        .flat_map(|&number| port_keys.iter().map(move |&port| (number, port)))
        .collect()
}

fn rule_entries(policy: &Policy) -> Vec<(RuleKey, RuleValue)> {
    // (from, to) -> (protocol, port) -> value of the rules at exactly that key.
    let mut pairs: BTreeMap<(u32, u32), BTreeMap<(u8, u16), RuleValue>> = BTreeMap::new();
    for (index, rule) in policy.rules.iter().enumerate() {
        let value = RuleValue {
            action: match rule.action {
                Action::Allow => ACTION_ALLOW,
                Action::Deny => ACTION_DENY,
            },
            rule: index as u32,
        };
        let pair = pairs
            .entry((identity_key(rule.from), identity_key(rule.to)))
            .or_default();
        for atom in atoms(rule.protocol, &rule.ports) {
            pair.entry(atom)
                .and_modify(|existing| *existing = existing.combine(value))
                .or_insert(value);
        }
    }
    let mut entries = Vec::new();
    for ((from, to), atoms) in &pairs {
        for (&(protocol, port), &own) in atoms {
            // Fold in what a lookup at this key hides: the broader keys of the same pair.
            let broader = [(protocol, PORT_ANY), (PROTOCOL_ANY, PORT_ANY)]
                .into_iter()
                .filter(|&key| key != (protocol, port))
                .filter_map(|key| atoms.get(&key).copied());
            let value = broader.fold(own, RuleValue::combine);
            entries.push((RuleKey::new(*from, *to, protocol, port), value));
        }
    }
    entries
}
