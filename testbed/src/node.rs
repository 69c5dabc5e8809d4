//! The node (a namespace holding a bridge) and its pods (namespaces joined to it by veth pairs).

use std::{
    collections::BTreeSet,
    fs::File,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd,
    path::Path,
    process::{Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use thiserror::Error;

use crate::{
    command::{self, CommandError, ip},
    process::{Background, spawn},
};

/// Prefix of every namespace a testbed creates; followed by the creating process's pid.
const NETNS_PREFIX: &str = "moattb";
const NETNS_DIR: &str = "/run/netns";
const BRIDGE: &str = "moat0";
/// The only ranges testbed addresses may come from (RFC 2544 benchmarking space, and a ULA /48).
const ALLOWED_IPV4: &str = "198.18.0.0/15";
const ALLOWED_IPV6: &str = "fd00:198:18::/48";

static NEXT_NODE: AtomicU32 = AtomicU32::new(0);

#[derive(Debug, Error)]
pub enum TestbedError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(
        "pod {pod:?}: address {address} is outside {allowed}; testbed addresses must stay in the ranges reserved for tests"
    )]
    AddressOutsideTestRange {
        pod: String,
        address: IpNetwork,
        allowed: &'static str,
    },
    #[error(
        "pod {pod:?}: address {address} is the subnet's gateway, which the node's bridge takes; pick another host address"
    )]
    AddressIsGateway { pod: String, address: IpNetwork },
    #[error("pod {pod:?}: {reason}")]
    BadPodName { pod: String, reason: &'static str },
    #[error("pod {pod:?} already exists on this node")]
    DuplicatePod { pod: String },
    #[error("entering network namespace {netns:?}: {source}")]
    EnterNetns {
        netns: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the testbed needs root to create network namespaces (run the tests as root, as CI does)"
    )]
    NotRoot,
}

/// What a pod is: a name and one address of each family, with the prefix length of its subnet.
#[derive(Clone, Debug)]
pub struct PodSpec {
    pub name: String,
    pub ipv4: Ipv4Network,
    pub ipv6: Ipv6Network,
}

impl PodSpec {
    /// `ipv4` and `ipv6` in CIDR notation, e.g. `"198.18.1.10/24"`, `"fd00:198:18:1::10/64"`.
    ///
    /// # Panics
    /// On malformed CIDR text: specs are written by tests, and a typo there is a test bug.
    pub fn new(name: &str, ipv4: &str, ipv6: &str) -> Self {
        Self {
            name: name.to_owned(),
            ipv4: ipv4
                .parse()
                .unwrap_or_else(|error| panic!("pod {name}: ipv4 {ipv4:?}: {error}")),
            ipv6: ipv6
                .parse()
                .unwrap_or_else(|error| panic!("pod {name}: ipv6 {ipv6:?}: {error}")),
        }
    }
}

/// A pod on a node: its own network namespace with `eth0`, whose peer sits on the node's bridge.
#[derive(Clone, Debug)]
pub struct Pod {
    pub name: String,
    pub netns: String,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    /// The node-side end of the pod's veth pair: where a node agent attaches.
    pub host_interface: String,
}

/// A node: a network namespace with a bridge that its pods hang off. Dropping it removes the node,
/// its pods, and every process running in them.
#[derive(Debug)]
pub struct Node {
    netns: String,
    pods: Vec<Pod>,
    /// Gateway addresses (CIDR) already on the bridge.
    gateways: BTreeSet<String>,
}

impl Node {
    /// Creates an empty node. `label` only makes namespace names easier to recognise in `ip netns`.
    pub fn new(label: &str) -> Result<Self, TestbedError> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(TestbedError::NotRoot);
        }
        remove_namespaces_of_dead_processes();
        let sequence = NEXT_NODE.fetch_add(1, Ordering::Relaxed);
        let label: String = label
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(12)
            .collect();
        let node = Self {
            netns: format!("{NETNS_PREFIX}-{}-{sequence}-{label}", std::process::id()),
            pods: Vec::new(),
            gateways: BTreeSet::new(),
        };
        // From here on, Drop cleans up whatever part of the node exists.
        ip(&["netns", "add", &node.netns])?;
        quiet_namespace(&node.netns)?;
        node.sysctl("net.ipv4.ip_forward", "1")?;
        node.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        ip(&["-n", &node.netns, "link", "set", "lo", "up"])?;
        ip(&["-n", &node.netns, "link", "add", BRIDGE, "type", "bridge"])?;
        ip(&["-n", &node.netns, "link", "set", BRIDGE, "up"])?;
        Ok(node)
    }

    /// Name of the node's network namespace (for `ip netns exec`).
    pub fn netns(&self) -> &str {
        &self.netns
    }

    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    /// Adds a pod; its default routes go through the bridge, which answers as the gateway of the
    /// pod's subnets, so pods in different subnets reach each other through the node.
    pub fn add_pod(&mut self, spec: PodSpec) -> Result<Pod, TestbedError> {
        self.validate(&spec)?;
        let index = self.pods.len();
        let pod = Pod {
            netns: format!("{}-{}", self.netns, spec.name),
            host_interface: host_interface_name(index, &spec.name),
            ipv4: spec.ipv4.ip(),
            ipv6: spec.ipv6.ip(),
            name: spec.name.clone(),
        };
        ip(&["netns", "add", &pod.netns])?;
        // Registered before it is complete, so Drop removes a half-built pod too.
        self.pods.push(pod.clone());
        quiet_namespace(&pod.netns)?;
        ip(&["-n", &pod.netns, "link", "set", "lo", "up"])?;
        ip(&[
            "-n",
            &self.netns,
            "link",
            "add",
            &pod.host_interface,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &pod.netns,
        ])?;
        ip(&[
            "-n",
            &self.netns,
            "link",
            "set",
            &pod.host_interface,
            "master",
            BRIDGE,
        ])?;
        ip(&["-n", &self.netns, "link", "set", &pod.host_interface, "up"])?;

        let ipv4 = spec.ipv4.to_string();
        let ipv6 = spec.ipv6.to_string();
        ip(&["-n", &pod.netns, "addr", "add", &ipv4, "dev", "eth0"])?;
        ip(&[
            "-n", &pod.netns, "addr", "add", &ipv6, "dev", "eth0", "nodad",
        ])?;
        ip(&["-n", &pod.netns, "link", "set", "eth0", "up"])?;

        let gateway4 = gateway_v4(spec.ipv4);
        let gateway6 = gateway_v6(spec.ipv6);
        let bridge_addresses = [
            (format!("{gateway4}/{}", spec.ipv4.prefix()), false),
            (format!("{gateway6}/{}", spec.ipv6.prefix()), true),
        ];
        for (cidr, is_ipv6) in bridge_addresses {
            if self.gateways.insert(cidr.clone()) {
                let mut args = vec!["-n", &self.netns, "addr", "add", &cidr, "dev", BRIDGE];
                if is_ipv6 {
                    args.push("nodad");
                }
                ip(&args)?;
            }
        }
        let via4 = gateway4.to_string();
        let via6 = gateway6.to_string();
        ip(&["-n", &pod.netns, "route", "add", "default", "via", &via4])?;
        ip(&[
            "-n", &pod.netns, "-6", "route", "add", "default", "via", &via6,
        ])?;
        Ok(pod)
    }

    /// Deletes a pod as Kubernetes would: its processes end and its veth pair disappears from
    /// the node.
    pub fn remove_pod(&mut self, name: &str) -> Result<(), TestbedError> {
        if let Some(position) = self.pods.iter().position(|pod| pod.name == name) {
            let pod = self.pods.remove(position);
            remove_namespace(&pod.netns)?;
        }
        Ok(())
    }

    fn validate(&self, spec: &PodSpec) -> Result<(), TestbedError> {
        let bad_name = |reason| TestbedError::BadPodName {
            pod: spec.name.clone(),
            reason,
        };
        if spec.name.is_empty()
            || !spec
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(bad_name("pod names are ASCII letters, digits and '-'"));
        }
        if spec.name.len() > 24 {
            return Err(bad_name(
                "pod names are at most 24 characters (namespace names carry them)",
            ));
        }
        if self.pods.iter().any(|pod| pod.name == spec.name) {
            return Err(TestbedError::DuplicatePod {
                pod: spec.name.clone(),
            });
        }
        check_in_test_range(&spec.name, IpNetwork::V4(spec.ipv4))?;
        check_in_test_range(&spec.name, IpNetwork::V6(spec.ipv6))?;
        if spec.ipv4.ip() == gateway_v4(spec.ipv4) {
            return Err(TestbedError::AddressIsGateway {
                pod: spec.name.clone(),
                address: IpNetwork::V4(spec.ipv4),
            });
        }
        if spec.ipv6.ip() == gateway_v6(spec.ipv6) {
            return Err(TestbedError::AddressIsGateway {
                pod: spec.name.clone(),
                address: IpNetwork::V6(spec.ipv6),
            });
        }
        Ok(())
    }

    /// A command that runs inside the node's namespace (where the agent runs).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        netns_command(&self.netns, program)
    }

    fn sysctl(&self, key: &str, value: &str) -> Result<(), TestbedError> {
        sysctl(&self.netns, key, value)
    }

    /// The body of an HTTP GET of `path` from what listens on 127.0.0.1:`port` inside the node
    /// (the agent's metrics endpoint, say).
    pub fn http_get(&self, port: u16, path: &str) -> Result<String, TestbedError> {
        let netns = self.netns.clone();
        let response = self.enter(|| -> std::io::Result<String> {
            use std::io::{Read as _, Write as _};
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
            write!(
                stream,
                "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            )?;
            let mut response = String::new();
            stream.read_to_string(&mut response)?;
            Ok(response)
        })?;
        let response = response.map_err(|source| TestbedError::EnterNetns { netns, source })?;
        Ok(response
            .split_once("\r\n\r\n")
            .map_or(response.as_str(), |(_, body)| body)
            .to_owned())
    }

    /// Runs `work` on a thread in the node's network namespace (to reach what listens there, or
    /// to attach programs to its interfaces from the test process).
    pub fn enter<T: Send>(&self, work: impl FnOnce() -> T + Send) -> Result<T, TestbedError> {
        enter_netns(&self.netns, work)
    }
}

/// Runs `work` on a thread in network namespace `netns` (a name under /run/netns). Sockets it
/// creates stay in that namespace wherever they are used later.
pub fn enter_netns<T: Send>(
    netns: &str,
    work: impl FnOnce() -> T + Send,
) -> Result<T, TestbedError> {
    let enter_error = |source| TestbedError::EnterNetns {
        netns: netns.to_owned(),
        source,
    };
    let handle = File::open(Path::new(NETNS_DIR).join(netns)).map_err(enter_error)?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: setns on a descriptor we hold open; it changes only this thread, which
                // exists just for `work` and ends with it.
                if unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(enter_error(std::io::Error::last_os_error()));
                }
                Ok(work())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

impl Pod {
    /// A command that runs inside the pod's namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        netns_command(&self.netns, program)
    }

    /// Runs a program in the pod to completion; a non-zero exit is an error carrying its stderr.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<Output, TestbedError> {
        Ok(command::run(self.command(program).args(args))?)
    }

    /// Starts a program in the pod (a server, a load generator) that is killed when the returned
    /// handle drops, and in any case when the node does.
    pub fn spawn(&self, program: &str, args: &[&str]) -> Result<Background, TestbedError> {
        spawn(self.command(program).args(args).stdin(Stdio::null()))
    }

    /// Runs `work` on a thread that has entered the pod's network namespace, so sockets it opens
    /// are the pod's. Other namespaces (mount, pid) stay the test's.
    pub fn enter<T: Send>(&self, work: impl FnOnce() -> T + Send) -> Result<T, TestbedError> {
        enter_netns(&self.netns, work)
    }

    pub fn addresses(&self) -> [IpAddr; 2] {
        [IpAddr::V4(self.ipv4), IpAddr::V6(self.ipv6)]
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let namespaces = self
            .pods
            .iter()
            .map(|pod| pod.netns.as_str())
            .chain(std::iter::once(self.netns.as_str()));
        for netns in namespaces {
            if let Err(error) = remove_namespace(netns) {
                eprintln!("testbed: removing namespace {netns}: {error}");
            }
        }
    }
}

/// Runs `program` in the network namespace only. Unlike `ip netns exec`, nsenter keeps the
/// mount namespace, so /sys/fs/bpf stays the host's bpffs: pins an agent makes there outlive it,
/// as on a real node.
fn netns_command(netns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new("nsenter");
    command
        .arg(format!("--net={NETNS_DIR}/{netns}"))
        .arg("--")
        .arg(program);
    command
}

fn sysctl(netns: &str, key: &str, value: &str) -> Result<(), TestbedError> {
    let setting = format!("{key}={value}");
    command::run(netns_command(netns, "sysctl").args(["-q", "-w", &setting]))?;
    Ok(())
}

/// Interfaces created in the namespace from now on skip IPv6 duplicate address detection and
/// router solicitation, so addresses work at once and tests see no traffic they did not cause
/// beyond neighbour discovery.
fn quiet_namespace(netns: &str) -> Result<(), TestbedError> {
    for (key, value) in [
        ("net.ipv6.conf.default.accept_dad", "0"),
        ("net.ipv6.conf.all.accept_dad", "0"),
        ("net.ipv6.conf.default.router_solicitations", "0"),
        ("net.ipv6.conf.default.accept_ra", "0"),
    ] {
        sysctl(netns, key, value)?;
    }
    Ok(())
}

/// Kills what runs in the namespace, then deletes it (which destroys its interfaces).
fn remove_namespace(netns: &str) -> Result<(), CommandError> {
    if !Path::new(NETNS_DIR).join(netns).exists() {
        return Ok(());
    }
    if let Ok(output) = ip(&["netns", "pids", netns]) {
        for pid in String::from_utf8_lossy(&output.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: kill(2) has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    ip(&["netns", "del", netns]).map(|_| ())
}

/// Namespaces whose creating process no longer exists were left by a test that was killed before
/// it could clean up (SIGKILL, a CI timeout); remove them so they do not pile up.
fn remove_namespaces_of_dead_processes() {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = creator_pid(&name) else {
            continue;
        };
        if !Path::new("/proc").join(pid.to_string()).exists()
            && let Err(error) = remove_namespace(&name)
        {
            eprintln!("testbed: removing stale namespace {name}: {error}");
        }
    }
}

/// The pid in a testbed namespace name (`moattb-<pid>-...`), or None for other namespaces.
fn creator_pid(netns: &str) -> Option<u32> {
    let rest = netns.strip_prefix(NETNS_PREFIX)?.strip_prefix('-')?;
    rest.split('-').next()?.parse().ok()
}

/// Linux interface names are at most 15 bytes; the index keeps truncated names unique.
fn host_interface_name(index: usize, pod: &str) -> String {
    let mut name = format!("v{index}-{pod}");
    name.truncate(15);
    name
}

fn gateway_v4(network: Ipv4Network) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(network.network()).wrapping_add(1))
}

fn gateway_v6(network: Ipv6Network) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(network.network()).wrapping_add(1))
}

fn check_in_test_range(pod: &str, address: IpNetwork) -> Result<(), TestbedError> {
    let allowed = if address.is_ipv4() {
        ALLOWED_IPV4
    } else {
        ALLOWED_IPV6
    };
    let range: IpNetwork = allowed.parse().expect("constant CIDR");
    if range.contains(address.network()) && range.contains(address.broadcast_or_last()) {
        Ok(())
    } else {
        Err(TestbedError::AddressOutsideTestRange {
            pod: pod.to_owned(),
            address,
            allowed,
        })
    }
}

trait LastAddress {
    fn broadcast_or_last(&self) -> IpAddr;
}

impl LastAddress for IpNetwork {
    fn broadcast_or_last(&self) -> IpAddr {
        match self {
            IpNetwork::V4(network) => IpAddr::V4(network.broadcast()),
            IpNetwork::V6(network) => {
                let host_bits = 128 - u32::from(network.prefix());
                let mask = if host_bits == 128 {
                    u128::MAX
                } else {
                    (1u128 << host_bits) - 1
                };
                IpAddr::V6(Ipv6Addr::from(u128::from(network.network()) | mask))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_fit_the_kernel_limit_and_stay_unique() {
        assert_eq!(host_interface_name(0, "web"), "v0-web");
        let long = host_interface_name(12, "a-very-long-pod-name");
        assert_eq!(long.len(), 15);
        assert!(long.starts_with("v12-"));
    }

    #[test]
    fn creator_pid_is_read_back_from_our_names_only() {
        assert_eq!(creator_pid("moattb-4242-0-xdp"), Some(4242));
        assert_eq!(creator_pid("moattb-4242-0-xdp-web"), Some(4242));
        assert_eq!(creator_pid("cni-1234"), None);
        assert_eq!(creator_pid("moattbx-1-0"), None);
    }

    #[test]
    fn addresses_outside_the_test_ranges_are_refused() {
        let inside = |cidr: &str| check_in_test_range("p", cidr.parse().unwrap()).is_ok();
        assert!(inside("198.18.0.2/24"));
        assert!(inside("198.19.255.1/24"));
        assert!(!inside("10.0.0.2/24"));
        assert!(!inside("198.18.0.2/14"), "a subnet reaching past the range");
        assert!(inside("fd00:198:18:1::10/64"));
        assert!(!inside("fd00:198:19::10/64"));
        assert!(!inside("fd00:198:18::10/32"));
    }

    #[test]
    fn gateways_are_the_first_host_of_the_subnet() {
        assert_eq!(
            gateway_v4("198.18.1.10/24".parse().unwrap()),
            Ipv4Addr::new(198, 18, 1, 1)
        );
        assert_eq!(
            gateway_v6("fd00:198:18:1::10/64".parse().unwrap()),
            "fd00:198:18:1::1".parse::<Ipv6Addr>().unwrap()
        );
    }
}
