//! A stand-in for kube-apiserver, for the agent's Kubernetes tests: plain HTTP on 127.0.0.1,
//! speaking the real list and watch protocol (resourceVersion, watch events as JSON lines,
//! bookmarks, `410 Gone` for a compacted version, field selectors) over real Kubernetes JSON.
//! The agent is a real kube-rs client of it; nothing inside the agent is mocked.
//!
//! Tests change objects (`apply`, `delete`) and misbehave on purpose (`restart`, `compact`,
//! `break_watches`), and read what the agent asked (`requests`) and posted (`events`).

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    path::Path,
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

/// (path segment after the version, kind, apiVersion, namespaced).
type Resource = (&'static str, &'static str, &'static str, bool);

const RESOURCES: [Resource; 7] = [
    ("pods", "Pod", "v1", true),
    ("services", "Service", "v1", true),
    ("configmaps", "ConfigMap", "v1", true),
    ("nodes", "Node", "v1", false),
    ("namespaces", "Namespace", "v1", false),
    (
        "endpointslices",
        "EndpointSlice",
        "discovery.k8s.io/v1",
        true,
    ),
    ("moatpolicies", "MoatPolicy", "moat.dev/v1alpha1", true),
];

fn resource_of_kind(kind: &str) -> &'static Resource {
    RESOURCES
        .iter()
        .find(|(_, candidate, ..)| *candidate == kind)
        .unwrap_or_else(|| panic!("the fake API server does not serve kind {kind}"))
}

/// One request the server answered.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
}

impl Request {
    pub fn is_watch(&self) -> bool {
        matches!(
            self.query.get("watch").map(String::as_str),
            Some("true" | "1")
        )
    }
}

struct Change {
    version: u64,
    resource: &'static str,
    kind: &'static str,
    object: Value,
}

#[derive(Default)]
struct State {
    version: u64,
    /// Watches asking for a version before this get 410 Gone.
    compacted: u64,
    objects: BTreeMap<(&'static str, String, String), Value>,
    history: Vec<Change>,
    requests: Vec<Request>,
    events: Vec<Value>,
    /// Bumped to make every open watch end abruptly.
    generation: u64,
    /// Bumped to make every open watch end with 410 Gone.
    expiry: u64,
    /// How long every answer waits before it starts (a slow or overloaded API server).
    delay: Duration,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stopping: AtomicBool,
    /// False while the server is "down": connections are refused.
    up: AtomicBool,
}

/// Binds the server's listening socket: in the test's own network namespace, or in a testbed
/// node's, where the agent under test runs.
pub type Binder = Arc<dyn Fn(SocketAddr) -> std::io::Result<TcpListener> + Send + Sync>;

pub struct FakeApiServer {
    shared: Arc<Shared>,
    address: SocketAddr,
    bind: Binder,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl FakeApiServer {
    /// Listens on 127.0.0.1 of the network namespace `bind` creates sockets in.
    pub fn start_with(bind: Binder) -> Self {
        let listener =
            bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind the fake API server");
        let address = listener.local_addr().expect("its address");
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                version: 1000,
                ..State::default()
            }),
            changed: Condvar::new(),
            stopping: AtomicBool::new(false),
            up: AtomicBool::new(true),
        });
        let acceptor = Some(spawn_acceptor(listener, shared.clone()));
        Self {
            shared,
            address,
            bind,
            acceptor,
        }
    }

    /// Listens on 127.0.0.1 of a testbed node, where the agent runs.
    pub fn start_in(netns: &str) -> Self {
        let netns = netns.to_owned();
        Self::start_with(Arc::new(move |address| {
            testbed::enter_netns(&netns, || TcpListener::bind(address))
                .map_err(std::io::Error::other)?
        }))
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A kubeconfig for this server (no credentials: it is plain HTTP on loopback).
    pub fn write_kubeconfig(&self, path: &Path) {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: nobody\nusers:\n- name: nobody\n  user: {{}}\ncurrent-context: fake\n",
            self.url()
        );
        std::fs::write(path, text).expect("write the kubeconfig");
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Creates or replaces an object (by kind, namespace and name), as `kubectl apply` would:
    /// a new resourceVersion, a uid and creationTimestamp if it has none, and an ADDED or
    /// MODIFIED event to the watches.
    pub fn apply(&self, mut object: Value) {
        let kind = object["kind"]
            .as_str()
            .expect("object has a kind")
            .to_owned();
        let &(resource, _, api_version, namespaced) = resource_of_kind(&kind);
        let namespace = if namespaced {
            object["metadata"]["namespace"]
                .as_str()
                .expect("a namespaced object has metadata.namespace")
                .to_owned()
        } else {
            String::new()
        };
        let name = object["metadata"]["name"]
            .as_str()
            .expect("object has metadata.name")
            .to_owned();
        let mut state = self.state();
        state.version += 1;
        let version = state.version;
        let key = (resource, namespace, name);
        let existing = state.objects.get(&key).cloned();
        let metadata = object["metadata"]
            .as_object_mut()
            .expect("metadata is an object");
        metadata.insert("resourceVersion".into(), json!(version.to_string()));
        if !metadata.contains_key("uid") {
            let uid = existing
                .as_ref()
                .and_then(|existing| existing["metadata"]["uid"].as_str().map(str::to_owned))
                .unwrap_or_else(|| uuid(version));
            metadata.insert("uid".into(), json!(uid));
        }
        if !metadata.contains_key("creationTimestamp") {
            metadata.insert("creationTimestamp".into(), json!("2026-01-01T00:00:00Z"));
        }
        object["apiVersion"] = json!(api_version);
        state.objects.insert(key, object.clone());
        state.history.push(Change {
            version,
            resource,
            kind: if existing.is_some() {
                "MODIFIED"
            } else {
                "ADDED"
            },
            object,
        });
        drop(state);
        self.shared.changed.notify_all();
    }

    /// Deletes an object; the watches get DELETED with its last state.
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) {
        let &(resource, ..) = resource_of_kind(kind);
        let mut state = self.state();
        let Some(mut object) =
            state
                .objects
                .remove(&(resource, namespace.to_owned(), name.to_owned()))
        else {
            panic!("no {kind} {namespace}/{name} to delete");
        };
        state.version += 1;
        let version = state.version;
        object["metadata"]["resourceVersion"] = json!(version.to_string());
        state.history.push(Change {
            version,
            resource,
            kind: "DELETED",
            object,
        });
        drop(state);
        self.shared.changed.notify_all();
    }

    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let &(resource, ..) = resource_of_kind(kind);
        self.state()
            .objects
            .get(&(resource, namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Forgets the history: a watch from an older resourceVersion now gets 410 Gone, and so must
    /// relist. Open watches carry on (etcd compaction does not end them); see
    /// [`FakeApiServer::expire_watches`].
    pub fn compact(&self) {
        let mut state = self.state();
        state.compacted = state.version;
        state.history.clear();
    }

    /// Ends every open watch with `410 Gone`, as the API server does when its watch cache can
    /// no longer serve them.
    pub fn expire_watches(&self) {
        self.state().expiry += 1;
        self.shared.changed.notify_all();
    }

    /// Ends every open watch abruptly, without a final chunk (a dropped connection).
    pub fn break_watches(&self) {
        self.state().generation += 1;
        self.shared.changed.notify_all();
    }

    /// Goes away for `down` (every connection closed, new ones refused), then comes back on the
    /// same address with the same objects.
    pub fn restart(&mut self, down: Duration) {
        self.shared.up.store(false, Ordering::SeqCst);
        self.break_watches();
        self.shared.stopping.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        thread::sleep(down);
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match (self.bind)(self.address) {
                Ok(listener) => break listener,
                Err(error) if Instant::now() < deadline => {
                    let _ = error;
                    thread::sleep(Duration::from_millis(50));
                }
                Err(error) => panic!("rebind {}: {error}", self.address),
            }
        };
        self.shared.stopping.store(false, Ordering::SeqCst);
        self.shared.up.store(true, Ordering::SeqCst);
        self.acceptor = Some(spawn_acceptor(listener, self.shared.clone()));
    }

    /// Makes every answer (list, watch, event) start only after `delay`.
    pub fn set_delay(&self, delay: Duration) {
        self.state().delay = delay;
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state().requests.clone()
    }

    /// Events (events.k8s.io/v1) the agent posted.
    pub fn events(&self) -> Vec<Value> {
        self.state().events.clone()
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.shared.up.store(false, Ordering::SeqCst);
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.break_watches();
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// A uid in the form Kubernetes gives them.
fn uuid(seed: u64) -> String {
    let mixed = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5DEE_CE66_D1CE_4E5B;
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        mixed >> 32,
        (mixed >> 16) & 0xffff,
        mixed & 0xfff,
        (seed >> 4) & 0xfff,
        seed & 0xffff_ffff_ffff
    )
}

fn spawn_acceptor(listener: TcpListener, shared: Arc<Shared>) -> thread::JoinHandle<()> {
    listener
        .set_nonblocking(true)
        .expect("a non-blocking listener");
    thread::spawn(move || {
        while !shared.stopping.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((stream, _)) => {
                    let shared = shared.clone();
                    thread::spawn(move || serve_connection(stream, &shared));
                }
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    thread::sleep(Duration::from_millis(10));
                }
                Err(_) => thread::sleep(Duration::from_millis(10)),
            }
        }
    })
}

/// Serves requests on one connection (kube keeps connections alive) until it closes, or a watch
/// takes it over.
fn serve_connection(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_nonblocking(false);
    let Ok(reader_stream) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(reader_stream);
    let mut stream = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut content_length = 0;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                content_length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; content_length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if !shared.up.load(Ordering::SeqCst) {
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("").to_owned();
        let target = parts.next().unwrap_or("/");
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let query: BTreeMap<String, String> = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (decode(key), decode(value))
            })
            .collect();
        let request = Request {
            method,
            path: path.to_owned(),
            query,
        };
        let delay = {
            let mut state = lock(shared);
            state.requests.push(request.clone());
            state.delay
        };
        thread::sleep(delay);
        if request.is_watch() {
            watch(stream, shared, &request);
            return;
        }
        let (status, body) = respond(shared, &request, &body);
        let text = body.to_string();
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            text.len()
        );
        if stream.write_all(head.as_bytes()).is_err() || stream.write_all(text.as_bytes()).is_err()
        {
            return;
        }
    }
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, State> {
    shared
        .state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(byte) => {
                        out.push(byte);
                        index += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// (resource, namespace filter) of a collection path, or None.
fn collection(path: &str) -> Option<(&'static Resource, Option<String>)> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (namespace, resource) = match parts.as_slice() {
        ["api", "v1", resource] => (None, *resource),
        ["api", "v1", "namespaces", namespace, resource] => {
            (Some((*namespace).to_owned()), *resource)
        }
        ["apis", _, _, resource] => (None, *resource),
        ["apis", _, _, "namespaces", namespace, resource] => {
            (Some((*namespace).to_owned()), *resource)
        }
        _ => return None,
    };
    let found = RESOURCES
        .iter()
        .find(|(candidate, ..)| *candidate == resource)?;
    Some((found, namespace))
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

/// Whether `object` passes the request's field selector (`spec.nodeName=x`, `metadata.name=x`,
/// `metadata.namespace=x`, comma-separated); Err for a field the real server would refuse.
fn selected(object: &Value, selector: Option<&String>) -> Result<bool, String> {
    let Some(selector) = selector.filter(|selector| !selector.is_empty()) else {
        return Ok(true);
    };
    for term in selector.split(',') {
        let (field, wanted, equal) = if let Some((field, value)) = term.split_once("!=") {
            (field, value, false)
        } else if let Some((field, value)) = term.split_once("==") {
            (field, value, true)
        } else if let Some((field, value)) = term.split_once('=') {
            (field, value, true)
        } else {
            return Err(format!("invalid selector: {term}"));
        };
        let actual = match field {
            "spec.nodeName" => object["spec"]["nodeName"].as_str(),
            "metadata.name" => object["metadata"]["name"].as_str(),
            "metadata.namespace" => object["metadata"]["namespace"].as_str(),
            other => return Err(format!("field label not supported: {other}")),
        }
        .unwrap_or("");
        if (actual == wanted) != equal {
            return Ok(false);
        }
    }
    Ok(true)
}

fn respond(shared: &Shared, request: &Request, body: &[u8]) -> (String, Value) {
    if request.path == "/version" {
        return (
            "200 OK".into(),
            json!({"major": "1", "minor": "34", "gitVersion": "v1.34.0", "platform": "linux/amd64"}),
        );
    }
    if request.method == "POST" && request.path.ends_with("/events") {
        let mut event: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let mut state = lock(shared);
        state.version += 1;
        event["metadata"]["resourceVersion"] = json!(state.version.to_string());
        state.events.push(event.clone());
        return ("201 Created".into(), event);
    }
    if request.method == "PATCH" && request.path.contains("/events/") {
        return (
            "404 Not Found".into(),
            status(404, "NotFound", "events are only created here"),
        );
    }
    let Some((&(resource, kind, api_version, _), namespace)) = collection(&request.path) else {
        return (
            "404 Not Found".into(),
            status(
                404,
                "NotFound",
                &format!(
                    "the server could not find the requested resource ({})",
                    request.path
                ),
            ),
        );
    };
    let state = lock(shared);
    let mut items = Vec::new();
    for ((candidate, object_namespace, _), object) in &state.objects {
        if *candidate != resource
            || namespace
                .as_ref()
                .is_some_and(|wanted| wanted != object_namespace)
        {
            continue;
        }
        match selected(object, request.query.get("fieldSelector")) {
            Ok(true) => {
                // Items of a typed list carry no kind or apiVersion.
                let mut item = object.clone();
                if let Some(fields) = item.as_object_mut() {
                    fields.remove("kind");
                    fields.remove("apiVersion");
                }
                items.push(item);
            }
            Ok(false) => {}
            Err(message) => {
                return (
                    "400 Bad Request".into(),
                    status(400, "BadRequest", &message),
                );
            }
        }
    }
    (
        "200 OK".into(),
        json!({"kind": format!("{kind}List"), "apiVersion": api_version,
               "metadata": {"resourceVersion": state.version.to_string()}, "items": items}),
    )
}

/// Streams watch events until the watch times out, is broken or expired, or the server stops.
fn watch(mut stream: TcpStream, shared: &Shared, request: &Request) {
    let Some((&(resource, kind, api_version, _), namespace)) = collection(&request.path) else {
        let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        return;
    };
    let bookmarks = request
        .query
        .get("allowWatchBookmarks")
        .is_some_and(|value| value == "true");
    let timeout = request
        .query
        .get("timeoutSeconds")
        .and_then(|seconds| seconds.parse().ok())
        .map_or(Duration::from_secs(300), Duration::from_secs);
    let started = Instant::now();
    if stream
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        .is_err()
    {
        return;
    }
    let send = |stream: &mut TcpStream, event: &Value| -> bool {
        let mut line = event.to_string();
        line.push('\n');
        stream
            .write_all(format!("{:x}\r\n{line}\r\n", line.len()).as_bytes())
            .and_then(|()| stream.flush())
            .is_ok()
    };
    let end = |stream: &mut TcpStream| {
        let _ = stream.write_all(b"0\r\n\r\n");
    };
    let requested: u64 = request
        .query
        .get("resourceVersion")
        .and_then(|version| version.parse().ok())
        .unwrap_or(0);
    let mut state = lock(shared);
    let generation = state.generation;
    let expiry = state.expiry;
    if requested != 0 && requested < state.compacted {
        let gone = status(
            410,
            "Expired",
            &format!(
                "too old resource version: {requested} ({})",
                state.compacted
            ),
        );
        drop(state);
        send(&mut stream, &json!({"type": "ERROR", "object": gone}));
        end(&mut stream);
        return;
    }
    let mut sent_up_to = if requested == 0 {
        state.version
    } else {
        requested
    };
    if requested == 0 {
        // A watch from "now or any": the current objects first, as ADDED.
        let current: Vec<Value> = state
            .objects
            .iter()
            .filter(|((candidate, object_namespace, _), object)| {
                *candidate == resource
                    && namespace
                        .as_ref()
                        .is_none_or(|wanted| wanted == object_namespace)
                    && selected(object, request.query.get("fieldSelector")).unwrap_or(false)
            })
            .map(|(_, object)| object.clone())
            .collect();
        drop(state);
        for object in current {
            if !send(&mut stream, &json!({"type": "ADDED", "object": object})) {
                return;
            }
        }
        state = lock(shared);
    }
    let mut last_bookmark = Instant::now();
    loop {
        if shared.stopping.load(Ordering::SeqCst) || state.generation != generation {
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
        if state.expiry != expiry {
            let gone = status(
                410,
                "Expired",
                "the watch cache no longer holds this resource version",
            );
            drop(state);
            send(&mut stream, &json!({"type": "ERROR", "object": gone}));
            end(&mut stream);
            return;
        }
        let pending: Vec<Value> = state
            .history
            .iter()
            .filter(|change| change.version > sent_up_to && change.resource == resource)
            .filter(|change| {
                namespace.as_ref().is_none_or(|wanted| {
                    change.object["metadata"]["namespace"].as_str() == Some(wanted)
                }) && selected(&change.object, request.query.get("fieldSelector")).unwrap_or(false)
            })
            .map(|change| json!({"type": change.kind, "object": change.object}))
            .collect();
        sent_up_to = state.version;
        let version = state.version;
        drop(state);
        for event in pending {
            if !send(&mut stream, &event) {
                return;
            }
        }
        if bookmarks && last_bookmark.elapsed() >= Duration::from_secs(1) {
            last_bookmark = Instant::now();
            let bookmark = json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version,
                                  "metadata": {"resourceVersion": version.to_string()}}});
            if !send(&mut stream, &bookmark) {
                return;
            }
        }
        if started.elapsed() >= timeout {
            end(&mut stream);
            return;
        }
        state = lock(shared);
        if state.version == sent_up_to {
            state = shared
                .changed
                .wait_timeout(state, Duration::from_millis(200))
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
    }
}
