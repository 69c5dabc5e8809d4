//! Any input as a sequence of HPACK header blocks for one decoder: a flags byte (bit 0: the
//! decoder joined late), then blocks, each a length byte and that many bytes. Decoding never
//! panics, the table stays within its cap and each decoded list within its bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocols::http2::hpack::{Decoder, ENTRY_OVERHEAD};

const TABLE_CAP: usize = 1024;
const MAX_LIST_BYTES: usize = 2048;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let mut decoder = if flags & 1 == 1 {
        Decoder::joined_late(TABLE_CAP)
    } else {
        Decoder::new(TABLE_CAP)
    };
    while let [len, tail @ ..] = rest {
        let (block, tail) = tail.split_at(usize::from(*len).min(tail.len()));
        rest = tail;
        let Ok(list) = decoder.decode(block, MAX_LIST_BYTES) else {
            // A decoding error ends the connection; nothing after it is decoded.
            return;
        };
        let list_bytes: usize = list
            .fields
            .iter()
            .map(|field| field.name.len() + field.value.len() + ENTRY_OVERHEAD)
            .sum();
        // The bound counts decoded bytes; fields are record text, where a byte that is not UTF-8
        // becomes U+FFFD (three bytes), so their text may be up to three times as long.
        assert!(list_bytes <= 3 * MAX_LIST_BYTES);
        assert!(decoder.table_bytes() <= TABLE_CAP);
    }
});
