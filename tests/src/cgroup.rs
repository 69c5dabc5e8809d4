//! Cgroups (v2) made for a test, at any depth (a kubelet-like `kubepods.slice/...` path too), and
//! removed after it, deepest first.

use std::path::{Path, PathBuf};

pub struct TestCgroup {
    pub path: PathBuf,
    root: PathBuf,
    /// Directories this cgroup created, outermost first.
    created: Vec<PathBuf>,
}

impl TestCgroup {
    /// The cgroup at `relative` (e.g. `moat-x` or `kubepods.slice/kubepods-pod….slice/cri-containerd-….scope`)
    /// under the cgroup v2 mount, creating what is missing.
    pub fn create(relative: &str) -> Self {
        let root = agent::capture::cgroup2_mount().expect("a cgroup v2 hierarchy");
        let mut created = Vec::new();
        let mut path = root.clone();
        for part in relative.split('/').filter(|part| !part.is_empty()) {
            path.push(part);
            if !path.exists() {
                std::fs::create_dir(&path)
                    .unwrap_or_else(|error| panic!("create cgroup {}: {error}", path.display()));
                created.push(path.clone());
            }
        }
        assert!(
            path.join("cgroup.procs").exists(),
            "{} is a cgroup",
            path.display()
        );
        Self {
            path,
            root,
            created,
        }
    }

    /// Its path as /proc/PID/cgroup shows it.
    pub fn name(&self) -> String {
        format!(
            "/{}",
            self.path
                .strip_prefix(&self.root)
                .expect("under the mount")
                .display()
        )
    }

    pub fn add(&self, pid: u32) {
        std::fs::write(self.path.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|error| panic!("move {pid} into {}: {error}", self.path.display()));
    }

    pub fn id(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&self.path).expect("cgroup exists").ino()
    }

    fn evict(&self, path: &Path) {
        // Processes still inside go back to the root so the directory can be removed.
        if let Ok(procs) = std::fs::read_to_string(path.join("cgroup.procs")) {
            for pid in procs.lines() {
                let _ = std::fs::write(self.root.join("cgroup.procs"), pid);
            }
        }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for path in self.created.iter().rev() {
            self.evict(path);
            let _ = std::fs::remove_dir(path);
        }
    }
}
