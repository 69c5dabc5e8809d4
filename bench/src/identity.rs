//! Identity at cluster scale: how fast the agent names an address with 100,000 pods and 10,000
//! ranges in its index, how much memory that index takes, and how long a pod change takes to
//! reach the kernel's policy maps.
//!
//! Lookups are compared with a bare `HashMap` lookup of the same addresses in the same run (the
//! floor any index pays); memory is the process's resident growth while building the index; the
//! pod-change time covers what the agent does on a watch event (apply to the index, resolve the
//! policy's selectors, compile, write the idle slot and switch) and needs root for the maps.

use std::{
    collections::{BTreeMap, HashMap},
    hint::black_box,
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use agent::{enforcer::Enforcer, loader::Datapath, policies::Policies};
use anyhow::Context as _;
use identity::{
    IdentityIndex, Inventory,
    inventory::{DeclaredRange, RangeKind},
    kubernetes::{NodeFacts, PodFacts, ServiceFacts},
    tags::Tags,
};

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Pods in the index.
    #[arg(long, default_value_t = 100_000)]
    pods: u32,
    /// Declared ranges in the inventory (IPv4, prefixes /16 to /28).
    #[arg(long, default_value_t = 10_000)]
    ranges: u32,
    /// Services in the index.
    #[arg(long, default_value_t = 10_000)]
    services: u32,
    /// Nodes in the index (each with its pod CIDR).
    #[arg(long, default_value_t = 1_000)]
    nodes: u32,
    /// Lookups per measurement.
    #[arg(long, default_value_t = 2_000_000)]
    lookups: u32,
    /// Pod changes timed through to the kernel maps (needs root; 0 skips that part).
    #[arg(long, default_value_t = 30)]
    changes: u32,
}

/// Pod `n`'s address: 10.x.y.z, packed from n, inside its node's /24.
fn pod_address(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from_bits(0x0A00_0000 | (n + 1)))
}

fn pod(n: u32, nodes: u32, app: &str) -> PodFacts {
    let uid = format!("{n:08x}-0000-4000-8000-000000000000");
    PodFacts {
        uid: Arc::from(uid.as_str()),
        namespace: Arc::from(format!("ns-{}", n % 500).as_str()),
        name: Arc::from(format!("app-{}-7d9f8c6b5d-{n:05}", n % 2000).as_str()),
        node: Some(Arc::from(
            format!("node-{}", (n >> 8) % nodes.max(1)).as_str(),
        )),
        ips: vec![pod_address(n)],
        labels: BTreeMap::from([
            ("app".to_owned(), app.to_owned()),
            ("pod-template-hash".to_owned(), "7d9f8c6b5d".to_owned()),
            ("team".to_owned(), format!("team-{}", n % 50)),
        ]),
        tags: Tags::default(),
        workload: Some(identity::Workload {
            kind: Arc::from("Deployment"),
            name: Arc::from(format!("app-{}", n % 2000).as_str()),
        }),
        containers: BTreeMap::from([(format!("{n:064x}"), Arc::from("main"))]),
        finished: false,
        created: Some(0),
    }
}

fn inventory(ranges: u32) -> Inventory {
    Inventory {
        cluster: Some(Arc::from("bench")),
        environment: Some(Arc::from("production")),
        ranges: (0..ranges)
            .map(|n| {
                let prefix = 16 + (n % 13) as u8;
                // 172.16.0.0/12 and up: outside the pods' 10.0.0.0/8.
                let base = 0xAC10_0000u32 + (n << 12);
                let network = ipnetwork::Ipv4Network::new(Ipv4Addr::from_bits(base), prefix)
                    .map(|network| {
                        ipnetwork::Ipv4Network::new(network.network(), prefix).unwrap_or(network)
                    })
                    .expect("a valid prefix");
                DeclaredRange {
                    name: Arc::from(format!("range-{n}").as_str()),
                    kind: if n % 3 == 0 {
                        RangeKind::Partner
                    } else {
                        RangeKind::Internal
                    },
                    cidrs: vec![ipnetwork::IpNetwork::V4(network)],
                    customer: None,
                    environment: None,
                    tags: Tags::default(),
                }
            })
            .collect(),
        tag_rules: Vec::new(),
        apis: Vec::new(),
    }
}

fn resident_bytes() -> u64 {
    crate::measure::proc_status_bytes("self", "VmRSS").unwrap_or(0)
}

fn build(options: &Options) -> IdentityIndex {
    let mut index = IdentityIndex::new(inventory(options.ranges));
    // As the agent on node-0 does: only its own pods' containers are kept.
    index.set_local_node("node-0");
    for node in 0..options.nodes {
        index.apply_node(NodeFacts {
            name: Arc::from(format!("node-{node}").as_str()),
            ips: vec![IpAddr::V4(Ipv4Addr::from_bits(0xC0A8_0000 + node + 1))],
            pod_cidrs: Vec::new(),
            labels: BTreeMap::new(),
            tags: Tags::default(),
        });
    }
    for service in 0..options.services {
        let ip = IpAddr::V4(Ipv4Addr::from_bits(0x6460_0000 + service + 1));
        index.apply_service(ServiceFacts {
            namespace: Arc::from(format!("ns-{}", service % 500).as_str()),
            name: Arc::from(format!("svc-{service}").as_str()),
            ips: vec![ip],
            cluster_ips: vec![ip],
            labels: BTreeMap::new(),
            tags: Tags::default(),
            api: None,
            // Services select their namespace's pods by team, so pods are named by services as
            // in a real cluster and that costs what it costs.
            selector: BTreeMap::from([("team".to_owned(), format!("team-{}", service % 50))]),
        });
    }
    // One by one, as watch events arrive: a relist's temporary list would inflate the memory
    // measured.
    for n in 0..options.pods {
        index.apply_pod(
            pod(n, options.nodes, if n % 100 == 0 { "db" } else { "web" }),
            0,
        );
    }
    index.refresh();
    index
}

/// A deterministic spread of addresses: pods, range members, services, and outsiders.
fn probes(options: &Options, count: usize) -> Vec<IpAddr> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..count)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let pick = (state >> 32) as u32;
            match i % 4 {
                0 | 1 => pod_address(pick % options.pods.max(1)),
                2 => IpAddr::V4(Ipv4Addr::from_bits(
                    0xAC10_0000 + (pick % (options.ranges.max(1) << 12)),
                )),
                _ => IpAddr::V4(Ipv4Addr::from_bits(0xC633_6400 + (pick & 0xff))),
            }
        })
        .collect()
}

pub fn run(options: &Options) -> anyhow::Result<()> {
    println!(
        "identity: {} pods, {} services, {} nodes, {} declared ranges",
        options.pods, options.services, options.nodes, options.ranges
    );
    let before = resident_bytes();
    let started = Instant::now();
    let index = build(options);
    let built_in = started.elapsed();
    // Let the allocator hand back what building freed (grown tables), as it would in the agent
    // between watch events.
    std::thread::sleep(Duration::from_millis(500));
    let grown = resident_bytes().saturating_sub(before);
    let stats = index.stats();
    println!(
        "  index built in {:.2} s: {} pods, {} services, {} nodes, {} ranges; resident memory +{:.1} MiB (target: under 100 MiB)",
        built_in.as_secs_f64(),
        stats.pods,
        stats.services,
        stats.nodes,
        stats.ranges,
        grown as f64 / (1024.0 * 1024.0)
    );

    let addresses = probes(options, 65_536);
    let baseline: HashMap<IpAddr, u32> = (0..options.pods).map(|n| (pod_address(n), n)).collect();
    let rounds = options.lookups as usize;
    let time = |lookup: &dyn Fn(IpAddr)| {
        let started = Instant::now();
        for i in 0..rounds {
            lookup(addresses[i & 0xffff]);
        }
        rounds as f64 / started.elapsed().as_secs_f64()
    };
    let floor = time(&|ip| {
        black_box(baseline.get(&ip));
    });
    let moat = time(&|ip| {
        black_box(index.resolve(ip, 1));
    });
    println!(
        "  lookups, a mix of half pods, a quarter in ranges, a quarter outside: {:.2} M/s; a bare HashMap of the pods: {:.2} M/s (ratio {:.2})",
        moat / 1e6,
        floor / 1e6,
        moat / floor
    );
    let pods_only: Vec<IpAddr> = addresses
        .iter()
        .copied()
        .filter(|ip| baseline.contains_key(ip))
        .collect();
    let time_pods = |lookup: &dyn Fn(IpAddr)| {
        let started = Instant::now();
        for i in 0..rounds {
            lookup(pods_only[i % pods_only.len()]);
        }
        rounds as f64 / started.elapsed().as_secs_f64()
    };
    let floor = time_pods(&|ip| {
        black_box(baseline.get(&ip));
    });
    let moat = time_pods(&|ip| {
        black_box(index.resolve(ip, 1));
    });
    println!(
        "  lookups of pod addresses only: {:.2} M/s; bare HashMap: {:.2} M/s (ratio {:.2})",
        moat / 1e6,
        floor / 1e6,
        moat / floor
    );

    if options.changes > 0 {
        pod_change_to_kernel(options, index)?;
    }
    Ok(())
}

/// Relabels a pod in and out of a policy's selector and times, per change, everything from the
/// watch event to the kernel's maps switched to the new policy.
fn pod_change_to_kernel(options: &Options, mut index: IdentityIndex) -> anyhow::Result<()> {
    let state = PathBuf::from(format!(
        "/sys/fs/bpf/moat-bench-identity-{}",
        std::process::id()
    ));
    let outcome = (|| -> anyhow::Result<Vec<Duration>> {
        let mut datapath =
            Datapath::load(&state).context("loading Moat's programs (needs root)")?;
        let mut enforcer = Enforcer::adopt(&datapath)?;
        let policy = policy::parse(
            "identities:\n  db: { selector: { matchLabels: { app: db } } }\nrules:\n  - { name: no-db, action: deny, from: world, to: db }\n",
            std::path::Path::new("bench.yaml"),
            &|_| Err(std::io::Error::other("no files")),
        )?;
        let mut policies = Policies::default();
        policies.set_file("bench.yaml".to_owned(), Arc::new(policy));
        let (first, _) = policies.next(&index);
        if let Some(first) = first {
            enforcer.apply(&mut datapath, first.policy.clone())?;
            policies.enforced(first.policy);
        }
        let mut times = Vec::new();
        for change in 0..options.changes {
            // Into the selector, then out again.
            let n = 1 + (change / 2) * 7;
            let app = if change % 2 == 0 { "db" } else { "web" };
            let relabelled = pod(n, options.nodes, app);
            let started = Instant::now();
            index.apply_pod(relabelled, 1 + i64::from(change));
            index.refresh();
            let (next, _) = policies.next(&index);
            let next = next.context("a relabelled pod changes the policy")?;
            enforcer.apply(&mut datapath, next.policy.clone())?;
            policies.enforced(next.policy);
            times.push(started.elapsed());
        }
        Ok(times)
    })();
    let _ = agent::loader::cleanup(&state);
    let mut times = outcome?;
    times.sort_unstable();
    let median = times[times.len() / 2];
    let worst = times[times.len() - 1];
    println!(
        "  pod change to enforced kernel maps ({} changes, {} selected pods): median {:.1} ms, worst {:.1} ms (target: under 1 s including the watch)",
        times.len(),
        options.pods / 100,
        median.as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3
    );
    Ok(())
}
