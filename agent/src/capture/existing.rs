//! Connections that were open before capture started, found through /proc: each process's
//! socket descriptors, matched by inode against the TCP tables of the process's own network
//! namespace. Read once at start-up; everything later is learned from the kernel as it happens.

use std::{
    collections::{HashMap, HashSet},
    fs,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::Path,
};

use super::event::Endpoints;

/// An established TCP connection some process holds a descriptor of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingSocket {
    pub tgid: u32,
    pub fd: u32,
    pub comm: String,
    pub endpoints: Endpoints,
}

const TCP_ESTABLISHED: u8 = 1;
const TCP_LISTEN: u8 = 10;

/// One row of /proc/net/tcp or tcp6.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpRow {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: u8,
    pub inode: u64,
}

fn parse_address(text: &str) -> Option<SocketAddr> {
    let (address, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    // The kernel prints each 32-bit word of the address in host (little-endian) byte order.
    let words: Option<Vec<u32>> = (0..address.len() / 8)
        .map(|index| u32::from_str_radix(address.get(index * 8..index * 8 + 8)?, 16).ok())
        .collect();
    let bytes: Vec<u8> = words?.iter().flat_map(|word| word.to_le_bytes()).collect();
    let ip = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
        16 => {
            let v6 = Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?);
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Rows of a /proc/net/tcp{,6} table; lines that do not parse are skipped.
pub fn parse_tcp_table(text: &str) -> Vec<TcpRow> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            Some(TcpRow {
                local: parse_address(fields.get(1)?)?,
                remote: parse_address(fields.get(2)?)?,
                state: u8::from_str_radix(fields.get(3)?, 16).ok()?,
                inode: fields.get(9)?.parse().ok()?,
            })
        })
        .collect()
}

/// Established connections by inode, and listening ports, of one network namespace.
struct Namespace {
    established: HashMap<u64, TcpRow>,
    listening: HashSet<u16>,
}

fn read_namespace(proc_pid: &Path) -> Namespace {
    let mut rows = Vec::new();
    for table in ["net/tcp", "net/tcp6"] {
        if let Ok(text) = fs::read_to_string(proc_pid.join(table)) {
            rows.extend(parse_tcp_table(&text));
        }
    }
    Namespace {
        listening: rows
            .iter()
            .filter(|row| row.state == TCP_LISTEN)
            .map(|row| row.local.port())
            .collect(),
        established: rows
            .into_iter()
            .filter(|row| row.state == TCP_ESTABLISHED)
            .map(|row| (row.inode, row))
            .collect(),
    }
}

fn socket_inode(link: &Path) -> Option<u64> {
    let target = fs::read_link(link).ok()?;
    let target = target.to_str()?;
    target
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Every established TCP connection held by a process other than `skip_tgid` (the agent).
/// Processes that vanish while being read are skipped.
pub fn scan(skip_tgid: u32) -> Vec<ExistingSocket> {
    let mut namespaces: HashMap<String, Namespace> = HashMap::new();
    let mut found = Vec::new();
    let Ok(processes) = fs::read_dir("/proc") else {
        return found;
    };
    for entry in processes.flatten() {
        let Some(tgid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        if tgid == skip_tgid {
            continue;
        }
        let proc_pid = entry.path();
        let Ok(descriptors) = fs::read_dir(proc_pid.join("fd")) else {
            continue;
        };
        let sockets: Vec<(u32, u64)> = descriptors
            .flatten()
            .filter_map(|fd| {
                let number = fd.file_name().to_str()?.parse().ok()?;
                Some((number, socket_inode(&fd.path())?))
            })
            .collect();
        if sockets.is_empty() {
            continue;
        }
        let Ok(namespace_id) = fs::read_link(proc_pid.join("ns/net")) else {
            continue;
        };
        let namespace = namespaces
            .entry(namespace_id.to_string_lossy().into_owned())
            .or_insert_with(|| read_namespace(&proc_pid));
        let comm = fs::read_to_string(proc_pid.join("comm"))
            .map(|comm| comm.trim_end().to_owned())
            .unwrap_or_default();
        for (fd, inode) in sockets {
            if let Some(row) = namespace.established.get(&inode) {
                found.push(ExistingSocket {
                    tgid,
                    fd,
                    comm: comm.clone(),
                    endpoints: Endpoints {
                        local: row.local,
                        remote: row.remote,
                        // The end whose port is a listening port accepted the connection.
                        is_client: !namespace.listening.contains(&row.local.port()),
                    },
                });
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kernels_tcp_tables() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
            0: 0A0012C6:1F90 0B0012C6:C350 01 00000000:00000000 00:00000000 00000000     0        0 123456 1 0000000000000000 20 4 30 10 -1\n   \
            1: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 99 1\n";
        let rows = parse_tcp_table(v4);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].local, "198.18.0.10:8080".parse().unwrap());
        assert_eq!(rows[0].remote, "198.18.0.11:50000".parse().unwrap());
        assert_eq!((rows[0].state, rows[0].inode), (TCP_ESTABLISHED, 123456));
        assert_eq!(rows[1].state, TCP_LISTEN);

        let v6 = "  sl  local_address                         remote_address                        st\n   \
            0: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000100007F:D431 01 00000000:00000000 00:00000000 00000000 0 0 777 1\n   \
            1: 980100FD000018000000000010000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 778 1\n";
        let rows = parse_tcp_table(v6);
        assert_eq!(
            rows[0].local,
            "127.0.0.1:8080".parse().unwrap(),
            "IPv4-mapped becomes IPv4"
        );
        assert_eq!(rows[1].local, "[fd00:198:18::10]:80".parse().unwrap());
    }

    #[test]
    fn garbage_lines_are_skipped() {
        assert!(parse_tcp_table("header\nnonsense\n 0: zz:zz yy:yy 01 x x x x x 1\n").is_empty());
    }

    #[test]
    fn finds_a_connection_this_process_holds() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let found = scan(0);
        let me = std::process::id();
        let ours: Vec<_> = found.iter().filter(|socket| socket.tgid == me).collect();
        let client_end = ours
            .iter()
            .find(|socket| socket.endpoints.local == client.local_addr().unwrap())
            .expect("the client end");
        assert!(client_end.endpoints.is_client);
        assert!(ours.iter().any(|socket| !socket.endpoints.is_client
            && socket.endpoints.remote == client.local_addr().unwrap()));
    }
}
