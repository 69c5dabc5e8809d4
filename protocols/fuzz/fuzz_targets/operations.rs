//! The input format every stream-parser target shares: operations, each an operation byte
//! (bit 0: direction; bits 1-3 all clear: a gap, else data), a length byte, then for data that
//! many bytes.

use protocols::{Call, Direction, StreamParser};

/// Replays `operations` into `parser` (from capture time `time_ns` on), calling `check` after
/// each, then closes it. Returns the capture time after the last operation.
pub fn replay<P: StreamParser>(
    parser: &mut P,
    mut operations: &[u8],
    mut time_ns: u64,
    calls: &mut Vec<Call>,
    mut check: impl FnMut(&mut P),
) {
    while let [operation, len, tail @ ..] = operations {
        time_ns += 1;
        let direction = if operation & 1 == 0 {
            Direction::Request
        } else {
            Direction::Response
        };
        if operation & 0b1110 == 0 {
            // Small gaps land inside bodies and heads; huge ones past everything.
            let len = u64::from(*len) << (operation >> 4);
            parser.gap(direction, len, time_ns, calls);
            operations = tail;
        } else {
            let (bytes, tail) = tail.split_at(usize::from(*len).min(tail.len()));
            parser.data(direction, bytes, time_ns, calls);
            operations = tail;
        }
        check(parser);
    }
    parser.close(time_ns, calls);
}
