//! Longest-prefix match over the declared and learned ranges: one hash lookup per prefix length
//! in use, most specific first, so 10,000 ranges of a dozen lengths cost a dozen lookups.

use std::{net::IpAddr, sync::Arc};

use ipnetwork::IpNetwork;
use rustc_hash::FxHashMap as HashMap;
use serde::Serialize;

use crate::{Identity, inventory::RangeKind};

/// The range an address lies in, as records name it next to the address's own identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RangeFacts {
    pub range: Arc<str>,
    pub range_kind: RangeKind,
}

/// A range: its facts, and the identity of an address that nothing more specific claims.
#[derive(Clone, Debug)]
pub struct RangeEntry {
    pub facts: Arc<RangeFacts>,
    pub identity: Arc<Identity>,
}

#[derive(Debug, Default)]
pub struct RangeTable {
    /// (prefix length, networks of that length by masked address), longest first.
    v4: Vec<(u8, HashMap<u32, RangeEntry>)>,
    v6: Vec<(u8, HashMap<u128, RangeEntry>)>,
    len: usize,
}

fn mask_v4(address: u32, prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        address & (u32::MAX << (32 - u32::from(prefix)))
    }
}

fn mask_v6(address: u128, prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        address & (u128::MAX << (128 - u32::from(prefix)))
    }
}

impl RangeTable {
    /// Earlier entries win over later ones with the same network: callers pass declared ranges
    /// before learned ones.
    pub fn build(entries: impl IntoIterator<Item = (IpNetwork, RangeEntry)>) -> Self {
        let mut v4: HashMap<u8, HashMap<u32, RangeEntry>> = HashMap::default();
        let mut v6: HashMap<u8, HashMap<u128, RangeEntry>> = HashMap::default();
        let mut len = 0;
        for (network, entry) in entries {
            let inserted = match network {
                IpNetwork::V4(network) => {
                    let prefix = network.prefix();
                    let key = mask_v4(network.ip().to_bits(), prefix);
                    let table = v4.entry(prefix).or_default();
                    !table.contains_key(&key) && table.insert(key, entry).is_none()
                }
                IpNetwork::V6(network) => {
                    let prefix = network.prefix();
                    let key = mask_v6(network.ip().to_bits(), prefix);
                    let table = v6.entry(prefix).or_default();
                    !table.contains_key(&key) && table.insert(key, entry).is_none()
                }
            };
            len += usize::from(inserted);
        }
        let mut v4: Vec<_> = v4.into_iter().collect();
        v4.sort_unstable_by_key(|entry| std::cmp::Reverse(entry.0));
        let mut v6: Vec<_> = v6.into_iter().collect();
        v6.sort_unstable_by_key(|entry| std::cmp::Reverse(entry.0));
        Self { v4, v6, len }
    }

    pub fn lookup(&self, ip: IpAddr) -> Option<&RangeEntry> {
        match ip {
            IpAddr::V4(ip) => {
                let bits = ip.to_bits();
                self.v4
                    .iter()
                    .find_map(|(prefix, table)| table.get(&mask_v4(bits, *prefix)))
            }
            IpAddr::V6(ip) => {
                // An IPv4-mapped address is the IPv4 address (a dual-stack socket shows them).
                if let Some(v4) = ip.to_ipv4_mapped() {
                    return self.lookup(IpAddr::V4(v4));
                }
                let bits = ip.to_bits();
                self.v6
                    .iter()
                    .find_map(|(prefix, table)| table.get(&mask_v6(bits, *prefix)))
            }
        }
    }

    /// Every network with its range, longest prefixes first.
    pub fn networks(&self) -> impl Iterator<Item = (IpNetwork, &RangeEntry)> {
        let v4 = self.v4.iter().flat_map(|(prefix, table)| {
            table.iter().filter_map(|(bits, entry)| {
                let network = ipnetwork::Ipv4Network::new((*bits).into(), *prefix).ok()?;
                Some((IpNetwork::V4(network), entry))
            })
        });
        let v6 = self.v6.iter().flat_map(|(prefix, table)| {
            table.iter().filter_map(|(bits, entry)| {
                let network = ipnetwork::Ipv6Network::new((*bits).into(), *prefix).ok()?;
                Some((IpNetwork::V6(network), entry))
            })
        });
        v4.chain(v6)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn entry(name: &str) -> RangeEntry {
        RangeEntry {
            facts: Arc::new(RangeFacts {
                range: Arc::from(name),
                range_kind: RangeKind::Internal,
            }),
            identity: Arc::new(Identity::default()),
        }
    }

    fn name_of(table: &RangeTable, ip: &str) -> Option<String> {
        table
            .lookup(ip.parse().expect("ip"))
            .map(|entry| entry.facts.range.to_string())
    }

    #[test]
    fn the_most_specific_range_wins_and_the_first_of_equals() {
        let table = RangeTable::build([
            ("10.0.0.0/8".parse().expect("cidr"), entry("corp")),
            ("10.1.0.0/16".parse().expect("cidr"), entry("pods")),
            ("10.1.0.0/16".parse().expect("cidr"), entry("learned pods")),
            ("10.1.2.3/32".parse().expect("cidr"), entry("host")),
            ("fd00::/8".parse().expect("cidr"), entry("ula")),
            ("0.0.0.0/0".parse().expect("cidr"), entry("everything")),
        ]);
        assert_eq!(table.len(), 5);
        assert_eq!(name_of(&table, "10.1.2.3").as_deref(), Some("host"));
        assert_eq!(name_of(&table, "10.1.2.4").as_deref(), Some("pods"));
        assert_eq!(name_of(&table, "10.2.0.1").as_deref(), Some("corp"));
        assert_eq!(name_of(&table, "::ffff:10.2.0.1").as_deref(), Some("corp"));
        assert_eq!(name_of(&table, "8.8.8.8").as_deref(), Some("everything"));
        assert_eq!(name_of(&table, "fd12::1").as_deref(), Some("ula"));
        assert_eq!(name_of(&table, "2001:db8::1"), None);
    }

    proptest! {
        /// The table agrees with a linear scan for the longest containing network.
        #[test]
        fn lookup_is_longest_prefix_match(
            networks in proptest::collection::vec((any::<u32>(), 0u8..=32), 1..40),
            probes in proptest::collection::vec(any::<u32>(), 1..40),
        ) {
            let networks: Vec<ipnetwork::Ipv4Network> = networks
                .into_iter()
                .map(|(bits, prefix)| ipnetwork::Ipv4Network::new(std::net::Ipv4Addr::from_bits(mask_v4(bits, prefix)), prefix).expect("valid"))
                .collect();
            let table = RangeTable::build(networks.iter().enumerate().map(|(index, network)| (IpNetwork::V4(*network), entry(&index.to_string()))));
            for probe in probes {
                let ip = std::net::Ipv4Addr::from_bits(probe);
                let expected = networks
                    .iter()
                    .enumerate()
                    .filter(|(_, network)| network.contains(ip))
                    .max_by(|a, b| a.1.prefix().cmp(&b.1.prefix()).then(b.0.cmp(&a.0)))
                    .map(|(index, _)| index.to_string());
                prop_assert_eq!(name_of(&table, &ip.to_string()), expected);
            }
        }
    }
}
