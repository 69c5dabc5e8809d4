//! The kernel program reaches the reference semantics' verdict: random policies are compiled
//! and applied to the real maps, and random packets are run through the real XDP and TC entry
//! points with BPF_PROG_TEST_RUN. Plus timed blocks, which lapse in the kernel by themselves.

use std::{
    cell::RefCell,
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicU16, Ordering},
    },
    time::Duration,
};

use agent::{
    cli::XdpModeArg,
    enforcer::Enforcer,
    loader::{Datapath, Hook},
};
use moat_e2e::{StateDir, require_root, two_pods};
use policy::{
    Policy,
    evaluate::{Flow, Verdict, evaluate},
    strategies::{random_flow, random_policy},
};
use proptest::{prelude::*, test_runner::TestRunner};

/// Source ports count up from here, so that no packet's reverse ever matches a connection an
/// earlier packet created: destination ports are all below 10000.
static NEXT_SOURCE_PORT: AtomicU16 = AtomicU16::new(40000);

/// An Ethernet frame carrying `flow`'s first packet: a TCP SYN, a UDP datagram, an ICMP echo
/// request, or a bare header for other protocols.
fn frame(flow: &Flow) -> Vec<u8> {
    let source_port = NEXT_SOURCE_PORT.fetch_add(1, Ordering::Relaxed);
    let mut l4 = match flow.protocol {
        6 => {
            let mut tcp = vec![0u8; 20];
            tcp[0..2].copy_from_slice(&source_port.to_be_bytes());
            tcp[2..4].copy_from_slice(&flow.dst_port.unwrap_or(0).to_be_bytes());
            tcp[12] = 5 << 4;
            tcp[13] = 0x02;
            tcp
        }
        17 => {
            let mut udp = vec![0u8; 8];
            udp[0..2].copy_from_slice(&source_port.to_be_bytes());
            udp[2..4].copy_from_slice(&flow.dst_port.unwrap_or(0).to_be_bytes());
            udp[4..6].copy_from_slice(&8u16.to_be_bytes());
            udp
        }
        1 | 58 => {
            let mut icmp = vec![0u8; 8];
            icmp[0] = if flow.protocol == 1 { 8 } else { 128 };
            icmp[4..6].copy_from_slice(&source_port.to_be_bytes());
            icmp
        }
        _ => vec![0u8; 8],
    };
    let mut frame = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    match (flow.src, flow.dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            frame.extend_from_slice(&0x0800u16.to_be_bytes());
            let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, flow.protocol, 0, 0];
            ip[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
            ip.extend_from_slice(&src.octets());
            ip.extend_from_slice(&dst.octets());
            frame.extend_from_slice(&ip);
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            frame.extend_from_slice(&0x86ddu16.to_be_bytes());
            let mut ip = vec![0x60, 0, 0, 0, 0, 0, flow.protocol, 64];
            ip[4..6].copy_from_slice(&(l4.len() as u16).to_be_bytes());
            ip.extend_from_slice(&src.octets());
            ip.extend_from_slice(&dst.octets());
            frame.extend_from_slice(&ip);
        }
        _ => unreachable!("flows keep one family"),
    }
    frame.append(&mut l4);
    frame
}

#[test]
fn the_kernel_reaches_the_reference_verdict_on_random_policies_and_packets() {
    require_root();
    let state = StateDir::new();
    let datapath = Datapath::load(&state.path).expect("load the kernel object");
    let enforcer = Enforcer::adopt(&datapath).expect("adopt");
    // The runner wants an Fn; the cells let each case rewrite the maps.
    let (datapath, enforcer) = (RefCell::new(datapath), RefCell::new(enforcer));
    let mut runner = TestRunner::new(ProptestConfig::with_cases(150));
    let outcome = runner.run(
        &(
            random_policy(),
            proptest::collection::vec(random_flow(), 24),
        ),
        |(policy, flows)| {
            let policy = Arc::new(policy);
            let mut datapath = datapath.borrow_mut();
            enforcer
                .borrow_mut()
                .apply(&mut datapath, policy.clone())
                .expect("small policies fit");
            for flow in &flows {
                let expected = matches!(evaluate(&policy, flow), Verdict::Pass(_));
                // Both entry points, each on a packet of its own flow (a new source port), so
                // neither sees the other's packet as part of a tracked connection.
                for hook in [Hook::Xdp(XdpModeArg::Auto), Hook::Tcx] {
                    let passed = datapath.passes(hook, &frame(flow)).expect("test run");
                    prop_assert_eq!(
                        passed,
                        expected,
                        "{:?} on flow {:?} (reference: {:?})",
                        hook,
                        flow,
                        evaluate(&policy, flow)
                    );
                }
            }
            Ok(())
        },
    );
    drop(datapath);
    state.cleanup();
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}

#[test]
fn timed_blocks_drop_a_source_and_lapse_in_the_kernel_by_themselves() {
    require_root();
    let (node, client, server) = two_pods("timedblock");
    let state = StateDir::new();
    let reaches = |address: IpAddr| {
        client
            .run("ping", &["-c", "1", "-W", "1", &address.to_string()])
            .is_ok()
    };
    node.enter(|| {
        let mut datapath = Datapath::load(&state.path).expect("load");
        let mut enforcer = Enforcer::adopt(&datapath).expect("adopt");
        enforcer
            .apply(&mut datapath, Arc::new(Policy::allow_all()))
            .expect("apply");
        datapath
            .attach(&client.host_interface, Hook::Xdp(XdpModeArg::Auto))
            .expect("attach");
        assert!(reaches(IpAddr::V4(server.ipv4)));
        assert!(reaches(IpAddr::V6(server.ipv6)));

        let ttl = Duration::from_secs(2);
        enforcer
            .block(
                &mut datapath,
                "198.18.1.10/32".parse().unwrap(),
                ttl,
                "scanner",
            )
            .expect("block an address");
        enforcer
            .block(
                &mut datapath,
                "fd00:198:18:1::/64".parse().unwrap(),
                ttl,
                "scanner range",
            )
            .expect("block a prefix");
        assert!(
            enforcer
                .block(
                    &mut datapath,
                    "198.18.1.0/24".parse().unwrap(),
                    Duration::from_millis(10),
                    "x"
                )
                .is_err(),
            "a TTL under a second is refused"
        );
        assert!(!reaches(IpAddr::V4(server.ipv4)), "the address is blocked");
        assert!(!reaches(IpAddr::V6(server.ipv6)), "the prefix is blocked");
        assert_eq!(enforcer.timed_blocks().count(), 2);

        std::thread::sleep(ttl + Duration::from_millis(200));
        // Nothing in userspace has run since: the kernel lets the source through on its own.
        assert!(reaches(IpAddr::V4(server.ipv4)), "the block lapsed");
        assert!(reaches(IpAddr::V6(server.ipv6)));
        let lapsed = enforcer.expire_blocks(&mut datapath).expect("expire");
        assert_eq!(lapsed.len(), 2);
        assert_eq!(lapsed[0].reason, "scanner");
        assert_eq!(enforcer.timed_blocks().count(), 0);
    })
    .expect("enter the node");
    state.cleanup();
}
