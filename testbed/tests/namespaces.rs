//! The testbed builds real namespaces that pass traffic, and removes every trace of them.

use std::{net::TcpListener, path::Path, process::Command};

use testbed::{Node, PodSpec, TestbedError};

fn namespace_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "testbed tests need root (CI runs as root)"
    );
}

#[test]
fn pods_in_different_subnets_reach_each_other_over_both_families() {
    require_root();
    let mut node = Node::new("reach").unwrap();
    let a = node
        .add_pod(PodSpec::new("a", "198.18.1.10/24", "fd00:198:18:1::10/64"))
        .unwrap();
    let b = node
        .add_pod(PodSpec::new("b", "198.18.2.10/24", "fd00:198:18:2::10/64"))
        .unwrap();
    let c = node
        .add_pod(PodSpec::new("c", "198.18.1.11/24", "fd00:198:18:1::11/64"))
        .unwrap();
    for (from, to) in [(&a, &b), (&b, &a), (&a, &c)] {
        for address in to.addresses() {
            from.run("ping", &["-c", "1", "-W", "2", &address.to_string()])
                .unwrap_or_else(|error| panic!("{} -> {} {address}: {error}", from.name, to.name));
        }
    }
    // The node sees each pod's veth end, as an agent on a Kubernetes node would.
    let links = Command::new("ip")
        .args(["-n", node.netns(), "-br", "link"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    for pod in node.pods() {
        assert!(links.contains(&pod.host_interface), "{links}");
    }
}

#[test]
fn sockets_opened_inside_enter_belong_to_the_pod() {
    require_root();
    let mut node = Node::new("enter").unwrap();
    let pod = node
        .add_pod(PodSpec::new(
            "srv",
            "198.18.5.10/24",
            "fd00:198:18:5::10/64",
        ))
        .unwrap();
    let listener = pod
        .enter(|| TcpListener::bind((pod.ipv4, 0)))
        .unwrap()
        .expect("the pod's address is bindable only inside the pod");
    assert_eq!(listener.local_addr().unwrap().ip(), pod.ipv4);
    assert!(
        TcpListener::bind((pod.ipv4, 0)).is_err(),
        "the test's own namespace does not have the pod's address"
    );
}

#[test]
fn everything_is_removed_on_drop_even_after_a_panic() {
    require_root();
    let names = std::thread::spawn(|| {
        let mut node = Node::new("panic").unwrap();
        let pod = node
            .add_pod(PodSpec::new("p", "198.18.6.10/24", "fd00:198:18:6::10/64"))
            .unwrap();
        let _sleeper = pod.spawn("sleep", &["600"]).unwrap();
        let names = vec![node.netns().to_owned(), pod.netns.clone()];
        assert!(names.iter().all(|name| namespace_exists(name)));
        std::panic::panic_any(names);
    })
    .join()
    .expect_err("the thread panics");
    let names = names.downcast::<Vec<String>>().expect("the names");
    for name in names.iter() {
        assert!(!namespace_exists(name), "{name} survived the panic");
    }
}

#[test]
fn bad_specs_are_refused_before_anything_is_built() {
    require_root();
    let mut node = Node::new("refuse").unwrap();
    let outside = node.add_pod(PodSpec::new("x", "10.1.2.3/24", "fd00:198:18:7::3/64"));
    assert!(
        matches!(outside, Err(TestbedError::AddressOutsideTestRange { .. })),
        "{outside:?}"
    );
    let gateway = node.add_pod(PodSpec::new("y", "198.18.7.1/24", "fd00:198:18:7::3/64"));
    assert!(
        matches!(gateway, Err(TestbedError::AddressIsGateway { .. })),
        "{gateway:?}"
    );
    node.add_pod(PodSpec::new("z", "198.18.7.3/24", "fd00:198:18:7::3/64"))
        .unwrap();
    let twice = node.add_pod(PodSpec::new("z", "198.18.7.4/24", "fd00:198:18:7::4/64"));
    assert!(
        matches!(twice, Err(TestbedError::DuplicatePod { .. })),
        "{twice:?}"
    );
    assert_eq!(node.pods().len(), 1);
}
