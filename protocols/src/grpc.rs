//! gRPC over HTTP/2: the 5-byte length-prefixed message framing inside DATA payloads, the status
//! trailers and the `:path` naming (the gRPC "PROTOCOL-HTTP2" document).

/// Compressed flag (1 byte) and big-endian length (4 bytes) before every message.
const PREFIX_LEN: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// Inside a prefix, `filled` bytes of it seen.
    Prefix { filled: usize },
    /// Inside a message payload with this many bytes to go.
    Payload { remaining: u64 },
    /// A gap took bytes whose meaning we did not know: boundaries are lost for good.
    Lost,
}

/// Counts the messages of one direction of one call, however DATA frames split them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageCounter {
    position: Position,
    prefix: [u8; PREFIX_LEN],
    messages: u64,
    message_bytes: u64,
}

impl Default for MessageCounter {
    fn default() -> Self {
        Self {
            position: Position::Prefix { filled: 0 },
            prefix: [0; PREFIX_LEN],
            messages: 0,
            message_bytes: 0,
        }
    }
}

impl MessageCounter {
    /// Messages whose prefix was seen.
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// Sum of the lengths those prefixes declared.
    pub fn message_bytes(&self) -> u64 {
        self.message_bytes
    }

    /// Whether the counts are still exact (no gap hid a message boundary).
    pub fn in_sync(&self) -> bool {
        self.position != Position::Lost
    }

    /// The next bytes of the direction's body.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.position {
                Position::Lost => return,
                Position::Payload { remaining } => {
                    let taken = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len());
                    bytes = bytes.get(taken..).unwrap_or_default();
                    self.finish_payload(remaining - taken as u64);
                }
                Position::Prefix { filled } => {
                    let wanted = PREFIX_LEN - filled;
                    let taken = wanted.min(bytes.len());
                    let (head, tail) = bytes.split_at(taken);
                    if let Some(slot) = self.prefix.get_mut(filled..filled + taken) {
                        slot.copy_from_slice(head);
                    }
                    bytes = tail;
                    if taken < wanted {
                        self.position = Position::Prefix {
                            filled: filled + taken,
                        };
                    } else {
                        let [_compressed, l0, l1, l2, l3] = self.prefix;
                        let length = u64::from(u32::from_be_bytes([l0, l1, l2, l3]));
                        self.messages += 1;
                        self.message_bytes = self.message_bytes.saturating_add(length);
                        self.finish_payload(length);
                    }
                }
            }
        }
    }

    /// `len` body bytes were lost. Inside a payload of known length that costs nothing; anywhere
    /// else the framing is lost. Returns whether the counts stay exact.
    pub fn skip(&mut self, len: u64) -> bool {
        self.position = match self.position {
            Position::Payload { remaining } if len <= remaining => {
                self.finish_payload(remaining - len);
                return true;
            }
            _ if len == 0 => return self.in_sync(),
            _ => Position::Lost,
        };
        false
    }

    fn finish_payload(&mut self, remaining: u64) {
        self.position = if remaining == 0 {
            Position::Prefix { filled: 0 }
        } else {
            Position::Payload { remaining }
        };
    }
}

/// `/package.Service/Method` into its service and method; None for paths of another shape.
pub fn service_and_method(path: &str) -> Option<(String, String)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    (!service.is_empty() && !method.is_empty() && !method.contains('/'))
        .then(|| (service.to_owned(), method.to_owned()))
}

/// `grpc-status`: a decimal code.
pub fn parse_status(value: &str) -> Option<u32> {
    let value = value.trim();
    (!value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit()))
        .then(|| value.parse().ok())
        .flatten()
}

/// `grpc-message` is percent-encoded UTF-8; malformed escapes stay as they are, as the spec asks
/// of receivers.
pub fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        let escaped = (byte == b'%')
            .then(|| bytes.get(at + 1..at + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(octet) => {
                decoded.push(octet);
                at += 3;
            }
            None => {
                decoded.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn message(compressed: bool, payload: &[u8]) -> Vec<u8> {
        let mut bytes = vec![u8::from(compressed)];
        bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn counts_messages_split_anywhere() {
        let mut stream = message(false, b"hello");
        stream.extend(message(true, b""));
        stream.extend(message(false, &[7; 300]));
        for split in 0..=stream.len() {
            let mut counter = MessageCounter::default();
            counter.feed(&stream[..split]);
            counter.feed(&stream[split..]);
            assert_eq!(
                (counter.messages(), counter.message_bytes()),
                (3, 305),
                "split at {split}"
            );
        }
        let mut bytewise = MessageCounter::default();
        for byte in &stream {
            bytewise.feed(std::slice::from_ref(byte));
        }
        assert_eq!((bytewise.messages(), bytewise.message_bytes()), (3, 305));
    }

    #[test]
    fn gaps_inside_payloads_are_skipped() {
        let mut counter = MessageCounter::default();
        counter.feed(&message(false, &[1; 100])[..20]);
        assert!(counter.skip(85), "the rest of a known payload");
        counter.feed(&message(false, b"x"));
        assert_eq!(
            (
                counter.messages(),
                counter.message_bytes(),
                counter.in_sync()
            ),
            (2, 101, true)
        );
        assert!(!counter.skip(3), "a prefix is not skippable");
        counter.feed(&message(false, b"y"));
        assert_eq!(counter.messages(), 2);
        assert!(!counter.in_sync());
    }

    #[test]
    fn path_status_and_message() {
        assert_eq!(
            service_and_method("/helloworld.Greeter/SayHello"),
            Some(("helloworld.Greeter".into(), "SayHello".into()))
        );
        assert_eq!(service_and_method("/nope"), None);
        assert_eq!(service_and_method("//Method"), None);
        assert_eq!(service_and_method("/a/b/c"), None);
        assert_eq!(parse_status("14"), Some(14));
        assert_eq!(parse_status("-1"), None);
        assert_eq!(parse_status("99999999999"), None);
        assert_eq!(
            percent_decode("no%20such%20user%3A%20%C3%A9"),
            "no such user: é"
        );
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%FF"), "\u{fffd}");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_and_splits_agree(bytes in proptest::collection::vec(any::<u8>(), 0..200), split in 0usize..200) {
            let split = split.min(bytes.len());
            let mut whole = MessageCounter::default();
            whole.feed(&bytes);
            let mut parts = MessageCounter::default();
            parts.feed(&bytes[..split]);
            parts.feed(&bytes[split..]);
            prop_assert_eq!(whole, parts);
        }
    }
}
