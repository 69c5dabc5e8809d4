//! Real traffic between testbed pods: TCP servers and connects, UDP senders and counting
//! receivers.

use std::{
    collections::HashMap,
    io::{Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use testbed::Pod;

/// How long a connect may take before the SYN counts as dropped. Pods share one host, so a
/// connect that is allowed completes in well under a millisecond.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(800);

/// A TCP server in a pod that answers every connection with "ok\n"; stops when dropped.
pub struct TcpServer {
    pub address: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TcpServer {
    pub fn start(pod: &Pod, address: IpAddr, port: u16) -> Self {
        let listener = pod
            .enter(|| TcpListener::bind(SocketAddr::new(address, port)))
            .expect("enter pod")
            .unwrap_or_else(|error| panic!("listen on {address}:{port} in {}: {error}", pod.name));
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.write_all(b"ok\n");
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self {
            address: SocketAddr::new(address, port),
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Does a TCP connection from `pod` to `to` complete, and does the server's answer come back?
pub fn tcp_works(pod: &Pod, to: SocketAddr) -> bool {
    pod.enter(|| {
        let Ok(mut stream) = TcpStream::connect_timeout(&to, CONNECT_TIMEOUT) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(CONNECT_TIMEOUT));
        let mut answer = [0u8; 3];
        stream.read_exact(&mut answer).is_ok() && &answer == b"ok\n"
    })
    .expect("enter pod")
}

pub fn unspecified(like: IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// A UDP socket in a pod that counts the datagrams it receives, per source address.
pub struct UdpCounter {
    pub address: SocketAddr,
    counts: Arc<Mutex<HashMap<IpAddr, u64>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpCounter {
    pub fn start(pod: &Pod, address: IpAddr, port: u16) -> Self {
        let socket = pod
            .enter(|| UdpSocket::bind(SocketAddr::new(address, port)))
            .expect("enter pod")
            .expect("bind UDP counter");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        let address = socket.local_addr().expect("local address");
        let counts = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (counting, stopping) = (counts.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buffer = [0u8; 2048];
            while !stopping.load(Ordering::Relaxed) {
                if let Ok((_, from)) = socket.recv_from(&mut buffer) {
                    *counting
                        .lock()
                        .expect("counts")
                        .entry(from.ip())
                        .or_default() += 1;
                }
            }
        });
        Self {
            address,
            counts,
            stop,
            thread: Some(thread),
        }
    }

    pub fn from(&self, source: IpAddr) -> u64 {
        self.counts
            .lock()
            .expect("counts")
            .get(&source)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for UdpCounter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Sends `count` datagrams of `payload` bytes from `pod` to `to`, `interval` apart (zero: as
/// fast as the socket takes them). Returns how many were sent.
pub fn udp_send(pod: &Pod, to: SocketAddr, count: u64, payload: usize, interval: Duration) -> u64 {
    pod.enter(|| {
        let socket =
            UdpSocket::bind(SocketAddr::new(unspecified(to.ip()), 0)).expect("bind sender");
        let datagram = vec![0x4du8; payload];
        let start = Instant::now();
        let mut sent = 0;
        while sent < count {
            if socket.send_to(&datagram, to).is_ok() {
                sent += 1;
            }
            if !interval.is_zero() {
                let due = start + interval * (sent as u32);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        }
        sent
    })
    .expect("enter pod")
}

/// A sender that keeps sending until stopped, counting what it sent.
pub struct UdpStream {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl UdpStream {
    /// Sends one datagram every `interval` from `pod` to `to`, on a thread of its own.
    pub fn start(pod: &Pod, to: SocketAddr, interval: Duration) -> Self {
        let socket = pod
            .enter(|| UdpSocket::bind(SocketAddr::new(unspecified(to.ip()), 0)))
            .expect("enter pod")
            .expect("bind sender");
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (stopping, counting) = (stop.clone(), sent.clone());
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                if socket.send_to(b"moat", to).is_ok() {
                    counting.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(interval);
            }
        });
        Self {
            stop,
            sent,
            thread: Some(thread),
        }
    }

    /// Stops sending and returns how many datagrams were sent.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.sent.load(Ordering::Relaxed)
    }
}
