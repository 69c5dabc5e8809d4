//! Identity and policy from Kubernetes, end to end: the agent is a real kube-rs client of a fake
//! API server (tests/src/apiserver.rs) that speaks the real list/watch protocol with real
//! Kubernetes JSON, while real traffic flows between testbed pods whose addresses the fake
//! cluster's pods claim.

use std::{
    net::{IpAddr, SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use moat_e2e::{
    RunningAgent, Scratch, StateDir,
    apiserver::FakeApiServer,
    capture::{calls_since, start_web_server, start_web_server_in},
    cgroup::TestCgroup,
    require_root, two_pods, write_atomically,
};
use serde_json::{Value, json};
use testbed::{Background, Node, Pod};

const NODE_NAME: &str = "node-a";

// ---- Kubernetes objects, shaped as the API server returns them ----

fn namespace(name: &str, labels: Value, annotations: Value) -> Value {
    json!({
        "kind": "Namespace", "apiVersion": "v1",
        "metadata": {"name": name, "labels": labels, "annotations": annotations,
                     "managedFields": [{"manager": "kubectl", "operation": "Apply", "apiVersion": "v1"}]},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"}
    })
}

fn node_object(name: &str, internal_ip: &str, pod_cidr: &str) -> Value {
    json!({
        "kind": "Node", "apiVersion": "v1",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}},
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
        "status": {
            "addresses": [{"type": "InternalIP", "address": internal_ip}, {"type": "Hostname", "address": name}],
            "conditions": [{"type": "Ready", "status": "True"}]
        }
    })
}

struct PodObject {
    value: Value,
}

impl PodObject {
    fn new(namespace: &str, name: &str, ip: IpAddr) -> Self {
        Self {
            value: json!({
                "kind": "Pod", "apiVersion": "v1",
                "metadata": {"name": name, "namespace": namespace, "labels": {}, "annotations": {}},
                "spec": {"nodeName": NODE_NAME, "containers": [{"name": "main", "image": "example.com/app:1"}],
                         "restartPolicy": "Always", "serviceAccountName": "default"},
                "status": {
                    "phase": "Running", "podIP": ip.to_string(), "podIPs": [{"ip": ip.to_string()}],
                    "hostIP": "192.0.2.10", "qosClass": "BestEffort",
                    "conditions": [{"type": "Ready", "status": "True"}]
                }
            }),
        }
    }

    fn uid(mut self, uid: &str) -> Self {
        self.value["metadata"]["uid"] = json!(uid);
        self
    }

    fn label(mut self, key: &str, value: &str) -> Self {
        self.value["metadata"]["labels"][key] = json!(value);
        self
    }

    fn annotation(mut self, key: &str, value: &str) -> Self {
        self.value["metadata"]["annotations"][key] = json!(value);
        self
    }

    fn owner(mut self, kind: &str, name: &str) -> Self {
        let api_version = if kind == "Job" { "batch/v1" } else { "apps/v1" };
        self.value["metadata"]["ownerReferences"] = json!([{
            "apiVersion": api_version, "kind": kind, "name": name,
            "uid": "6f1c3e9a-0000-4000-8000-000000000001", "controller": true, "blockOwnerDeletion": true
        }]);
        self
    }

    fn container(mut self, name: &str, id: &str) -> Self {
        self.value["spec"]["containers"] = json!([{"name": name, "image": "example.com/app:1"}]);
        self.value["status"]["containerStatuses"] = json!([{
            "name": name, "containerID": format!("containerd://{id}"), "image": "example.com/app:1",
            "imageID": "example.com/app@sha256:00", "ready": true, "restartCount": 0, "started": true,
            "state": {"running": {"startedAt": "2026-01-01T00:00:01Z"}}
        }]);
        self
    }

    fn build(self) -> Value {
        self.value
    }
}

fn moat_policy(namespace: &str, name: &str, spec: Value) -> Value {
    json!({"kind": "MoatPolicy", "apiVersion": "moat.dev/v1alpha1",
           "metadata": {"name": name, "namespace": namespace}, "spec": spec})
}

// ---- harness ----

/// A testbed node and a fake cluster whose node `node-a` it is.
struct Cluster {
    node: Node,
    client: Pod,
    server: Pod,
    api: FakeApiServer,
    scratch: Scratch,
}

impl Cluster {
    fn new(label: &str) -> Self {
        let (node, client, server) = two_pods(label);
        let api = FakeApiServer::start_in(node.netns());
        api.apply(namespace(
            "shop",
            json!({"moat.dev/team": "storefront", "team": "store"}),
            json!({"moat.dev/owner": "shop-team@example.com"}),
        ));
        api.apply(namespace("kube-system", json!({}), json!({})));
        api.apply(node_object(NODE_NAME, "192.0.2.10", "198.18.0.0/16"));
        let scratch = Scratch::new(label);
        api.write_kubeconfig(&scratch.file("kubeconfig"));
        Self {
            node,
            client,
            server,
            api,
            scratch,
        }
    }

    fn agent(&self, state: &StateDir, interfaces: &[&str], extra: &[&str]) -> RunningAgent {
        let kubeconfig = self.scratch.file("kubeconfig").display().to_string();
        let mut args = vec![
            "--kubeconfig",
            kubeconfig.as_str(),
            "--node-name",
            NODE_NAME,
        ];
        args.extend(extra);
        let mut agent = RunningAgent::start(&self.node, state, interfaces, &args);
        for resource in ["pods", "namespaces", "moatpolicies"] {
            agent.wait_for(Duration::from_secs(20), |record| {
                record["kind"] == "kube.watch"
                    && record["resource"] == resource
                    && record["state"] == "synced"
            });
        }
        agent
    }

    fn web_server(&self, port: u16) -> (Background, SocketAddr) {
        start_web_server(&self.server, port)
    }

    fn curl(&self, address: SocketAddr) {
        self.client
            .run(
                "curl",
                &[
                    "-sS",
                    "--max-time",
                    "5",
                    "-o",
                    "/dev/null",
                    &format!("http://{address}/"),
                ],
            )
            .expect("curl the server");
    }

    /// Whether the client can open a TCP connection to `address` within `timeout`.
    fn connects(&self, address: SocketAddr, timeout: Duration) -> bool {
        self.client
            .enter(|| TcpStream::connect_timeout(&address, timeout).is_ok())
            .expect("enter the client pod")
    }
}

/// Polls `condition` until it holds, and returns how long that took; fails after `limit`.
fn time_until(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    loop {
        if condition() {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn pods_are_named_with_workload_and_tags_and_a_reused_address_follows_its_new_pod() {
    require_root();
    let cluster = Cluster::new("k8sname");
    let client_ip = IpAddr::V4(cluster.client.ipv4);
    let server_ip = IpAddr::V4(cluster.server.ipv4);
    cluster.api.apply(
        PodObject::new("shop", "web-7d9f8c6b5d-x2k4p", client_ip)
            .label("app", "web")
            .label("pod-template-hash", "7d9f8c6b5d")
            .annotation("moat.dev/tag-pci", "in-scope")
            .owner("ReplicaSet", "web-7d9f8c6b5d")
            .build(),
    );
    cluster.api.apply(
        PodObject::new("shop", "db-0", server_ip)
            .label("app", "db")
            .label("moat.dev/environment", "production")
            .owner("StatefulSet", "db")
            .build(),
    );
    cluster.api.apply(json!({
        "kind": "Service", "apiVersion": "v1",
        "metadata": {"name": "db", "namespace": "shop", "labels": {"app": "db"}},
        "spec": {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "selector": {"app": "db"},
                 "ports": [{"port": 80, "protocol": "TCP", "targetPort": 18630}], "type": "ClusterIP"}
    }));
    let inventory = cluster.scratch.file("inventory.yaml");
    write_atomically(
        &inventory,
        "cluster: test-cluster\nenvironment: staging\ntagRules:\n  - { namespace: shop, tags: { product: shop, team: overridden-by-namespace } }\n",
    );
    const PORT: u16 = 18630;
    let (_server, address) = cluster.web_server(PORT);
    let state = StateDir::new();
    let inventory_arg = inventory.display().to_string();
    let mut agent = cluster.agent(
        &state,
        &[],
        &[
            "--capture",
            "on",
            "--capture-port",
            "18630",
            "--inventory",
            &inventory_arg,
        ],
    );

    let mark = agent.mark();
    cluster.curl(address);
    let calls = calls_since(&mut agent, mark, 1);
    let call = &calls[0];
    let client = &call["client"];
    assert_eq!(client["kind"], "pod", "{call}");
    assert_eq!(client["cluster"], "test-cluster");
    assert_eq!(client["namespace"], "shop");
    assert_eq!(client["pod"], "web-7d9f8c6b5d-x2k4p");
    assert_eq!(
        client["workload"],
        json!({"kind": "Deployment", "name": "web"})
    );
    assert_eq!(client["node"], NODE_NAME);
    assert_eq!(client["environment"], "staging");
    assert_eq!(client["internal"], true);
    assert_eq!(
        client["tags"],
        json!({"owner": "shop-team@example.com", "pci": "in-scope", "product": "shop", "team": "storefront"}),
        "rule, then namespace, then the pod's own labels and annotations"
    );
    assert_eq!(client["range"], format!("pod-cidr/{NODE_NAME}"), "{call}");
    let server = &call["server"];
    assert_eq!(server["pod"], "db-0", "{call}");
    assert_eq!(
        server["workload"],
        json!({"kind": "StatefulSet", "name": "db"})
    );
    assert_eq!(
        server["environment"], "production",
        "the pod's environment label wins"
    );

    // The web pod goes; a CronJob's pod gets its address. Calls from it are the new pod's.
    cluster.api.delete("Pod", "shop", "web-7d9f8c6b5d-x2k4p");
    cluster.api.apply(
        PodObject::new("shop", "report-29384520-q8v2x", client_ip)
            .label("job-name", "report-29384520")
            .owner("Job", "report-29384520")
            .build(),
    );
    std::thread::sleep(Duration::from_millis(500));
    let mark = agent.mark();
    cluster.curl(address);
    let calls = calls_since(&mut agent, mark, 1);
    let client = &calls[0]["client"];
    assert_eq!(client["pod"], "report-29384520-q8v2x", "{}", calls[0]);
    assert_eq!(
        client["workload"],
        json!({"kind": "CronJob", "name": "report"})
    );

    // Watches, not polling: one list and one watch per resource so far, watches with bookmarks,
    // and the pod list cluster-wide (the default scope).
    let requests = cluster.api.requests();
    let pod_requests: Vec<_> = requests
        .iter()
        .filter(|request| request.path == "/api/v1/pods")
        .collect();
    assert_eq!(
        pod_requests
            .iter()
            .filter(|request| !request.is_watch())
            .count(),
        1,
        "{pod_requests:?}"
    );
    assert!(pod_requests.iter().any(|request| request.is_watch()
        && request.query.get("allowWatchBookmarks").map(String::as_str) == Some("true")));
    assert!(
        pod_requests
            .iter()
            .all(|request| !request.query.contains_key("fieldSelector"))
    );
    agent.stop();
}

#[test]
fn a_node_scoped_agent_watches_only_its_pods_and_names_a_process_by_its_pod_cgroup() {
    require_root();
    let cluster = Cluster::new("k8scg");
    const UID: &str = "3c2b1a09-8f7e-4d6c-9b5a-0123456789ab";
    const CONTAINER: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    // The pod's address is not the server's: only its cgroup can name the server process.
    cluster.api.apply(
        PodObject::new("shop", "api-0", "10.244.9.9".parse().expect("ip"))
            .uid(UID)
            .owner("StatefulSet", "api")
            .container("api", CONTAINER)
            .build(),
    );
    let mut elsewhere =
        PodObject::new("shop", "remote-0", "10.244.7.7".parse().expect("ip")).build();
    elsewhere["spec"]["nodeName"] = json!("node-b");
    cluster.api.apply(elsewhere);
    const PORT: u16 = 18632;
    let (server_process, address) = cluster.web_server(PORT);
    let cgroup = TestCgroup::create(&format!(
        "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-{CONTAINER}.scope",
        UID.replace('-', "_")
    ));
    cgroup.add(server_process.id());

    let state = StateDir::new();
    // Only the server process is captured: its end is the one its cgroup names.
    let server_pid = server_process.id().to_string();
    let mut agent = cluster.agent(
        &state,
        &[],
        &[
            "--capture",
            "on",
            "--capture-pid",
            &server_pid,
            "--kube-pods",
            "node",
        ],
    );
    let mark = agent.mark();
    cluster.curl(address);
    let calls = calls_since(&mut agent, mark, 1);
    let server = &calls[0]["server"];
    assert_eq!(server["kind"], "pod", "{}", calls[0]);
    assert_eq!(server["pod"], "api-0");
    assert_eq!(server["container"], "api");
    assert_eq!(
        server["workload"],
        json!({"kind": "StatefulSet", "name": "api"})
    );

    let requests = cluster.api.requests();
    let pod_requests: Vec<_> = requests
        .iter()
        .filter(|request| request.path == "/api/v1/pods")
        .collect();
    assert!(
        pod_requests.iter().all(
            |request| request.query.get("fieldSelector").map(String::as_str)
                == Some("spec.nodeName=node-a")
        ),
        "a node-scoped agent asks only for its node's pods: {pod_requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|request| request.path == "/apis/discovery.k8s.io/v1/endpointslices")
    );
    let metrics_free = agent.stop();
    assert!(
        metrics_free
            .iter()
            .all(|record| record["kind"] != "kube.watch" || record["state"] != "failing")
    );
}

#[test]
fn a_selector_policy_follows_a_relabelled_pod_within_a_second_and_a_bad_moat_policy_is_refused() {
    require_root();
    let cluster = Cluster::new("k8spol");
    let server_ip = IpAddr::V4(cluster.server.ipv4);
    let server_pod = |app: &str| {
        PodObject::new("shop", "store-0", server_ip)
            .label("app", app)
            .build()
    };
    cluster.api.apply(server_pod("cache"));
    cluster.api.apply(moat_policy(
        "shop",
        "db-guard",
        json!({
            "identities": {"db": {"selector": {"namespace": "shop", "matchLabels": {"app": "db"}}}},
            "rules": [{"name": "nothing-to-db", "action": "deny", "from": "world", "to": "db", "ports": [18631], "protocol": "tcp"}]
        }),
    ));
    const PORT: u16 = 18631;
    let (_server, address) = cluster.web_server(PORT);
    let state = StateDir::new();
    let interface = cluster.server.host_interface.clone();
    let client_interface = cluster.client.host_interface.clone();
    let mut agent = cluster.agent(&state, &[&interface, &client_interface], &[]);
    let applied = agent.wait_for(Duration::from_secs(10), |record| {
        record["kind"] == "policy.applied"
    });
    assert_eq!(
        applied["sources"],
        json!(["MoatPolicy shop/db-guard"]),
        "{applied}"
    );
    assert_eq!(applied["pod_addresses"], 0);
    assert!(
        cluster.connects(address, Duration::from_millis(500)),
        "store-0 is not a db yet"
    );

    // Relabelled to app=db: blocked within a second of the change.
    let mark = agent.mark();
    cluster.api.apply(server_pod("db"));
    let blocked_after = time_until(Duration::from_secs(5), "blocked after relabelling", || {
        !cluster.connects(address, Duration::from_millis(100))
    });
    assert!(
        blocked_after <= Duration::from_secs(1),
        "blocked only after {blocked_after:?}"
    );
    let applied = agent.wait_since(mark, Duration::from_secs(5), |record| {
        record["kind"] == "policy.applied"
    });
    assert_eq!(applied["reason"], "pods");
    assert_eq!(applied["pod_addresses"], 1);
    let denied = agent.wait_since(mark, Duration::from_secs(5), |record| {
        record["kind"] == "policy.denied"
    });
    assert_eq!(denied["rule"], "shop/db-guard/nothing-to-db", "{denied}");
    assert_eq!(denied["destination"]["pod"], "store-0", "{denied}");

    // A malformed MoatPolicy is refused, with an event on it; the good one stays in force.
    let mark = agent.mark();
    cluster.api.apply(moat_policy(
        "shop",
        "broken",
        json!({"rules": [{"name": "x", "action": "drop", "from": "any", "to": "any"}]}),
    ));
    let rejected = agent.wait_since(mark, Duration::from_secs(5), |record| {
        record["kind"] == "policy.rejected"
    });
    assert_eq!(rejected["moat_policy"], "shop/broken", "{rejected}");
    assert!(
        rejected["error"]
            .as_str()
            .unwrap_or("")
            .contains("rules[0].action"),
        "{rejected}"
    );
    time_until(
        Duration::from_secs(5),
        "a Kubernetes Event on the refused MoatPolicy",
        || {
            cluster.api.events().iter().any(|event| {
                event["reason"] == "PolicyRefused" && event["regarding"]["name"] == "broken"
            })
        },
    );
    assert!(
        !cluster.connects(address, Duration::from_millis(300)),
        "the good policy still blocks"
    );

    // Relabelled back: reachable again within a second.
    cluster.api.apply(server_pod("cache"));
    let open_after = time_until(
        Duration::from_secs(5),
        "open after relabelling back",
        || cluster.connects(address, Duration::from_millis(100)),
    );
    assert!(
        open_after <= Duration::from_secs(1),
        "open only after {open_after:?}"
    );
    agent.stop();
}

#[test]
fn api_server_restarts_and_410_gone_relist_and_staleness_is_reported() {
    require_root();
    let mut cluster = Cluster::new("k8srst");
    let client_ip = IpAddr::V4(cluster.client.ipv4);
    cluster.api.apply(
        PodObject::new("shop", "web-0", client_ip)
            .owner("StatefulSet", "web")
            .build(),
    );
    const PORT: u16 = 18633;
    let (_server, address) = cluster.web_server(PORT);
    let state = StateDir::new();
    let mut agent = cluster.agent(&state, &[], &["--capture", "on", "--capture-port", "18633"]);

    // Down for a while: the watches fail, the agent says so and keeps what it knew.
    let mark = agent.mark();
    cluster.api.restart(Duration::from_secs(3));
    let failing = agent.wait_since(mark, Duration::from_secs(10), |record| {
        record["kind"] == "kube.watch" && record["state"] == "failing"
    });
    assert!(failing["error"].as_str().is_some(), "{failing}");
    agent.wait_since(mark, Duration::from_secs(40), |record| {
        record["kind"] == "kube.watch"
            && record["resource"] == "pods"
            && record["state"] == "synced"
    });
    let mark = agent.mark();
    cluster.curl(address);
    let calls = calls_since(&mut agent, mark, 1);
    assert_eq!(calls[0]["client"]["pod"], "web-0", "{}", calls[0]);

    // History compacted under a live watch: 410 Gone, and the agent relists, finding what
    // changed meanwhile.
    let lists_before = cluster
        .api
        .requests()
        .iter()
        .filter(|request| request.path == "/api/v1/pods" && !request.is_watch())
        .count();
    cluster.api.delete("Pod", "shop", "web-0");
    cluster.api.apply(
        PodObject::new("shop", "web-1", client_ip)
            .owner("StatefulSet", "web")
            .build(),
    );
    cluster.api.compact();
    cluster.api.expire_watches();
    time_until(Duration::from_secs(20), "a relist after 410 Gone", || {
        cluster
            .api
            .requests()
            .iter()
            .filter(|request| request.path == "/api/v1/pods" && !request.is_watch())
            .count()
            > lists_before
    });
    std::thread::sleep(Duration::from_millis(500));
    let mark = agent.mark();
    cluster.curl(address);
    let calls = calls_since(&mut agent, mark, 1);
    assert_eq!(calls[0]["client"]["pod"], "web-1", "{}", calls[0]);

    // Connections cut mid-watch, and a slow API server: the agent watches again and sees what
    // changes next.
    cluster.api.set_delay(Duration::from_millis(1500));
    cluster.api.break_watches();
    std::thread::sleep(Duration::from_millis(300));
    cluster.api.delete("Pod", "shop", "web-1");
    cluster.api.apply(
        PodObject::new("shop", "web-2", client_ip)
            .owner("StatefulSet", "web")
            .build(),
    );
    std::thread::sleep(Duration::from_secs(4));
    let mark = agent.mark();
    cluster.curl(address);
    let calls = calls_since(&mut agent, mark, 1);
    assert_eq!(calls[0]["client"]["pod"], "web-2", "{}", calls[0]);
    cluster.api.set_delay(Duration::ZERO);
    agent.stop();
}

// ---- specs bound by annotation ----

const SPEC: &str = "\
openapi: 3.0.3
info: {title: pets, version: '1'}
paths:
  /:
    get:
      responses:
        '200':
          description: the index
          content:
            text/html: {schema: {$ref: 'schemas.yaml#/Page'}}
";

fn spec_config_map(openapi: &str) -> Value {
    json!({
        "kind": "ConfigMap", "apiVersion": "v1",
        "metadata": {"name": "pets-spec", "namespace": "shop"},
        "data": {"openapi.yaml": openapi, "schemas.yaml": "Page: {type: string}\n"}
    })
}

fn annotated_service(annotations: Value) -> Value {
    json!({
        "kind": "Service", "apiVersion": "v1",
        "metadata": {"name": "pets", "namespace": "shop", "annotations": annotations},
        "spec": {"clusterIP": "10.96.0.30", "clusterIPs": ["10.96.0.30"], "selector": {"app": "pets"},
                 "ports": [{"port": 80, "protocol": "TCP", "targetPort": 18634}], "type": "ClusterIP"}
    })
}

#[test]
fn a_service_annotation_binds_the_spec_in_a_config_map_and_follows_its_edits() {
    require_root();
    let cluster = Cluster::new("k8sspec");
    let server_ip = IpAddr::V4(cluster.server.ipv4);
    const PORT: u16 = 18634;
    cluster.api.apply(annotated_service(
        json!({"moat.dev/openapi": "pets-spec/openapi.yaml"}),
    ));
    // The service's pod: the service selects it by its label, so calls to the pod's own
    // address are calls to the service (the agent watches every pod, the default).
    cluster.api.apply(
        PodObject::new("shop", "pets-0", server_ip)
            .uid("pets-0-uid")
            .label("app", "pets")
            .build(),
    );
    cluster.api.apply(spec_config_map(SPEC));
    // A ConfigMap no annotation names: the agent never asks for it.
    cluster.api.apply(json!({
        "kind": "ConfigMap", "apiVersion": "v1",
        "metadata": {"name": "unrelated", "namespace": "shop"}, "data": {"x": "y"}
    }));
    // The pets server serves files its spec does not document: shadow endpoints (a path
    // the server answers 404 is not one).
    let site = std::env::temp_dir().join(format!("moat-pets-site-{}", std::process::id()));
    std::fs::create_dir_all(&site).expect("create the pets site");
    for file in ["admin", "secret", "hidden"] {
        std::fs::write(site.join(file), "shadow\n").expect("write a pets site file");
    }
    let (_server, address) = start_web_server_in(&cluster.server, PORT, &site);
    let state = StateDir::new();
    let port = PORT.to_string();
    let mut agent = cluster.agent(&state, &[], &["--capture", "on", "--capture-port", &port]);
    let loaded = agent.wait_for(Duration::from_secs(20), |record| {
        record["kind"] == "api.spec_loaded"
    });
    assert_eq!(loaded["api"], "shop/pets", "{loaded}");
    assert_eq!(loaded["file"], "configmap shop/pets-spec/openapi.yaml");
    assert_eq!(loaded["operations"], 1, "{loaded}");

    let get = |path: &str| {
        cluster
            .client
            .run(
                "curl",
                &[
                    "-sS",
                    "--max-time",
                    "5",
                    "-o",
                    "/dev/null",
                    &format!("http://{address}{path}"),
                ],
            )
            .expect("curl the server");
    };
    let undocumented = |agent: &mut RunningAgent, mark: usize, path: &str| {
        let finding = agent.wait_since(mark, Duration::from_secs(10), |record| {
            record["kind"] == "api.finding"
                && record["finding"] == "spec.undocumented_endpoint"
                && record["endpoint"] == path
        });
        assert_eq!(finding["service"], "shop/pets", "{finding}");
        assert_eq!(finding["destination"]["service"], "pets", "{finding}");
        finding
    };
    let mark = agent.mark();
    get("/");
    get("/admin");
    undocumented(&mut agent, mark, "/admin");
    let calls = calls_since(&mut agent, mark, 2);
    assert!(
        calls.iter().all(|call| call["service"] == "shop/pets"),
        "{calls:?}"
    );
    let conforming: Vec<&Value> = agent.records()[mark..]
        .iter()
        .filter(|record| record["kind"] == "api.finding" && record["endpoint"] == "/")
        .filter(|record| {
            record["finding"]
                .as_str()
                .is_some_and(|kind| kind.starts_with("spec."))
        })
        .collect();
    assert!(conforming.is_empty(), "GET / conforms: {conforming:?}");

    // An edit that breaks the spec is rejected within seconds; the last good spec judges on.
    let mark = agent.mark();
    cluster
        .api
        .apply(spec_config_map("openapi: 3.0.3\npaths: {/: [\n"));
    let rejected = agent.wait_since(mark, Duration::from_secs(5), |record| {
        record["kind"] == "api.spec_rejected"
    });
    assert_eq!(rejected["api"], "shop/pets", "{rejected}");
    assert_eq!(rejected["file"], "configmap shop/pets-spec/openapi.yaml");
    assert!(
        rejected["error"].as_str().is_some_and(|error| error
            .starts_with("configmap shop/pets-spec/openapi.yaml#: not valid JSON or YAML")),
        "{rejected}"
    );
    get("/secret");
    undocumented(&mut agent, mark, "/secret");

    // A good edit is in use within seconds: /secret documented now, with a status it never
    // answers.
    let mark = agent.mark();
    let documented = format!(
        "{SPEC}  /secret:\n    get:\n      responses:\n        '204': {{description: the secret}}\n"
    );
    cluster.api.apply(spec_config_map(&documented));
    let loaded = agent.wait_since(mark, Duration::from_secs(5), |record| {
        record["kind"] == "api.spec_loaded"
    });
    assert_eq!(loaded["operations"], 2, "{loaded}");
    get("/secret");
    let finding = agent.wait_since(mark, Duration::from_secs(10), |record| {
        record["kind"] == "api.finding"
            && record["endpoint"] == "/secret"
            && record["finding"]
                .as_str()
                .is_some_and(|kind| kind.starts_with("spec."))
    });
    assert_eq!(finding["finding"], "spec.unexpected_status", "{finding}");

    // A wrong mode annotation is refused like any unusable object; detect stays.
    let mark = agent.mark();
    cluster.api.apply(annotated_service(json!({
        "moat.dev/openapi": "pets-spec/openapi.yaml", "moat.dev/openapi-mode": "blok"
    })));
    let refused = agent.wait_since(mark, Duration::from_secs(5), |record| {
        record["kind"] == "kube.watch" && record["state"] == "rejected"
    });
    assert_eq!(refused["resource"], "services", "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|error| error.starts_with("Service shop/pets: moat.dev/openapi-mode:")),
        "{refused}"
    );
    // The ConfigMap deleted: rejected again, and the spec still judges.
    cluster.api.delete("ConfigMap", "shop", "pets-spec");
    let gone = agent.wait_since(mark, Duration::from_secs(5), |record| {
        record["kind"] == "api.spec_rejected"
    });
    assert!(
        gone["error"]
            .as_str()
            .is_some_and(|error| error.ends_with("configmap shop/pets-spec does not exist")),
        "{gone}"
    );
    get("/hidden");
    let finding = undocumented(&mut agent, mark, "/hidden");
    assert_eq!(finding["mode"], "detect", "{finding}");

    // One watch per named ConfigMap, for that name alone.
    let config_map_requests: Vec<_> = cluster
        .api
        .requests()
        .into_iter()
        .filter(|request| request.path.ends_with("/configmaps"))
        .collect();
    assert!(!config_map_requests.is_empty());
    assert!(
        config_map_requests.iter().all(|request| request.path
            == "/api/v1/namespaces/shop/configmaps"
            && request.query.get("fieldSelector").map(String::as_str)
                == Some("metadata.name=pets-spec")),
        "{config_map_requests:?}"
    );
    agent.stop();
    std::fs::remove_dir_all(&site).expect("remove the pets site");
}
