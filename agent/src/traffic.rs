//! What the XDP counters say, turned from kernel keys and per-CPU values into per-source totals,
//! and which of them changed since the last report.

use std::{collections::HashMap, net::IpAddr};

use agent_common::{
    address,
    xdp::{SourceKey, TrafficCounters, XdpStat},
};

/// Totals for one (interface, source address, protocol) since the program was attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceTraffic {
    pub ifindex: u32,
    pub source: IpAddr,
    pub protocol: u8,
    pub counters: TrafficCounters,
}

/// Program-wide counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpStats {
    pub frames: u64,
    pub non_ip: u64,
    pub truncated: u64,
    /// Frames not attributed because the source table was full: the loss the agent reports.
    pub source_table_full: u64,
    pub drop_events_lost: u64,
    pub drop_events_suppressed: u64,
    pub rate_state_full: u64,
    pub conntrack_insert_failed: u64,
}

impl XdpStats {
    /// Builds the stats from each slot's per-CPU values.
    pub fn from_slots<'a>(per_cpu: impl Fn(XdpStat) -> &'a [u64]) -> Self {
        let total = |stat| {
            per_cpu(stat)
                .iter()
                .fold(0u64, |sum, value| sum.saturating_add(*value))
        };
        Self {
            frames: total(XdpStat::Frames),
            non_ip: total(XdpStat::NonIp),
            truncated: total(XdpStat::Truncated),
            source_table_full: total(XdpStat::SourceTableFull),
            drop_events_lost: total(XdpStat::DropEventsLost),
            drop_events_suppressed: total(XdpStat::DropEventsSuppressed),
            rate_state_full: total(XdpStat::RateStateFull),
            conntrack_insert_failed: total(XdpStat::ConntrackInsertFailed),
        }
    }
}

/// Adds one key's per-CPU counters. Saturating: a wrapped counter would report less than was seen.
pub fn sum_per_cpu(values: impl IntoIterator<Item = TrafficCounters>) -> TrafficCounters {
    values
        .into_iter()
        .fold(TrafficCounters::default(), |sum, value| TrafficCounters {
            packets: sum.packets.saturating_add(value.packets),
            bytes: sum.bytes.saturating_add(value.bytes),
        })
}

/// Remembers what was last reported, so each report lists only what moved. Its size is bounded by
/// the kernel table it mirrors (`SOURCE_TRAFFIC_MAX_ENTRIES`).
#[derive(Debug, Default)]
pub struct ChangeTracker {
    reported: HashMap<SourceKey, TrafficCounters>,
}

impl ChangeTracker {
    /// The entries of `snapshot` whose totals differ from the last report, sorted by interface,
    /// source and protocol so that reports are stable to read and diff.
    pub fn changes(
        &mut self,
        snapshot: impl IntoIterator<Item = (SourceKey, TrafficCounters)>,
    ) -> Vec<SourceTraffic> {
        self.select(snapshot, false)
    }

    /// Every entry of `snapshot`, changed or not, in the same order: the closing report.
    pub fn everything(
        &mut self,
        snapshot: impl IntoIterator<Item = (SourceKey, TrafficCounters)>,
    ) -> Vec<SourceTraffic> {
        self.select(snapshot, true)
    }

    fn select(
        &mut self,
        snapshot: impl IntoIterator<Item = (SourceKey, TrafficCounters)>,
        include_unchanged: bool,
    ) -> Vec<SourceTraffic> {
        // What was reported last becomes exactly this snapshot, so entries the kernel table no
        // longer holds (an interface that went away) leave the tracker too.
        let previous = std::mem::take(&mut self.reported);
        self.reported = snapshot.into_iter().collect();
        let mut changed: Vec<SourceTraffic> = self
            .reported
            .iter()
            .map(|(key, counters)| (*key, *counters))
            .filter(|(key, counters)| include_unchanged || previous.get(key) != Some(counters))
            .map(|(key, counters)| SourceTraffic {
                ifindex: key.ifindex,
                source: address::decode(key.family, &key.addr),
                protocol: key.protocol,
                counters,
            })
            .collect();
        changed.sort_by(|a, b| {
            (a.ifindex, a.source, a.protocol).cmp(&(b.ifindex, b.source, b.protocol))
        });
        changed
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn counters(packets: u64, bytes: u64) -> TrafficCounters {
        TrafficCounters { packets, bytes }
    }

    fn key(source: &str, ifindex: u32, protocol: u8) -> SourceKey {
        let (family, addr) = address::encode(source.parse().unwrap());
        SourceKey::new(family, addr, ifindex, protocol)
    }

    fn source_address(key: &SourceKey) -> IpAddr {
        address::decode(key.family, &key.addr)
    }

    #[test]
    fn per_cpu_values_add_up_and_saturate() {
        assert_eq!(
            sum_per_cpu([counters(1, 100), counters(2, 50)]),
            counters(3, 150)
        );
        assert_eq!(sum_per_cpu([]), counters(0, 0));
        assert_eq!(
            sum_per_cpu([counters(u64::MAX, 1), counters(1, 1)]),
            counters(u64::MAX, 2)
        );
    }

    #[test]
    fn families_decode_to_the_right_address() {
        let v4 = key("198.18.0.2", 3, 17);
        assert_eq!(source_address(&v4), "198.18.0.2".parse::<IpAddr>().unwrap());
        let mapped_on_the_wire = key("::ffff:198.18.0.2", 3, 17);
        assert_eq!(
            source_address(&mapped_on_the_wire),
            "::ffff:198.18.0.2".parse::<IpAddr>().unwrap()
        );
        assert_ne!(mapped_on_the_wire, v4, "the families stay apart");
        let v6 = key("fd00:198:18::2", 3, 6);
        assert_eq!(
            source_address(&v6),
            "fd00:198:18::2".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn only_changed_entries_are_reported_again() {
        let a = key("198.18.0.2", 3, 17);
        let b = key("198.18.0.3", 4, 6);
        let mut tracker = ChangeTracker::default();
        assert_eq!(
            tracker
                .changes([(a, counters(1, 60)), (b, counters(2, 120))])
                .len(),
            2
        );
        assert!(
            tracker
                .changes([(a, counters(1, 60)), (b, counters(2, 120))])
                .is_empty()
        );
        let changed = tracker.changes([(a, counters(1, 60)), (b, counters(3, 180))]);
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].counters, counters(3, 180));
        assert_eq!(changed[0].ifindex, 4);
        assert_eq!(
            tracker
                .everything([(a, counters(1, 60)), (b, counters(3, 180))])
                .len(),
            2,
            "the closing report lists unchanged entries too"
        );
    }

    #[test]
    fn stats_sum_each_slot_over_cpus() {
        let stats = XdpStats::from_slots(|stat| match stat {
            XdpStat::Frames => &[5, 6],
            XdpStat::NonIp => &[1, 0],
            XdpStat::Truncated => &[0, 0],
            XdpStat::SourceTableFull => &[u64::MAX, 1],
            XdpStat::DropEventsLost => &[2, 2],
            _ => &[],
        });
        assert_eq!(
            stats,
            XdpStats {
                frames: 11,
                non_ip: 1,
                truncated: 0,
                source_table_full: u64::MAX,
                drop_events_lost: 4,
                ..XdpStats::default()
            }
        );
    }

    proptest! {
        #[test]
        fn reports_are_sorted_and_each_key_appears_once(
            entries in proptest::collection::hash_map(
                (any::<[u8; 4]>(), 1u32..8, any::<u8>()),
                (any::<u64>(), any::<u64>()),
                0..64,
            )
        ) {
            let snapshot: Vec<_> = entries
                .iter()
                .map(|((addr, ifindex, protocol), (packets, bytes))| {
                    (
                        key(&std::net::Ipv4Addr::from(*addr).to_string(), *ifindex, *protocol),
                        counters(*packets, *bytes),
                    )
                })
                .collect();
            let report = ChangeTracker::default().changes(snapshot.clone());
            prop_assert_eq!(report.len(), snapshot.len());
            for pair in report.windows(2) {
                prop_assert!(
                    (pair[0].ifindex, pair[0].source, pair[0].protocol)
                        < (pair[1].ifindex, pair[1].source, pair[1].protocol)
                );
            }
        }
    }
}
