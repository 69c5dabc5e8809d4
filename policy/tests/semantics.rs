//! The precedence rules, case by case, and the compiled kernel tables agreeing with the reference
//! semantics on random policies and packets.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed unwrap is a failed test"
)]

use std::{collections::HashMap, net::IpAddr};

use agent_common::policy::{
    ACTION_DENY, IDENTITY_ANY, IDENTITY_ISOLATED, IDENTITY_WORLD, IdentityValue, IpKey, PORT_ANY,
    PROTOCOL_ANY, PrefixKey, RuleKey, RuleValue,
};
use policy::strategies::{random_flow, random_policy};
use policy::{
    Policy,
    compile::{KernelPolicy, bitmap_covers, compile, ip_key, prefix_key},
    evaluate::{DropReason, Flow, PassReason, Verdict, evaluate},
};
use proptest::prelude::*;

fn parse(text: &str) -> Policy {
    policy::parse(text, std::path::Path::new("test.yaml"), &|_| {
        unreachable!("no files")
    })
    .unwrap_or_else(|error| panic!("{error}"))
}

fn tcp(src: &str, dst: &str, port: u16) -> Flow {
    Flow {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        protocol: 6,
        dst_port: Some(port),
    }
}

const IDENTITIES: &str = "
identities:
  corp:     { cidrs: [198.18.0.0/16] }
  frontend: { cidrs: [198.18.1.0/24] }
  db:       { cidrs: [198.18.3.10/32, fd00:198:18:3::10/128] }
";

#[test]
fn the_most_specific_cidr_decides_the_identity() {
    let policy = parse(&format!(
        "{IDENTITIES}rules:
  - {{ name: corp-denied, action: deny, from: corp, to: db }}
  - {{ name: frontend-allowed, action: allow, from: frontend, to: db }}
"
    ));
    assert_eq!(
        evaluate(&policy, &tcp("198.18.1.5", "198.18.3.10", 5432)),
        Verdict::Pass(PassReason::Rule(1)),
        "198.18.1.5 is frontend (/24), not corp (/16)"
    );
    assert_eq!(
        evaluate(&policy, &tcp("198.18.2.5", "198.18.3.10", 5432)),
        Verdict::Drop(DropReason::Rule(0)),
    );
}

#[test]
fn deny_beats_allow_at_equal_specificity_and_any_port_counts_the_same() {
    let policy = parse(&format!(
        "{IDENTITIES}rules:
  - {{ name: allow-pg, action: allow, from: frontend, to: db, protocol: tcp, ports: [5432] }}
  - {{ name: deny-all, action: deny, from: frontend, to: db }}
"
    ));
    assert_eq!(
        evaluate(&policy, &tcp("198.18.1.5", "198.18.3.10", 5432)),
        Verdict::Drop(DropReason::Rule(1))
    );
}

#[test]
fn a_rule_naming_both_sides_beats_one_naming_any() {
    let policy = parse(&format!(
        "{IDENTITIES}rules:
  - {{ name: nobody-to-db, action: deny, from: any, to: db }}
  - {{ name: frontend-to-db, action: allow, from: frontend, to: db, ports: [5432] }}
"
    ));
    assert_eq!(
        evaluate(&policy, &tcp("198.18.1.5", "198.18.3.10", 5432)),
        Verdict::Pass(PassReason::Rule(1))
    );
    assert_eq!(
        evaluate(&policy, &tcp("198.18.1.5", "198.18.3.10", 22)),
        Verdict::Drop(DropReason::Rule(0)),
        "the allow is for 5432 only"
    );
}

#[test]
fn allow_beats_isolate_and_isolate_drops_the_rest() {
    let policy = parse(&format!(
        "{IDENTITIES}isolate: [db]
rules:
  - {{ name: frontend-to-db, action: allow, from: frontend, to: db, protocol: tcp, ports: [5432] }}
"
    ));
    assert_eq!(
        evaluate(&policy, &tcp("198.18.1.5", "198.18.3.10", 5432)),
        Verdict::Pass(PassReason::Rule(0))
    );
    assert_eq!(
        evaluate(&policy, &tcp("198.18.1.5", "198.18.3.10", 5433)),
        Verdict::Drop(DropReason::Isolated)
    );
    assert_eq!(
        evaluate(&policy, &tcp("198.18.9.9", "fd00:198:18:3::10", 5432)),
        Verdict::Drop(DropReason::Isolated),
        "a v4 source to the v6 address of db: no such flow on the wire, but still isolated"
    );
    assert_eq!(
        evaluate(&policy, &tcp("198.18.3.10", "198.18.1.5", 80)),
        Verdict::Pass(PassReason::NoRuleMatched),
        "isolation is about ingress only"
    );
}

#[test]
fn world_means_no_identity_and_any_means_everyone() {
    let policy = parse(&format!(
        "{IDENTITIES}rules:
  - {{ name: world-out, action: deny, from: world, to: any }}
"
    ));
    assert_eq!(
        evaluate(&policy, &tcp("203.0.113.9", "198.18.3.10", 80)),
        Verdict::Drop(DropReason::Rule(0))
    );
    assert_eq!(
        evaluate(&policy, &tcp("198.18.1.5", "198.18.3.10", 80)),
        Verdict::Pass(PassReason::NoRuleMatched)
    );
}

#[test]
fn the_blocklist_comes_before_everything() {
    let policy = parse(&format!(
        "{IDENTITIES}blocklist: {{ cidrs: [198.18.1.128/25] }}
rules:
  - {{ name: frontend-to-db, action: allow, from: frontend, to: db }}
"
    ));
    assert_eq!(
        evaluate(&policy, &tcp("198.18.1.200", "198.18.3.10", 5432)),
        Verdict::Drop(DropReason::Blocklist)
    );
    assert_eq!(
        evaluate(&policy, &tcp("198.18.1.100", "198.18.3.10", 5432)),
        Verdict::Pass(PassReason::Rule(0))
    );
}

#[test]
fn ports_match_tcp_and_udp_only_and_icmp_covers_both_families() {
    let policy = parse(
        "rules:
  - { name: dns, action: deny, from: any, to: any, ports: [53] }
  - { name: ping, action: deny, from: any, to: any, protocol: icmp }
",
    );
    let flow = |protocol, dst_port| Flow {
        src: "fd00:198:18::1".parse().unwrap(),
        dst: "fd00:198:18::2".parse().unwrap(),
        protocol,
        dst_port,
    };
    assert_eq!(
        evaluate(&policy, &flow(17, Some(53))),
        Verdict::Drop(DropReason::Rule(0))
    );
    assert_eq!(
        evaluate(&policy, &flow(6, Some(53))),
        Verdict::Drop(DropReason::Rule(0))
    );
    assert_eq!(
        evaluate(&policy, &flow(132, None)),
        Verdict::Pass(PassReason::NoRuleMatched)
    );
    assert_eq!(
        evaluate(&policy, &flow(17, None)),
        Verdict::Pass(PassReason::NoRuleMatched)
    );
    assert_eq!(
        evaluate(&policy, &flow(58, None)),
        Verdict::Drop(DropReason::Rule(1))
    );
    assert_eq!(
        evaluate(&policy, &flow(1, None)),
        Verdict::Drop(DropReason::Rule(1))
    );
}

/// The lookups the XDP program makes, over the compiled tables, written as plainly as the
/// kernel side does them.
fn kernel_verdict(kernel: &KernelPolicy, flow: &Flow) -> Verdict {
    fn longest<'a, V>(
        prefixes: impl Iterator<Item = (&'a PrefixKey, V)>,
        key: &IpKey,
    ) -> Option<V> {
        prefixes
            .filter(|(prefix, _)| covers(prefix, key))
            .max_by_key(|(prefix, _)| prefix.prefix_len)
            .map(|(_, value)| value)
    }
    let src = ip_key(flow.src);
    let dst = ip_key(flow.dst);
    let in_bitmap = match flow.src {
        IpAddr::V4(v4) => bitmap_covers(&kernel.block_v4_bitmap, v4),
        IpAddr::V6(_) => false,
    };
    let blocked = in_bitmap
        || kernel.block_exact.contains(&src)
        || longest(kernel.block_prefix.iter().map(|prefix| (prefix, ())), &src).is_some();
    if blocked {
        return Verdict::Drop(DropReason::Blocklist);
    }
    let resolve = |key: &IpKey| -> IdentityValue {
        kernel
            .identity_exact
            .iter()
            .find(|(exact, _)| exact == key)
            .map(|(_, value)| *value)
            .or_else(|| longest(kernel.identity_prefix.iter().map(|(p, v)| (p, *v)), key))
            .unwrap_or(kernel.world)
    };
    let (source, destination) = (resolve(&src), resolve(&dst));
    let rules: HashMap<RuleKey, RuleValue> = kernel.rules.iter().copied().collect();
    let port = match (flow.protocol, flow.dst_port) {
        (6 | 17, Some(port)) => port,
        _ => PORT_ANY,
    };
    let in_pair = |from: u32, to: u32| {
        let mut keys = vec![];
        if port != PORT_ANY {
            keys.push(RuleKey::new(from, to, flow.protocol, port));
        }
        keys.push(RuleKey::new(from, to, flow.protocol, PORT_ANY));
        keys.push(RuleKey::new(from, to, PROTOCOL_ANY, PORT_ANY));
        keys.into_iter().find_map(|key| rules.get(&key).copied())
    };
    let levels: [Vec<(u32, u32)>; 3] = [
        vec![(source.id, destination.id)],
        vec![(source.id, IDENTITY_ANY), (IDENTITY_ANY, destination.id)],
        vec![(IDENTITY_ANY, IDENTITY_ANY)],
    ];
    for level in levels {
        if let Some(value) = level
            .into_iter()
            .filter_map(|(from, to)| in_pair(from, to))
            .reduce(RuleValue::combine)
        {
            let rule = value.rule as usize;
            return if value.action == ACTION_DENY {
                Verdict::Drop(DropReason::Rule(rule))
            } else {
                Verdict::Pass(PassReason::Rule(rule))
            };
        }
    }
    if destination.flags & IDENTITY_ISOLATED != 0 {
        Verdict::Drop(DropReason::Isolated)
    } else {
        Verdict::Pass(PassReason::NoRuleMatched)
    }
}

/// Does the trie entry cover the key? Bit by bit over the key's bytes, as the LPM trie defines.
fn covers(prefix: &PrefixKey, key: &IpKey) -> bool {
    let bytes = |ip: &IpKey| {
        let mut bytes = [0u8; 20];
        bytes[0] = ip.family;
        bytes[4..].copy_from_slice(&ip.addr);
        bytes
    };
    let (network, address) = (bytes(&prefix.ip), bytes(key));
    let bit = |bytes: &[u8; 20], index: u32| bytes[index as usize / 8] >> (7 - index % 8) & 1;
    (0..prefix.prefix_len).all(|index| bit(&network, index) == bit(&address, index))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn compiled_tables_reach_the_reference_verdict(
        policy in random_policy(),
        flows in proptest::collection::vec(random_flow(), 16),
    ) {
        let kernel = compile(&policy).expect("small policies fit");
        for flow in &flows {
            prop_assert_eq!(kernel_verdict(&kernel, flow), evaluate(&policy, flow), "{:?}", flow);
        }
    }
}

#[test]
fn ipv4_blocklist_ranges_become_bitmap_bits_or_exact_addresses() {
    let policy = parse(
        "blocklist: { cidrs: [198.19.0.0/16, 198.18.5.0/24, 198.18.9.4/30, 198.18.7.7, fd00::/64] }",
    );
    let kernel = compile(&policy).unwrap();
    let covered = |text: &str| bitmap_covers(&kernel.block_v4_bitmap, text.parse().unwrap());
    assert!(covered("198.19.200.1") && covered("198.19.0.0") && covered("198.19.255.255"));
    assert!(covered("198.18.5.77"));
    assert!(!covered("198.18.4.255") && !covered("198.18.6.0") && !covered("198.20.0.0"));
    assert!(!covered("198.18.9.5"), "a /30 is not in the /24 bitmap");
    assert_eq!(
        kernel.block_exact.len(),
        4 + 1,
        "the /30 expanded, plus the /32"
    );
    assert_eq!(
        kernel.block_prefix.len(),
        1,
        "only the IPv6 prefix uses the trie"
    );
    let bits: u32 = kernel
        .block_v4_bitmap
        .values()
        .map(|word| word.count_ones())
        .sum();
    assert_eq!(bits, 256 + 1);
}

#[test]
fn world_and_identity_keys_are_distinct() {
    assert_ne!(IDENTITY_WORLD, IDENTITY_ANY);
    let key = prefix_key("198.18.0.0/16".parse().unwrap());
    assert_eq!(key.prefix_len, 32 + 16);
}
