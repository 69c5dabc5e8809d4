//! The pod and container a cgroup belongs to, from the cgroup's path alone. Kubelet and the
//! container runtimes name cgroups predictably; the layouts differ by cgroup driver (systemd or
//! cgroupfs), runtime (containerd, CRI-O, Docker) and cgroup version (a v1 path is the same
//! below its controller's mount point):
//!
//! ```text
//! systemd:  /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid with _>.slice/cri-containerd-<id>.scope
//!           /kubepods.slice/kubepods-pod<uid with _>.slice/crio-<id>.scope
//! cgroupfs: /kubepods/besteffort/pod<uid>/<id>
//!           /kubepods/pod<uid>/<id>
//! ```
//!
//! Pause (sandbox) containers match too: their id is simply not among the pod's containers.

/// Where a process runs, as its cgroup tells.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ContainerRef {
    /// The pod's `metadata.uid`, with dashes.
    pub pod_uid: String,
    /// The runtime's container id (64 hex digits), when the cgroup is a container's and not the
    /// pod's own.
    pub container_id: Option<String>,
}

/// The pod (and container) of the cgroup at `path`, as /proc/PID/cgroup shows it or relative to
/// any cgroup mount; None for a cgroup outside Kubernetes pods.
pub fn container_of(path: &str) -> Option<ContainerRef> {
    let mut pod_uid = None;
    let mut container_id = None;
    for part in path.split('/') {
        if let Some(uid) = pod_uid_of(part) {
            pod_uid = Some(uid);
            container_id = None;
        } else if pod_uid.is_some() && container_id.is_none() {
            container_id = container_id_of(part);
        }
    }
    pod_uid.map(|pod_uid| ContainerRef {
        pod_uid,
        container_id,
    })
}

/// `pod<uid>` (cgroupfs) or `kubepods[-<qos>]-pod<uid with _>.slice` (systemd).
fn pod_uid_of(part: &str) -> Option<String> {
    let candidate = match part.strip_suffix(".slice") {
        Some(slice) => {
            if !slice.starts_with("kubepods") {
                return None;
            }
            slice.rsplit_once("-pod")?.1.replace('_', "-")
        }
        None => part.strip_prefix("pod")?.to_owned(),
    };
    is_uid(&candidate).then_some(candidate)
}

/// `cri-containerd-<id>.scope`, `crio-<id>.scope`, `docker-<id>.scope`, `cri-o-<id>.scope`, or a
/// bare id (cgroupfs driver). CRI-O's `crio-conmon-<id>.scope` is its monitor, not the container.
fn container_id_of(part: &str) -> Option<String> {
    let id = match part.strip_suffix(".scope") {
        Some(scope) => [
            "cri-containerd-",
            "crio-",
            "cri-o-",
            "docker-",
            "containerd-",
        ]
        .iter()
        .find_map(|prefix| scope.strip_prefix(prefix))?,
        None => part,
    };
    (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_ascii_lowercase())
}

/// A Kubernetes uid: 8-4-4-4-12 hex digits.
fn is_uid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(group, length)| {
            group.len() == length && group.bytes().all(|b| b.is_ascii_hexdigit())
        })
}

/// The cgroup path in one line of /proc/PID/cgroup content: the v2 entry (`0::/path`) if there
/// is one that lies inside a pod, else the first v1 controller entry that does (hybrid hosts
/// often keep kubelet's cgroups in v1 only).
pub fn pod_cgroup_in_proc(content: &str) -> Option<&str> {
    let mut entries = content.lines().filter_map(|line| {
        let mut fields = line.splitn(3, ':');
        let hierarchy = fields.next()?;
        let _controllers = fields.next()?;
        Some((hierarchy, fields.next()?))
    });
    let paths: Vec<(&str, &str)> = entries.by_ref().collect();
    paths
        .iter()
        .filter(|(hierarchy, _)| *hierarchy == "0")
        .chain(paths.iter().filter(|(hierarchy, _)| *hierarchy != "0"))
        .map(|(_, path)| *path)
        .find(|path| container_of(path).is_some())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const UID: &str = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
    const ID: &str = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00112233445566778899";

    #[test]
    fn every_runtime_and_driver_layout_names_pod_and_container() {
        let uid_ = UID.replace('-', "_");
        let layouts = [
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/cri-containerd-{ID}.scope"
            ),
            format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/crio-{ID}.scope"
            ),
            format!("/kubepods.slice/kubepods-pod{uid_}.slice/cri-containerd-{ID}.scope"),
            format!("/kubepods.slice/kubepods-pod{uid_}.slice/docker-{ID}.scope"),
            format!("/kubepods/burstable/pod{UID}/{ID}"),
            format!("/kubepods/pod{UID}/{ID}"),
            // A kind or k3s node nests kubelet's hierarchy under its own.
            format!(
                "/system.slice/containerd.service/kubepods-burstable-pod{uid_}.slice:cri-containerd:{ID}/kubepods/burstable/pod{UID}/{ID}"
            ),
        ];
        for path in layouts {
            let found = container_of(&path).unwrap_or_else(|| panic!("{path}"));
            assert_eq!(found.pod_uid, UID, "{path}");
            assert_eq!(found.container_id.as_deref(), Some(ID), "{path}");
        }
    }

    #[test]
    fn a_pod_cgroup_without_a_container_names_the_pod_only() {
        let found = container_of(&format!("/kubepods/besteffort/pod{UID}")).expect("pod cgroup");
        assert_eq!((found.pod_uid.as_str(), found.container_id), (UID, None));
        let found = container_of(&format!(
            "/kubepods.slice/kubepods-pod{}.slice/crio-conmon-{ID}.scope",
            UID.replace('-', "_")
        ))
        .expect("pod cgroup");
        assert_eq!(found.container_id, None, "conmon is not the container");
    }

    #[test]
    fn cgroups_outside_pods_are_not_pods() {
        for path in [
            "/",
            "/user.slice/user-0.slice/session-3.scope",
            "/system.slice/containerd.service",
            "/kubepods.slice",
            "/kubepods/burstable",
            &format!("/docker/{ID}"),
            "/kubepods/podnot-a-uid/abc",
        ] {
            assert_eq!(container_of(path), None, "{path}");
        }
    }

    #[test]
    fn proc_cgroup_prefers_the_v2_entry_and_falls_back_to_v1() {
        let v2 = format!("0::/kubepods/pod{UID}/{ID}\n");
        assert_eq!(pod_cgroup_in_proc(&v2), Some(&v2[3..v2.len() - 1]));
        let hybrid = format!(
            "12:memory:/kubepods/burstable/pod{UID}/{ID}\n1:name=systemd:/kubepods/burstable/pod{UID}/{ID}\n0::/\n"
        );
        assert_eq!(
            pod_cgroup_in_proc(&hybrid),
            Some(format!("/kubepods/burstable/pod{UID}/{ID}").as_str())
        );
        assert_eq!(pod_cgroup_in_proc("0::/user.slice\n"), None);
    }

    proptest! {
        #[test]
        fn arbitrary_paths_never_panic(path in "[/a-z0-9_.:-]{0,200}") {
            let _ = container_of(&path);
            let _ = pod_cgroup_in_proc(&path);
        }
    }
}
