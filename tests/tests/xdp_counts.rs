//! The XDP counter on pod-facing interfaces reports exactly the traffic two pods exchanged:
//! compared with what the test sent, and with tcpdump's capture of the same interface.

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    path::Path,
    time::Duration,
};

use moat_e2e::{
    RunningAgent, StateDir,
    pcap::PacketCapture,
    require_root, source_totals,
    traffic::{UdpCounter, udp_send},
    two_pods,
};
use testbed::Pod;

const ETHERNET: u64 = 14;
const IPV4: u64 = 20;
const IPV6: u64 = 40;
const UDP: u64 = 8;
const ICMP_ECHO: u64 = 8;

/// One echo each way resolves neighbours on every hop, so the counted traffic that follows is
/// never held back (or dropped) by ARP or neighbour discovery.
fn resolve_neighbours(client: &Pod, server: &Pod) {
    for address in server.addresses() {
        client
            .run("ping", &["-c", "1", "-W", "2", &address.to_string()])
            .expect("ping server from client");
    }
}

/// Sends `count` datagrams of `payload` bytes from `from` to a socket bound in `to`, and returns
/// how many arrived. The receiver reads while the sender sends, so no datagram is lost to a full
/// socket buffer: every one that crosses the wire arrives.
fn udp_exchange(from: &Pod, to: &Pod, to_address: IpAddr, count: usize, payload: usize) -> usize {
    let counter = UdpCounter::start(to, to_address, 0);
    let source = match to_address {
        IpAddr::V4(_) => IpAddr::V4(from.ipv4),
        IpAddr::V6(_) => IpAddr::V6(from.ipv6),
    };
    udp_send(from, counter.address, count as u64, payload, Duration::ZERO);
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while counter.from(source) < count as u64 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    counter.from(source) as usize
}

#[test]
fn counts_equal_the_packets_and_bytes_pods_sent() {
    require_root();
    let (node, client, server) = two_pods("xdpcounts");
    let state = StateDir::new();
    let mut agent = RunningAgent::start(
        &node,
        &state,
        &[&client.host_interface, &server.host_interface],
        &["--hook", "xdp"],
    );
    resolve_neighbours(&client, &server);

    const UDP_V4_DATAGRAMS: usize = 200;
    const UDP_V6_DATAGRAMS: usize = 150;
    const PAYLOAD: usize = 100;
    const PINGS: u64 = 10;
    assert_eq!(
        udp_exchange(
            &client,
            &server,
            IpAddr::V6(server.ipv6),
            UDP_V6_DATAGRAMS,
            PAYLOAD
        ),
        UDP_V6_DATAGRAMS
    );
    assert_eq!(
        udp_exchange(
            &client,
            &server,
            IpAddr::V4(server.ipv4),
            UDP_V4_DATAGRAMS,
            PAYLOAD
        ),
        UDP_V4_DATAGRAMS
    );
    server
        .run(
            "ping",
            &[
                "-c",
                &PINGS.to_string(),
                "-i",
                "0.02",
                "-s",
                "56",
                &client.ipv4.to_string(),
            ],
        )
        .expect("ping client from server");

    // Wait for a report that includes the last traffic, then stop for the final totals.
    let server_v4 = server.ipv4.to_string();
    let server_interface = server.host_interface.clone();
    agent.wait_for(Duration::from_secs(10), |record| {
        record["kind"] == "traffic.source"
            && record["interface"] == server_interface.as_str()
            && record["source"] == server_v4.as_str()
            && record["protocol"] == "icmp"
            && record["packets"] == PINGS + 1
    });
    let records = agent.stop();

    let client_v4 = client.ipv4.to_string();
    let client_v6 = client.ipv6.to_string();
    let udp_v4 = UDP_V4_DATAGRAMS as u64;
    let udp_v6 = UDP_V6_DATAGRAMS as u64;
    let payload = PAYLOAD as u64;
    // (interface, source, protocol, frames, bytes per frame); the server's ICMP is its echo
    // requests plus its one reply to the client's neighbour-resolving ping.
    let expectations = [
        (
            &client.host_interface,
            &client_v4,
            "udp",
            udp_v4,
            ETHERNET + IPV4 + UDP + payload,
        ),
        (
            &client.host_interface,
            &client_v6,
            "udp",
            udp_v6,
            ETHERNET + IPV6 + UDP + payload,
        ),
        (
            &server.host_interface,
            &server_v4,
            "icmp",
            PINGS + 1,
            ETHERNET + IPV4 + ICMP_ECHO + 56,
        ),
    ];
    for (interface, source, protocol, frames, frame_len) in expectations {
        assert_eq!(
            source_totals(&records, interface, source, protocol),
            Some((frames, frames * frame_len)),
            "{protocol} from {source} on {interface}"
        );
    }
    // XDP sees a veth's ingress only: what the node forwards to the server is not counted again
    // on the server's interface.
    assert_eq!(
        source_totals(&records, &server.host_interface, &client_v4, "udp"),
        None
    );

    let stats = records
        .iter()
        .rfind(|record| record["kind"] == "agent.datapath_stats")
        .expect("a final agent.datapath_stats record");
    assert_eq!(stats["truncated"], 0, "{stats}");
    assert_eq!(stats["untracked_source_table_full"], 0, "{stats}");
    // Every frame is either attributed to a source or counted as unattributed.
    let attributed: u64 = latest_source_records(&records)
        .iter()
        .map(|record| record["packets"].as_u64().expect("packets"))
        .sum();
    let unattributed = ["non_ip", "truncated", "untracked_source_table_full"]
        .iter()
        .map(|field| stats[field].as_u64().expect("a number"))
        .sum::<u64>();
    assert_eq!(
        stats["frames"].as_u64(),
        Some(attributed + unattributed),
        "{stats}"
    );
}

/// The last `traffic.source` record of each (interface, source, protocol).
fn latest_source_records(records: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    let mut latest = std::collections::HashMap::new();
    for record in records
        .iter()
        .filter(|record| record["kind"] == "traffic.source")
    {
        let key = (
            record["interface"].to_string(),
            record["source"].to_string(),
            record["protocol"].to_string(),
        );
        latest.insert(key, record);
    }
    latest.into_values().collect()
}

/// What tcpdump saw on an interface: packets and frame bytes.
fn tcpdump_totals(capture: &Path) -> (u64, u64) {
    let output = std::process::Command::new("tcpdump")
        .args(["-r"])
        .arg(capture)
        .args(["-nn", "-e"])
        .output()
        .expect("run tcpdump -r");
    assert!(
        output.status.success(),
        "tcpdump -r: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("tcpdump prints text");
    text.lines().fold((0, 0), |(packets, bytes), line| {
        // "... ethertype IPv6 (0x86dd), length 94: ..." : the first length is the frame's.
        let length = line
            .split(", length ")
            .nth(1)
            .and_then(|rest| rest.split(':').next())
            .and_then(|number| number.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no frame length in tcpdump line: {line}"));
        (packets + 1, bytes + length)
    })
}

#[test]
fn tcp_counts_match_a_tcpdump_capture_of_the_same_interface() {
    require_root();
    let (node, client, server) = two_pods("xdptcp");
    let state = StateDir::new();
    let agent = RunningAgent::start(&node, &state, &[&client.host_interface], &["--hook", "xdp"]);
    resolve_neighbours(&client, &server);

    let directory = std::env::temp_dir().join(format!("moat-xdptcp-{}", std::process::id()));
    std::fs::create_dir_all(&directory).expect("capture directory");
    let capture = directory.join("client.pcap");
    let filter = format!("ip6 and tcp and src host {}", client.ipv6);
    let tcpdump = PacketCapture::start(
        node.command("tcpdump"),
        &client.host_interface,
        &capture,
        &filter,
    );

    let listener = server
        .enter(|| TcpListener::bind(SocketAddr::new(IpAddr::V6(server.ipv6), 0)))
        .expect("enter server netns")
        .expect("listen");
    let address = listener.local_addr().expect("listener address");
    let receiver = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut received = Vec::new();
        stream.read_to_end(&mut received).expect("read");
        received.len()
    });
    let body = vec![0xa5u8; 1 << 20];
    let mut stream = client
        .enter(|| TcpStream::connect(address))
        .expect("enter client netns")
        .expect("connect");
    stream.write_all(&body).expect("send 1 MiB");
    drop(stream);
    assert_eq!(receiver.join().expect("receiver thread"), body.len());

    // Let the last ACKs and FINs cross before both observers stop.
    std::thread::sleep(Duration::from_millis(700));
    let capture = tcpdump.stop();
    let expected = tcpdump_totals(&capture);
    let _ = std::fs::remove_dir_all(&directory);
    assert!(
        expected.0 > 20,
        "a 1 MiB transfer takes more than 20 packets: {expected:?}"
    );

    let records = agent.stop();
    let client_v6 = client.ipv6.to_string();
    assert_eq!(
        source_totals(&records, &client.host_interface, &client_v6, "tcp"),
        Some(expected),
        "agent's (packets, bytes) for TCP from the client vs tcpdump's"
    );
}
