//! One direction of a connection, put back in stream order. Capture events carry their stream
//! offset; most arrive in order, but two threads on one socket, or a lost event, break that. Bytes
//! that arrive early wait (boundedly) for what precedes them; what never arrives becomes an
//! explicit gap, never glued over.

use std::collections::BTreeMap;

/// What the reassembler hands on, in stream order.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    Bytes(&'a [u8]),
    /// This many stream bytes are missing.
    Gap(u64),
}

#[derive(Debug)]
struct Early {
    length: u64,
    payload: Vec<u8>,
    time_ns: u64,
}

#[derive(Debug)]
pub struct Reassembler {
    next: u64,
    early: BTreeMap<u64, Early>,
    early_bytes: usize,
    max_early_bytes: usize,
    given_up: u64,
}

impl Reassembler {
    /// A stream whose next byte is at `start` (0 for connections seen from their beginning).
    pub fn new(start: u64, max_early_bytes: usize) -> Self {
        Self {
            next: start,
            early: BTreeMap::new(),
            early_bytes: 0,
            max_early_bytes,
            given_up: 0,
        }
    }

    /// Bytes held waiting for earlier ones.
    pub fn held_bytes(&self) -> usize {
        self.early_bytes
    }

    /// An event covering `length` stream bytes from `offset`, of which `payload` are the first
    /// (fewer when the kernel could not capture them all).
    pub fn push(
        &mut self,
        offset: u64,
        length: u64,
        payload: &[u8],
        time_ns: u64,
        deliver: &mut dyn FnMut(Piece<'_>, u64),
    ) {
        if offset > self.next {
            self.hold(offset, length, payload, time_ns, deliver);
            return;
        }
        self.deliver_from(offset, length, payload, time_ns, deliver);
        self.drain(deliver);
    }

    /// Delivers what an event that starts at or before the next stream byte adds: nothing if it
    /// was all delivered (or declared lost) already.
    fn deliver_from(
        &mut self,
        offset: u64,
        length: u64,
        payload: &[u8],
        time_ns: u64,
        deliver: &mut dyn FnMut(Piece<'_>, u64),
    ) {
        let end = offset.saturating_add(length);
        if end <= self.next {
            return;
        }
        let new = end - self.next;
        let skip = (self.next - offset) as usize;
        let captured = payload.get(skip..).unwrap_or_default();
        let captured = captured
            .get(..captured.len().min(new as usize))
            .unwrap_or_default();
        if !captured.is_empty() {
            deliver(Piece::Bytes(captured), time_ns);
        }
        let missing = new - captured.len() as u64;
        if missing > 0 {
            deliver(Piece::Gap(missing), time_ns);
        }
        self.next = end;
    }

    fn hold(
        &mut self,
        offset: u64,
        length: u64,
        payload: &[u8],
        time_ns: u64,
        deliver: &mut dyn FnMut(Piece<'_>, u64),
    ) {
        if self.early_bytes + payload.len() > self.max_early_bytes {
            // Waiting longer would exceed the bound: what precedes the earliest held bytes is
            // declared lost, and if that is not room enough, what precedes this event too.
            self.given_up += self.skip_to_earliest(deliver);
            if offset > self.next && self.early_bytes + payload.len() > self.max_early_bytes {
                let gap = offset - self.next;
                deliver(Piece::Gap(gap), time_ns);
                self.given_up += gap;
                self.next = offset;
            }
            self.push(offset, length, payload, time_ns, deliver);
            return;
        }
        self.early_bytes += payload.len();
        let replaced = self.early.insert(
            offset,
            Early {
                length,
                payload: payload.to_vec(),
                time_ns,
            },
        );
        if let Some(replaced) = replaced {
            self.early_bytes -= replaced.payload.len();
        }
    }

    /// Declares lost what precedes the earliest held bytes and delivers from there; returns how
    /// many bytes were declared lost.
    fn skip_to_earliest(&mut self, deliver: &mut dyn FnMut(Piece<'_>, u64)) -> u64 {
        let Some((&offset, early)) = self.early.first_key_value() else {
            return 0;
        };
        let skipped = offset.saturating_sub(self.next);
        if skipped > 0 {
            deliver(Piece::Gap(skipped), early.time_ns);
            self.next = offset;
        }
        self.drain(deliver);
        skipped
    }

    fn drain(&mut self, deliver: &mut dyn FnMut(Piece<'_>, u64)) {
        while let Some(entry) = self.early.first_entry() {
            if *entry.key() > self.next {
                return;
            }
            let offset = *entry.key();
            let early = entry.remove();
            self.early_bytes -= early.payload.len();
            self.deliver_from(offset, early.length, &early.payload, early.time_ns, deliver);
        }
    }

    /// Gives up what is held, undelivered: the stream continues after the furthest byte seen.
    pub fn discard(&mut self) {
        if let Some((offset, early)) = self.early.last_key_value() {
            self.next = self.next.max(offset.saturating_add(early.length));
        }
        self.early.clear();
        self.early_bytes = 0;
    }

    /// Gives up waiting: everything held is delivered, with gaps where bytes never came (those
    /// were lost before the agent, where the kernel counts them).
    pub fn flush(&mut self, deliver: &mut dyn FnMut(Piece<'_>, u64)) {
        while !self.early.is_empty() {
            self.skip_to_earliest(deliver);
        }
    }

    /// Stream bytes declared lost because waiting for them would have held more than the bound.
    pub fn given_up(&self) -> u64 {
        self.given_up
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Pieces as owned values: bytes concatenated, gaps as runs of `None`.
    fn collect(reassembler: &mut Reassembler, events: &[(u64, u64, Vec<u8>)]) -> Vec<Option<u8>> {
        let mut stream = Vec::new();
        let mut append = |piece: Piece<'_>, _| match piece {
            Piece::Bytes(bytes) => stream.extend(known(bytes)),
            Piece::Gap(length) => stream.extend(std::iter::repeat_n(None, length as usize)),
        };
        for (offset, length, payload) in events {
            reassembler.push(*offset, *length, payload, 0, &mut append);
        }
        reassembler.flush(&mut append);
        stream
    }

    fn known(bytes: &[u8]) -> Vec<Option<u8>> {
        bytes.iter().copied().map(Some).collect()
    }

    fn event(offset: u64, bytes: &[u8]) -> (u64, u64, Vec<u8>) {
        (offset, bytes.len() as u64, bytes.to_vec())
    }

    #[test]
    fn in_order_bytes_pass_straight_through() {
        let mut stream = Reassembler::new(0, 1024);
        let out = collect(&mut stream, &[event(0, b"GET "), event(4, b"/ HTTP/1.1")]);
        assert_eq!(out, known(b"GET / HTTP/1.1"));
    }

    #[test]
    fn early_bytes_wait_for_what_precedes_them() {
        let mut stream = Reassembler::new(0, 1024);
        let out = collect(&mut stream, &[event(4, b"/ HTTP/1.1"), event(0, b"GET ")]);
        assert_eq!(out, known(b"GET / HTTP/1.1"));
    }

    #[test]
    fn truncated_events_become_gaps_of_the_right_length() {
        let mut stream = Reassembler::new(0, 1024);
        let out = collect(&mut stream, &[(0, 6, b"abc".to_vec()), event(6, b"xyz")]);
        let expected: Vec<_> = [Some(b'a'), Some(b'b'), Some(b'c'), None, None, None]
            .into_iter()
            .chain(known(b"xyz"))
            .collect();
        assert_eq!(out, expected);
    }

    #[test]
    fn bytes_that_never_come_are_a_gap_once_the_bound_is_reached() {
        let mut stream = Reassembler::new(0, 4);
        let mut pieces = Vec::new();
        for (offset, bytes) in [(10u64, &b"abcd"[..]), (14, b"efgh")] {
            stream.push(offset, bytes.len() as u64, bytes, 0, &mut |piece, _| {
                pieces.push(format!("{piece:?}"))
            });
        }
        assert_eq!(
            pieces,
            [
                "Gap(10)",
                "Bytes([97, 98, 99, 100])",
                "Bytes([101, 102, 103, 104])"
            ]
        );
        assert_eq!(stream.held_bytes(), 0);
        assert_eq!(
            stream.given_up(),
            10,
            "the bytes that never came are counted"
        );
    }

    #[test]
    fn a_connection_seen_mid_stream_starts_at_its_first_offset() {
        let mut stream = Reassembler::new(1000, 1024);
        let out = collect(&mut stream, &[event(1000, b"HTTP/1.1 200 OK\r\n")]);
        assert_eq!(out.len(), 17);
    }

    proptest! {
        /// Any order of arrival, with duplicates, gives the stream back exactly, and the held
        /// bytes never pass the bound.
        #[test]
        fn any_arrival_order_gives_the_stream_back(
            data in proptest::collection::vec(any::<u8>(), 1..400),
            cuts in proptest::collection::vec(1usize..50, 1..20),
            order in proptest::collection::vec(any::<u16>(), 20),
            duplicate in any::<bool>(),
        ) {
            let mut events = Vec::new();
            let mut at = 0;
            for cut in cuts.iter().cycle() {
                if at >= data.len() { break; }
                let end = (at + cut).min(data.len());
                events.push(event(at as u64, &data[at..end]));
                at = end;
            }
            if duplicate { events.push(events[0].clone()); }
            let mut keyed: Vec<_> = events.into_iter().enumerate()
                .map(|(index, event)| (order.get(index % order.len()).copied().unwrap_or(0), event))
                .collect();
            keyed.sort_by_key(|(key, _)| *key);
            let events: Vec<_> = keyed.into_iter().map(|(_, event)| event).collect();
            let mut stream = Reassembler::new(0, data.len());
            let out = collect(&mut stream, &events);
            prop_assert_eq!(out, known(&data));
        }

        #[test]
        fn a_small_bound_loses_bytes_only_as_gaps(
            data in proptest::collection::vec(any::<u8>(), 1..300),
            cut in 1usize..40,
            bound in 1usize..64,
        ) {
            let mut events: Vec<_> = data.chunks(cut).enumerate()
                .map(|(index, chunk)| event((index * cut) as u64, chunk)).collect();
            events.reverse();
            let mut stream = Reassembler::new(0, bound);
            let out = collect(&mut stream, &events);
            prop_assert_eq!(out.len(), data.len());
            for (seen, byte) in out.iter().zip(&data) {
                if let Some(seen) = seen { prop_assert_eq!(seen, byte); }
            }
        }
    }
}
