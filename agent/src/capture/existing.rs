//! Connections that were open before capture started, found through /proc: each process's
//! socket descriptors, matched by inode against the TCP tables of every network namespace any
//! thread is in (a thread can enter another namespace, and the sockets it makes there are still
//! the process's descriptors). Read once at start-up; everything later is learned from the
//! kernel as it happens.

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
    /// The process's cgroup (v2) id, when a v2 hierarchy is mounted.
    pub cgroup_id: Option<u64>,
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

/// An established connection, and whether its local port listens in its namespace (then this
/// end accepted it).
struct Established {
    row: TcpRow,
    accepted: bool,
}

/// Reads the TCP tables of one namespace, through a task that is in it, into `established`.
fn read_namespace(task: &Path, established: &mut HashMap<u64, Established>) {
    let mut rows = Vec::new();
    for table in ["net/tcp", "net/tcp6"] {
        if let Ok(text) = fs::read_to_string(task.join(table)) {
            rows.extend(parse_tcp_table(&text));
        }
    }
    let listening: HashSet<u16> = rows
        .iter()
        .filter(|row| row.state == TCP_LISTEN)
        .map(|row| row.local.port())
        .collect();
    for row in rows.into_iter().filter(|row| row.state == TCP_ESTABLISHED) {
        let accepted = listening.contains(&row.local.port());
        established.insert(row.inode, Established { row, accepted });
    }
}

fn numbered_entries(directory: &Path) -> Vec<(u32, std::path::PathBuf)> {
    let Ok(entries) = fs::read_dir(directory) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let number = entry.file_name().to_str()?.parse().ok()?;
            Some((number, entry.path()))
        })
        .collect()
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

/// Named network namespaces (`ip netns add`) that no thread is in may still hold sockets that
/// some process has descriptors of: each is entered from a short-lived thread to read its tables.
fn read_named_namespaces(seen: &mut HashSet<u64>, established: &mut HashMap<u64, Established>) {
    use std::os::{fd::AsRawFd, unix::fs::MetadataExt};
    for entry in fs::read_dir("/run/netns").into_iter().flatten().flatten() {
        let Ok(handle) = fs::File::open(entry.path()) else {
            continue;
        };
        let Ok(metadata) = handle.metadata() else {
            continue;
        };
        if !seen.insert(metadata.ino()) {
            continue;
        }
        let mut found = HashMap::new();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                // SAFETY: setns on a descriptor we hold open; it changes only this thread, which
                // ends right after reading.
                if unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) } == 0 {
                    read_namespace(Path::new("/proc/thread-self"), &mut found);
                }
            });
        });
        established.extend(found);
    }
}

fn cgroup_of(process: &Path, mount: Option<&Path>) -> Option<u64> {
    let text = fs::read_to_string(process.join("cgroup")).ok()?;
    let path = text.lines().find_map(|line| line.strip_prefix("0::"))?;
    super::cgroup_id(mount?, path).ok()
}

/// Every established TCP connection held by a process other than `skip_tgid` (the agent).
/// Processes that vanish while being read are skipped.
pub fn scan(skip_tgid: u32) -> Vec<ExistingSocket> {
    use std::os::unix::fs::MetadataExt;
    let processes = numbered_entries(Path::new("/proc"));
    // Socket inodes are unique across namespaces, so one table serves every process.
    let mut namespaces = HashSet::new();
    let mut established = HashMap::new();
    for (_, process) in &processes {
        for (_, task) in numbered_entries(&process.join("task")) {
            let Ok(namespace) = fs::metadata(task.join("ns/net")) else {
                continue;
            };
            if namespaces.insert(namespace.ino()) {
                read_namespace(&task, &mut established);
            }
        }
    }
    read_named_namespaces(&mut namespaces, &mut established);
    let cgroup_mount = super::cgroup2_mount();
    let mut found = Vec::new();
    for (tgid, process) in processes {
        if tgid == skip_tgid {
            continue;
        }
        let comm = fs::read_to_string(process.join("comm"))
            .map(|comm| comm.trim_end().to_owned())
            .unwrap_or_default();
        let cgroup_id = cgroup_of(&process, cgroup_mount.as_deref());
        for (fd, link) in numbered_entries(&process.join("fd")) {
            let Some(connection) = socket_inode(&link).and_then(|inode| established.get(&inode))
            else {
                continue;
            };
            found.push(ExistingSocket {
                tgid,
                fd,
                comm: comm.clone(),
                cgroup_id,
                endpoints: Endpoints {
                    local: connection.row.local,
                    remote: connection.row.remote,
                    is_client: !connection.accepted,
                },
            });
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
