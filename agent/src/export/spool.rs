//! The on-disk spool (`--spool-dir`): where records go when the in-memory queue is full, so that
//! a long collector outage loses nothing until the spool's size cap. Segment files of
//! length-delimited protobuf records, written in order and read back oldest first; a spool left
//! by an earlier agent is picked up on start.

use std::{
    collections::VecDeque,
    fs::{File, OpenOptions},
    io::{BufWriter, Write as _},
    path::{Path, PathBuf},
};

use moat_api::v1::Record;
use prost::Message as _;

/// A segment is closed and a new one started past this size.
const SEGMENT_BYTES: u64 = 4 << 20;
const SUFFIX: &str = ".spool";

#[derive(Debug, thiserror::Error)]
#[error("spool {path}: {source}")]
pub struct SpoolError {
    path: PathBuf,
    source: std::io::Error,
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// Closed segments, oldest first, with their sizes.
    closed: VecDeque<(PathBuf, u64)>,
    /// The segment being written.
    open: Option<(PathBuf, BufWriter<File>, u64)>,
    next_segment: u64,
    records: u64,
}

impl Spool {
    /// Opens the spool in `dir` (created if missing), taking over the segments already there.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        let error = |source| SpoolError {
            path: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(error)?;
        let mut closed: Vec<(u64, PathBuf, u64)> = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(error)? {
            let entry = entry.map_err(error)?;
            let path = entry.path();
            let Some(number) = path
                .file_name()
                .and_then(|name| name.to_str())
                .and_then(|name| name.strip_suffix(SUFFIX))
                .and_then(|number| number.parse::<u64>().ok())
            else {
                continue;
            };
            let bytes = entry.metadata().map_err(error)?.len();
            closed.push((number, path, bytes));
        }
        closed.sort_unstable_by_key(|(number, ..)| *number);
        let next_segment = closed.last().map_or(0, |(number, ..)| number + 1);
        let records = closed
            .iter()
            .map(|(_, path, _)| read_segment(path).map(|records| records.len() as u64))
            .sum::<Result<u64, SpoolError>>()?;
        Ok(Self {
            dir: dir.to_owned(),
            max_bytes,
            closed: closed
                .into_iter()
                .map(|(_, path, bytes)| (path, bytes))
                .collect(),
            open: None,
            next_segment,
            records,
        })
    }

    pub fn bytes(&self) -> u64 {
        self.closed.iter().map(|(_, bytes)| bytes).sum::<u64>()
            + self.open.as_ref().map_or(0, |(_, _, bytes)| *bytes)
    }

    /// Records waiting on disk.
    pub fn len(&self) -> u64 {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Appends a record; false when the spool is full (the caller counts the loss).
    pub fn push(&mut self, record: &Record) -> Result<bool, SpoolError> {
        let encoded = record.encode_length_delimited_to_vec();
        if self.bytes() + encoded.len() as u64 > self.max_bytes {
            return Ok(false);
        }
        if self
            .open
            .as_ref()
            .is_some_and(|(_, _, bytes)| *bytes >= SEGMENT_BYTES)
        {
            self.close_open()?;
        }
        if self.open.is_none() {
            let path = self.dir.join(format!("{:020}{SUFFIX}", self.next_segment));
            self.next_segment += 1;
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|source| SpoolError {
                    path: path.clone(),
                    source,
                })?;
            self.open = Some((path, BufWriter::new(file), 0));
        }
        if let Some((path, writer, bytes)) = &mut self.open {
            writer.write_all(&encoded).map_err(|source| SpoolError {
                path: path.clone(),
                source,
            })?;
            *bytes += encoded.len() as u64;
        }
        self.records += 1;
        Ok(true)
    }

    fn close_open(&mut self) -> Result<(), SpoolError> {
        if let Some((path, mut writer, bytes)) = self.open.take() {
            writer.flush().map_err(|source| SpoolError {
                path: path.clone(),
                source,
            })?;
            self.closed.push_back((path, bytes));
        }
        Ok(())
    }

    /// Takes the oldest segment's records out of the spool (the file is removed).
    pub fn pop_segment(&mut self) -> Result<Vec<Record>, SpoolError> {
        if self.closed.is_empty() {
            self.close_open()?;
        }
        let Some((path, _)) = self.closed.pop_front() else {
            return Ok(Vec::new());
        };
        let records = read_segment(&path)?;
        std::fs::remove_file(&path).map_err(|source| SpoolError {
            path: path.clone(),
            source,
        })?;
        self.records = self.records.saturating_sub(records.len() as u64);
        Ok(records)
    }

    /// Makes what was written durable, e.g. before the agent exits.
    pub fn flush(&mut self) -> Result<(), SpoolError> {
        if let Some((path, writer, _)) = &mut self.open {
            writer.flush().map_err(|source| SpoolError {
                path: path.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

/// A segment's records; a record cut short by a crash mid-write ends the segment.
fn read_segment(path: &Path) -> Result<Vec<Record>, SpoolError> {
    let bytes = std::fs::read(path).map_err(|source| SpoolError {
        path: path.to_owned(),
        source,
    })?;
    let mut remaining = bytes.as_slice();
    let mut records = Vec::new();
    while !remaining.is_empty() {
        match Record::decode_length_delimited(&mut remaining) {
            Ok(record) => records.push(record),
            Err(_) => break,
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use moat_api::v1::{ApiCall, RecordId, record};

    use super::*;

    fn record(sequence: u64) -> Record {
        Record {
            kind: Some(record::Kind::Call(ApiCall {
                id: Some(RecordId {
                    node: "n".into(),
                    boot: 1,
                    sequence,
                }),
                path: "/x".repeat(100),
                ..ApiCall::default()
            })),
        }
    }

    fn sequence(record: &Record) -> u64 {
        match &record.kind {
            Some(record::Kind::Call(call)) => call.id.as_ref().map_or(0, |id| id.sequence),
            _ => 0,
        }
    }

    fn directory(label: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("moat-spool-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        path
    }

    #[test]
    fn records_come_back_in_order_and_survive_a_restart() {
        let dir = directory("order");
        let mut spool = Spool::open(&dir, 1 << 20).expect("open");
        for n in 1..=50 {
            assert!(spool.push(&record(n)).expect("push"));
        }
        spool.flush().expect("flush");
        drop(spool);
        let mut spool = Spool::open(&dir, 1 << 20).expect("reopen");
        assert_eq!(spool.len(), 50);
        let mut seen = Vec::new();
        while !spool.is_empty() {
            seen.extend(spool.pop_segment().expect("pop").iter().map(sequence));
        }
        assert_eq!(seen, (1..=50).collect::<Vec<u64>>());
        assert_eq!(spool.bytes(), 0);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_full_spool_refuses_and_a_torn_record_is_dropped() {
        let dir = directory("full");
        let mut spool = Spool::open(&dir, 2_000).expect("open");
        let mut accepted = 0;
        while spool.push(&record(accepted + 1)).expect("push") {
            accepted += 1;
        }
        assert!(
            accepted > 0 && spool.bytes() <= 2_000,
            "{accepted} records, {} bytes",
            spool.bytes()
        );
        spool.flush().expect("flush");
        // A crash in the middle of a write leaves half a record at the end.
        let segment = std::fs::read_dir(&dir)
            .expect("dir")
            .flatten()
            .next()
            .expect("a segment")
            .path();
        let mut file = OpenOptions::new()
            .append(true)
            .open(&segment)
            .expect("segment");
        file.write_all(&[0x80, 0x05, 0x0a]).expect("torn write");
        drop(spool);
        let mut spool = Spool::open(&dir, 2_000).expect("reopen");
        assert_eq!(spool.pop_segment().expect("pop").len() as u64, accepted);
        let _ = std::fs::remove_dir_all(dir);
    }
}
