//! Finding the TLS libraries whose functions the uprobes hook: OpenSSL's libssl.so.3 as every
//! process maps it, including processes in other mount namespaces (containers), whose copy of
//! the library is another file even where its path is the same.
//!
//! Uprobes are set on a file (an inode and an offset) and fire in every process that runs it,
//! so each distinct library file is attached once, whoever maps it and however many do. A
//! library is named by the device and inode that `/proc/PID/maps` shows for the mapping, and
//! reached through `/proc/PID/root` (the process's own view of the filesystem), or, when that
//! path leads to another file (a mount the agent cannot see through), through
//! `/proc/PID/map_files`, which leads to the mapped file itself.

use std::{
    collections::{HashMap, HashSet},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

/// File names of the libraries whose plaintext functions are hooked.
pub const TLS_LIBRARY_NAMES: &[&str] = &["libssl.so.3"];

/// Where distributions put libssl.so.3 on the host: attached at start even before any process
/// maps it, so short-lived processes started later (curl, a script) are covered from their
/// first call.
pub const HOST_LIBRARY_PATHS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/libssl.so.3",
    "/usr/lib/aarch64-linux-gnu/libssl.so.3",
    "/usr/lib64/libssl.so.3",
    "/usr/lib/libssl.so.3",
    "/lib/x86_64-linux-gnu/libssl.so.3",
    "/lib64/libssl.so.3",
];

/// A library file: its device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId {
    pub device: u64,
    pub inode: u64,
}

/// A mapping of a TLS library, read from one line of `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// `start-end` of the mapping, as `/proc/PID/map_files` names it.
    pub range: String,
    /// `major:minor` as the maps line shows it, and the inode.
    pub major: u32,
    pub minor: u32,
    pub inode: u64,
    /// The path in the process's own mount namespace.
    pub path: String,
    /// Which of [`TLS_LIBRARY_NAMES`].
    pub library: &'static str,
}

/// The TLS library mappings in the text of a `/proc/PID/maps` file (each file once). Lines that
/// do not parse are skipped: the file is the kernel's, but a process can change under us.
pub fn tls_mappings(maps: &str) -> Vec<Mapping> {
    let mut found: Vec<Mapping> = Vec::new();
    for line in maps.lines() {
        // address perms offset dev inode path
        let mut fields = line.split_ascii_whitespace();
        let (Some(range), Some(_perms), Some(_offset), Some(device), Some(inode)) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            continue;
        };
        let path: Vec<&str> = fields.collect();
        let path = path.join(" ");
        let Some(library) = TLS_LIBRARY_NAMES
            .iter()
            .find(|name| Path::new(&path).file_name().and_then(|f| f.to_str()) == Some(name))
        else {
            continue;
        };
        let Some((major, minor)) = device.split_once(':') else {
            continue;
        };
        let (Ok(major), Ok(minor), Ok(inode)) = (
            u32::from_str_radix(major, 16),
            u32::from_str_radix(minor, 16),
            inode.parse::<u64>(),
        ) else {
            continue;
        };
        if inode == 0 || found.iter().any(|known| known.inode == inode) {
            continue;
        }
        found.push(Mapping {
            range: range.to_owned(),
            major,
            minor,
            inode,
            path,
            library,
        });
    }
    found
}

/// A library file to attach to: a path that reaches it from the agent, and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Library {
    pub file: FileId,
    pub path: PathBuf,
    pub library: &'static str,
    /// The process it was found through (0: a host path).
    pub pid: u32,
}

/// The file at `path`, if it is there.
fn file_id(path: &Path) -> Option<FileId> {
    let metadata = std::fs::metadata(path).ok()?;
    Some(FileId {
        device: metadata.dev(),
        inode: metadata.ino(),
    })
}

/// The host's own copies of the libraries.
pub fn host_libraries() -> Vec<Library> {
    HOST_LIBRARY_PATHS
        .iter()
        .filter_map(|path| {
            let path = std::fs::canonicalize(path).ok()?;
            Some(Library {
                file: file_id(&path)?,
                library: TLS_LIBRARY_NAMES
                    .iter()
                    .find(|name| path.to_string_lossy().contains(*name))
                    .copied()
                    .unwrap_or(TLS_LIBRARY_NAMES[0]),
                path,
                pid: 0,
            })
        })
        .collect()
}

/// The TLS libraries process `pid` maps, as files the agent can reach. A mapping reached by
/// neither way (the process exited, or its files are out of reach) is left out.
pub fn process_libraries(pid: u32) -> Vec<Library> {
    let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return Vec::new();
    };
    tls_mappings(&maps)
        .into_iter()
        .filter_map(|mapping| {
            let through_root =
                PathBuf::from(format!("/proc/{pid}/root{}", mapping.path.trim_end()));
            let through_map_files =
                PathBuf::from(format!("/proc/{pid}/map_files/{}", mapping.range));
            [through_root, through_map_files]
                .into_iter()
                .find_map(|path| {
                    let file = file_id(&path)?;
                    // The maps line's inode is the mapped file's: a path leading elsewhere
                    // (another file mounted over it in our view) is not the one.
                    (file.inode == mapping.inode).then_some(Library {
                        file,
                        path,
                        library: mapping.library,
                        pid,
                    })
                })
        })
        .collect()
}

/// Process ids now running, from /proc.
pub fn processes() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .collect()
}

/// Which processes' maps were read, so a rescan reads mostly new ones. A new process is read on
/// each of its first [`YOUNG_SCANS`] rescans: it may exec another program after the first read
/// (a shell that becomes a server) or load its TLS library as it starts; every
/// [`FULL_RESCAN_EVERY`] rescans all are read again, for libraries loaded later (dlopen, as
/// Python's `ssl` module does).
#[derive(Debug, Default)]
pub struct Scanner {
    /// Times each process's maps were read since the last full rescan.
    scanned: HashMap<u32, u8>,
    rescans: u64,
}

/// Rescans (seconds) during which a new process's maps are read again.
pub const YOUNG_SCANS: u8 = 5;

/// Rescans between full ones (the agent rescans once a second).
pub const FULL_RESCAN_EVERY: u64 = 30;
/// Processes whose maps are read in one rescan at most: a fork storm costs bounded time; the
/// rest are read in the next rescans.
pub const MAX_PROCESSES_PER_RESCAN: usize = 4096;

impl Scanner {
    /// The libraries mapped by the processes this rescan looks at.
    pub fn rescan(&mut self, own_pid: u32) -> Vec<Library> {
        let running = processes();
        let full = self.rescans.is_multiple_of(FULL_RESCAN_EVERY);
        self.rescans += 1;
        if full {
            self.scanned.clear();
        } else {
            let alive: HashSet<u32> = running.iter().copied().collect();
            self.scanned.retain(|pid, _| alive.contains(pid));
        }
        let mut found = Vec::new();
        let mut read = 0;
        for pid in running {
            let scans = self.scanned.get(&pid).copied().unwrap_or(0);
            if pid == own_pid || scans >= YOUNG_SCANS {
                continue;
            }
            if read >= MAX_PROCESSES_PER_RESCAN {
                break;
            }
            read += 1;
            self.scanned.insert(pid, scans + 1);
            found.extend(process_libraries(pid));
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c0a00000-55d0c0a28000 r--p 00000000 08:01 1234 /usr/bin/curl
7f1c2a000000-7f1c2a01f000 r--p 00000000 08:01 393345 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f1c2a01f000-7f1c2a07a000 r-xp 0001f000 08:01 393345 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f1c2b000000-7f1c2b001000 r--p 00000000 00:2a 77 /opt/app lib/libssl.so.3
7f1c2c000000-7f1c2c001000 r--p 00000000 08:01 555 /usr/lib/x86_64-linux-gnu/libssl.so.3.bak
7f1c2d000000-7f1c2d021000 rw-p 00000000 00:00 0 [heap]
garbage line
";

    #[test]
    fn finds_each_tls_library_file_once() {
        let found = tls_mappings(MAPS);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].range, "7f1c2a000000-7f1c2a01f000");
        assert_eq!(
            (found[0].major, found[0].minor, found[0].inode),
            (8, 1, 393345)
        );
        assert_eq!(found[0].library, "libssl.so.3");
        assert_eq!(
            found[1].path, "/opt/app lib/libssl.so.3",
            "paths may hold spaces"
        );
        assert_eq!((found[1].major, found[1].minor), (0, 0x2a));
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_read_without_panicking(text in ".{0,400}") {
            let _ = tls_mappings(&text);
        }
    }
}
