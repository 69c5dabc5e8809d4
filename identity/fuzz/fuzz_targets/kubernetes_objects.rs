//! Any bytes as Kubernetes objects from the API server, and as cgroup paths: whatever parses as
//! a Pod, Service, Node, Namespace or EndpointSlice becomes facts or an error, and facts go into
//! the index, which then resolves addresses and selects pods, without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = identity::cgroup::container_of(&text);
    let _ = identity::cgroup::pod_cgroup_in_proc(&text);
    let mut index = identity::IdentityIndex::new(identity::Inventory::default());
    if let Ok(pod) = serde_json::from_slice(data)
        && let Ok(facts) = identity::kubernetes::pod_facts(&pod)
    {
        let uid = facts.uid.clone();
        index.apply_pod(facts.clone(), 10);
        index.apply_pod(facts, 20);
        index.remove_pod(&uid, 30);
    }
    if let Ok(service) = serde_json::from_slice(data)
        && let Ok(facts) = identity::kubernetes::service_facts(&service)
    {
        index.apply_service(facts);
    }
    if let Ok(node) = serde_json::from_slice(data)
        && let Ok(facts) = identity::kubernetes::node_facts(&node)
    {
        index.apply_node(facts);
    }
    if let Ok(namespace) = serde_json::from_slice(data)
        && let Ok(facts) = identity::kubernetes::namespace_facts(&namespace)
    {
        index.apply_namespace(facts);
    }
    if let Ok(slice) = serde_json::from_slice(data)
        && let Ok(facts) = identity::kubernetes::slice_facts(&slice)
    {
        index.apply_slice(facts);
    }
    index.refresh();
    for address in ["10.0.0.1", "fd00::1", "::ffff:10.0.0.1"] {
        let _ = index.resolve(address.parse().expect("literal"), 15);
    }
    let _ = index.pod_ips_matching(None, None, None);
});
