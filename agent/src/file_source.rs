//! Files the agent follows on disk (the policy file and the blocklists it names, the inventory):
//! loading them, and noticing when any file a load read has changed.

use std::{
    cell::RefCell,
    collections::BTreeMap,
    hash::{DefaultHasher, Hash, Hasher},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::SystemTime,
};

use identity::Inventory;

use crate::detection::DetectionConfig;
use policy::{Policy, PolicyError};

/// Reads a file (through the given reader, for every file it needs) into a `T`.
type Loader<T> = fn(&Path, &dyn Fn(&Path) -> std::io::Result<String>) -> Result<T, PolicyError>;

/// The policy file, and the blocklists it names.
pub type PolicySource = FileSource<Policy>;
/// The inventory file.
pub type InventorySource = FileSource<Inventory>;
/// The `--detection` file.
pub type DetectionSource = FileSource<DetectionConfig>;

/// A file and the fingerprint of what it was last loaded from.
pub struct FileSource<T> {
    path: PathBuf,
    loader: Loader<T>,
    /// Each file read by the last load attempt (the policy and its blocklists): what stat said
    /// then, and a hash of the contents; None for a file that could not be read.
    fingerprint: BTreeMap<PathBuf, Option<FileState>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileState {
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
    content: u64,
}

impl FileState {
    fn stat(path: &Path) -> Option<(u64, u64, Option<SystemTime>)> {
        let metadata = std::fs::metadata(path).ok()?;
        Some((metadata.ino(), metadata.len(), metadata.modified().ok()))
    }

    fn read(path: &Path, text: &str) -> Option<Self> {
        let (inode, len, modified) = Self::stat(path)?;
        Some(Self {
            inode,
            len,
            modified,
            content: hash(text),
        })
    }
}

impl PolicySource {
    pub fn new(path: &Path) -> Self {
        FileSource::with_loader(path, policy::load_with)
    }
}

impl InventorySource {
    pub fn new(path: &Path) -> Self {
        FileSource::with_loader(path, identity::inventory::load_with)
    }
}

impl DetectionSource {
    pub fn new(path: &Path) -> Self {
        FileSource::with_loader(path, crate::detection::load_with)
    }
}

impl<T> FileSource<T> {
    fn with_loader(path: &Path, loader: Loader<T>) -> Self {
        Self {
            path: path.to_owned(),
            loader,
            fingerprint: BTreeMap::new(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Loads and validates the file, remembering which files it read.
    pub fn load(&mut self) -> Result<Arc<T>, PolicyError> {
        let read_files = RefCell::new(BTreeMap::new());
        let read = |path: &Path| {
            let result = std::fs::read_to_string(path);
            let state = result
                .as_ref()
                .ok()
                .and_then(|text| FileState::read(path, text));
            read_files.borrow_mut().insert(path.to_owned(), state);
            result
        };
        let outcome = (self.loader)(&self.path, &read);
        self.fingerprint = read_files.into_inner();
        outcome.map(Arc::new)
    }

    /// True when a file the last load read has different contents now (or appeared or vanished).
    /// Cheap enough to call every second: a stat per file, and a reread only of a file whose stat
    /// changed (so a `touch` alone does not reload; its new stat is remembered, so the file is
    /// reread once, not every second).
    pub fn changed(&mut self) -> bool {
        self.fingerprint.iter_mut().any(|(path, last)| {
            let stat = FileState::stat(path);
            match (last.as_mut(), stat) {
                (None, None) => false,
                (Some(last), Some(stat)) if (last.inode, last.len, last.modified) == stat => false,
                (Some(last), Some(_)) => match std::fs::read_to_string(path) {
                    Ok(text) if hash(&text) == last.content => {
                        if let Some(current) = FileState::read(path, &text) {
                            *last = current;
                        }
                        false
                    }
                    _ => true,
                },
                _ => true,
            }
        })
    }
}

fn hash(text: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_edits_are_noticed_and_invalid_ones_refused() {
        let directory =
            std::env::temp_dir().join(format!("moat-inventory-source-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let inventory = directory.join("inventory.yaml");
        std::fs::write(&inventory, "cluster: a\n").unwrap();
        let mut source = InventorySource::new(&inventory);
        assert_eq!(source.load().unwrap().cluster.as_deref(), Some("a"));
        assert!(!source.changed());
        std::fs::write(&inventory, "cluster: b\nenvironment: prod\n").unwrap();
        assert!(source.changed());
        let error = source.load().unwrap_err();
        assert_eq!(error.field.as_deref(), Some("environment"));
        std::fs::remove_dir_all(&directory).unwrap();
    }

    #[test]
    fn edits_to_the_policy_or_its_blocklist_are_noticed() {
        let directory =
            std::env::temp_dir().join(format!("moat-policy-source-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let policy = directory.join("policy.yaml");
        let blocklist = directory.join("blocklist.txt");
        std::fs::write(&policy, "blocklist: { files: [blocklist.txt] }\n").unwrap();
        std::fs::write(&blocklist, "198.19.0.1\n").unwrap();

        let mut source = PolicySource::new(&policy);
        assert_eq!(source.load().unwrap().blocklist.len(), 1);
        assert!(!source.changed());
        std::fs::write(&blocklist, "198.19.0.1\n198.19.0.2\n").unwrap();
        assert!(source.changed(), "a blocklist edit counts");
        assert_eq!(source.load().unwrap().blocklist.len(), 2);
        assert!(!source.changed());
        let before = std::fs::metadata(&blocklist).unwrap().modified().unwrap();
        std::fs::write(&blocklist, "198.19.0.1\n198.19.0.2\n").unwrap();
        let after = std::fs::metadata(&blocklist).unwrap().modified().unwrap();
        if before != after {
            assert!(
                !source.changed(),
                "rewriting the same contents is no change"
            );
        }
        std::fs::write(&policy, "rules: [").unwrap();
        assert!(source.changed());
        assert!(source.load().is_err());
        assert!(
            !source.changed(),
            "a rejected edit is not retried until it changes again"
        );
        std::fs::remove_dir_all(&directory).unwrap();
    }
}
