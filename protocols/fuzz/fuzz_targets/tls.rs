//! Any input as the first bytes of a TLS connection, cut into pieces: operations of a byte
//! (bit 7: the server sent it, else the client; bit 6: a gap instead of data; low 6 bits: the
//! piece's length) then that many bytes. Reading the handshake never panics and never holds
//! more than its bound, and without gaps the facts do not depend on where each direction's
//! bytes were cut.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocols::tls::{MAX_HANDSHAKE_MESSAGE_BYTES, Sender, TlsObserver};

/// A handshake message being reassembled plus a partial record header, per direction.
const BOUND: usize = 2 * (MAX_HANDSHAKE_MESSAGE_BYTES + 5 + (1 << 14) + 2048);

fuzz_target!(|data: &[u8]| {
    let mut interleaved = TlsObserver::new();
    let mut pieces: Vec<(Sender, &[u8])> = Vec::new();
    let mut gaps = false;
    let mut rest = data;
    while let [operation, tail @ ..] = rest {
        let sender = if operation & 0x80 != 0 {
            Sender::Server
        } else {
            Sender::Client
        };
        if operation & 0x40 != 0 {
            interleaved.gap(sender);
            gaps = true;
            rest = tail;
            continue;
        }
        let length = usize::from(operation & 0x3f).min(tail.len());
        let (piece, after) = tail.split_at(length);
        interleaved.data(sender, piece);
        pieces.push((sender, piece));
        assert!(interleaved.buffered_bytes() <= BOUND);
        rest = after;
    }
    let _ = interleaved.facts().weaknesses();
    let _ = interleaved.facts().mutual();
    if gaps {
        return;
    }
    // The client's pieces then the server's, against each direction whole in the same order:
    // where the bytes were cut changes nothing.
    let mut cut = TlsObserver::new();
    let mut whole = TlsObserver::new();
    for sender in [Sender::Client, Sender::Server] {
        let mut bytes = Vec::new();
        for (_, piece) in pieces.iter().filter(|(from, _)| *from == sender) {
            cut.data(sender, piece);
            bytes.extend_from_slice(piece);
        }
        whole.data(sender, &bytes);
    }
    assert_eq!(cut.into_facts(), whole.into_facts());
});
