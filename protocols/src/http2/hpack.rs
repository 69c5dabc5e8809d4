//! HPACK (RFC 7541) decoding for one direction of a connection.
//!
//! A passive observer must decode every header block, kept or not, or its dynamic table drifts
//! from the peer's. When the start of that history is missing (mid-stream, after a gap) the table
//! is "lossy": entries we inserted ourselves are still right (they are the newest, and references
//! only ever reach entries the peer still holds), anything older is unknown and left out rather
//! than guessed.

use std::{collections::VecDeque, sync::Arc};

use thiserror::Error;

use super::huffman::{self, HuffmanError};
use crate::call::Header;

/// RFC 7541 section 4.1: each entry costs its name and value plus this much.
pub const ENTRY_OVERHEAD: usize = 32;
/// SETTINGS_HEADER_TABLE_SIZE before any SETTINGS says otherwise.
pub const DEFAULT_TABLE_SIZE: usize = 4096;
/// Integers past this are not lengths or indexes any sane peer sends.
const MAX_INTEGER: u64 = u32::MAX as u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HpackError {
    #[error("header block ends inside a field representation")]
    Truncated,
    #[error("integer longer than 32 bits")]
    IntegerOverflow,
    #[error("index {0} is in neither table")]
    InvalidIndex(u64),
    #[error("dynamic table size update to {size} exceeds the announced {allowed}")]
    TableSizeOverLimit { size: u64, allowed: usize },
    #[error("dynamic table size update after a header field")]
    LateTableSizeUpdate,
    #[error(transparent)]
    Huffman(#[from] HuffmanError),
}

/// RFC 7541 Appendix A.
const STATIC_TABLE: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// One decoded header block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderList {
    /// As record text: decoded straight into what the call keeps, so a field is copied once.
    pub fields: Vec<Header>,
    /// Fields past the header-list bound were decoded (for the table's sake) but not kept.
    pub truncated: bool,
    /// Fields referred to table entries we never saw; they are left out.
    pub unresolved: bool,
}

#[derive(Debug, Clone)]
struct Entry {
    /// None when it was inserted with a name from an entry we never saw.
    name: Option<EntryName>,
    value: Vec<u8>,
}

/// A dynamic entry's name: the static table's, or shared, since a block may insert the same long
/// name again and again. Neither costs an allocation when a field merely refers to it.
#[derive(Debug, Clone)]
enum EntryName {
    Static(&'static [u8]),
    Shared(Arc<[u8]>),
}

impl EntryName {
    fn bytes(&self) -> &[u8] {
        match self {
            Self::Static(name) => name,
            Self::Shared(name) => name,
        }
    }
}

impl Entry {
    /// An unknown name counts as empty: underestimating sizes only ever keeps entries longer than
    /// the peer does, which never changes what a valid reference resolves to.
    fn size(&self) -> usize {
        self.name.as_ref().map_or(0, |name| name.bytes().len()) + self.value.len() + ENTRY_OVERHEAD
    }
}

/// The decoding context of one direction.
#[derive(Debug, Clone)]
pub struct Decoder {
    table: VecDeque<Entry>,
    table_bytes: usize,
    /// Largest table size the encoder last chose, capped at `cap`.
    max_table_bytes: usize,
    /// What the decoding peer announced in SETTINGS_HEADER_TABLE_SIZE (the largest seen: which
    /// direction's bytes arrive first is only roughly known); None while the history is unknown.
    announced: Option<usize>,
    /// Memory bound: tables larger than this are kept only in part.
    cap: usize,
    /// The peer's table may hold entries ours lacks.
    lossy: bool,
}

/// A table entry as far as we know it: the name is None when only the value is.
struct Known<'a> {
    name: Option<&'a [u8]>,
    value: &'a [u8],
}

/// How a field's name arrives.
enum Name {
    Indexed(u64),
    Literal,
}

impl Decoder {
    /// A decoder that has seen the connection from its start.
    pub fn new(cap: usize) -> Self {
        Self {
            table: VecDeque::new(),
            table_bytes: 0,
            max_table_bytes: DEFAULT_TABLE_SIZE.min(cap),
            announced: Some(DEFAULT_TABLE_SIZE),
            cap,
            lossy: cap < DEFAULT_TABLE_SIZE,
        }
    }

    /// A decoder joining a connection whose earlier header blocks it did not see.
    pub fn joined_late(cap: usize) -> Self {
        let mut decoder = Self::new(cap);
        decoder.lose_state();
        decoder
    }

    /// Earlier header blocks were lost: forget the table and accept whatever sizes follow.
    pub fn lose_state(&mut self) {
        self.table.clear();
        self.table_bytes = 0;
        // Assume the largest table we can hold: keeping entries too long is harmless.
        self.max_table_bytes = self.cap;
        self.announced = None;
        self.lossy = true;
    }

    /// The decoding peer's SETTINGS_HEADER_TABLE_SIZE: the most a size update may ask for.
    pub fn announce_table_size(&mut self, size: u32) {
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if let Some(announced) = &mut self.announced {
            *announced = (*announced).max(size);
        }
    }

    /// Memory the table holds, as HPACK counts it.
    pub fn table_bytes(&self) -> usize {
        self.table_bytes
    }

    /// Decodes one complete header block, keeping fields up to `max_list_bytes` (as
    /// SETTINGS_MAX_HEADER_LIST_SIZE counts them) and updating the table for all of them.
    pub fn decode(
        &mut self,
        block: &[u8],
        max_list_bytes: usize,
    ) -> Result<HeaderList, HpackError> {
        let mut list = HeaderList {
            // Most blocks hold fewer fields; growing one field at a time would copy them again
            // and again.
            fields: Vec::with_capacity(16),
            ..HeaderList::default()
        };
        let mut list_bytes = 0usize;
        let mut input = block;
        let mut fields_seen = false;
        while let Some(&first) = input.first() {
            if first & 0x80 != 0 {
                let index = read_integer(&mut input, 7)?;
                fields_seen = true;
                match self.lookup(index)? {
                    Some(Known {
                        name: Some(name),
                        value,
                    }) => {
                        push_field(&mut list, &mut list_bytes, max_list_bytes, name, value);
                    }
                    _ => list.unresolved = true,
                }
            } else if first & 0xe0 == 0x20 {
                if fields_seen {
                    return Err(HpackError::LateTableSizeUpdate);
                }
                let size = read_integer(&mut input, 5)?;
                self.update_size(size)?;
            } else {
                // 01xxxxxx: incremental indexing; 0000xxxx: without; 0001xxxx: never indexed.
                let indexing = first & 0x40 != 0;
                let prefix = if indexing { 6 } else { 4 };
                let name = match read_integer(&mut input, prefix)? {
                    0 => Name::Literal,
                    index => Name::Indexed(index),
                };
                fields_seen = true;
                self.literal(
                    &mut input,
                    name,
                    indexing,
                    &mut list,
                    &mut list_bytes,
                    max_list_bytes,
                )?;
            }
        }
        Ok(list)
    }

    fn literal(
        &mut self,
        input: &mut &[u8],
        name: Name,
        indexing: bool,
        list: &mut HeaderList,
        list_bytes: &mut usize,
        max_list_bytes: usize,
    ) -> Result<(), HpackError> {
        let name = match name {
            Name::Literal => Some(EntryName::Shared(read_string(input)?.into())),
            Name::Indexed(index) => self.lookup_name(index)?,
        };
        let value = read_string(input)?;
        let Some(known) = &name else {
            list.unresolved = true;
            if indexing {
                self.insert(Entry { name, value });
            }
            return Ok(());
        };
        if indexing {
            push_field(list, list_bytes, max_list_bytes, known.bytes(), &value);
            self.insert(Entry { name, value });
        } else if admit(list, list_bytes, max_list_bytes, known.bytes(), &value) {
            // Not kept in the table: the decoded value becomes the field's text as it is.
            list.fields.push(Header::with_value(known.bytes(), value));
        }
        Ok(())
    }

    /// `Ok(None)`: a dynamic entry the lossy table lacks. The name is None when only the value
    /// is known.
    fn lookup(&self, index: u64) -> Result<Option<Known<'_>>, HpackError> {
        let invalid = HpackError::InvalidIndex(index);
        let position = usize::try_from(index).map_err(|_| invalid)?;
        if position == 0 {
            return Err(invalid);
        }
        if let Some((name, value)) = STATIC_TABLE.get(position - 1) {
            return Ok(Some(Known {
                name: Some(name),
                value,
            }));
        }
        match self.table.get(position - 1 - STATIC_TABLE.len()) {
            Some(entry) => Ok(Some(Known {
                name: entry.name.as_ref().map(EntryName::bytes),
                value: &entry.value,
            })),
            None if self.lossy => Ok(None),
            None => Err(invalid),
        }
    }

    fn lookup_name(&self, index: u64) -> Result<Option<EntryName>, HpackError> {
        let position = usize::try_from(index).unwrap_or(usize::MAX);
        match position.checked_sub(STATIC_TABLE.len() + 1) {
            Some(dynamic) => match self.table.get(dynamic) {
                Some(entry) => Ok(entry.name.clone()),
                None if self.lossy => Ok(None),
                None => Err(HpackError::InvalidIndex(index)),
            },
            None => {
                let static_entry = position.checked_sub(1).and_then(|at| STATIC_TABLE.get(at));
                match static_entry {
                    Some((name, _)) => Ok(Some(EntryName::Static(name))),
                    None => Err(HpackError::InvalidIndex(index)),
                }
            }
        }
    }

    fn update_size(&mut self, size: u64) -> Result<(), HpackError> {
        let wanted = usize::try_from(size).unwrap_or(usize::MAX);
        if let Some(allowed) = self.announced.filter(|allowed| wanted > *allowed) {
            return Err(HpackError::TableSizeOverLimit { size, allowed });
        }
        if wanted == 0 {
            // Every entry the peer had is gone: from here on the table is known in full.
            self.lossy = false;
        }
        if wanted > self.cap {
            self.lossy = true;
        }
        self.max_table_bytes = wanted.min(self.cap);
        self.evict_to(self.max_table_bytes);
        Ok(())
    }

    fn insert(&mut self, entry: Entry) {
        let size = entry.size();
        if size > self.max_table_bytes {
            // RFC 7541 section 4.4: an entry larger than the table empties it.
            self.table.clear();
            self.table_bytes = 0;
            return;
        }
        self.evict_to(self.max_table_bytes - size);
        self.table_bytes += size;
        self.table.push_front(entry);
    }

    fn evict_to(&mut self, bytes: usize) {
        while self.table_bytes > bytes {
            let Some(oldest) = self.table.pop_back() else {
                self.table_bytes = 0;
                return;
            };
            self.table_bytes = self.table_bytes.saturating_sub(oldest.size());
        }
    }
}

fn push_field(
    list: &mut HeaderList,
    list_bytes: &mut usize,
    max_list_bytes: usize,
    name: &[u8],
    value: &[u8],
) {
    if admit(list, list_bytes, max_list_bytes, name, value) {
        list.fields.push(Header::new(name, value));
    }
}

/// Whether a field still fits the header-list bound (counting it if so); the list is marked
/// truncated from the first that does not.
fn admit(
    list: &mut HeaderList,
    list_bytes: &mut usize,
    max_list_bytes: usize,
    name: &[u8],
    value: &[u8],
) -> bool {
    let size = name
        .len()
        .saturating_add(value.len())
        .saturating_add(ENTRY_OVERHEAD);
    match list_bytes
        .checked_add(size)
        .filter(|total| *total <= max_list_bytes)
    {
        Some(total) if !list.truncated => {
            *list_bytes = total;
            true
        }
        _ => {
            list.truncated = true;
            false
        }
    }
}

/// RFC 7541 section 5.1, with a `prefix`-bit prefix in the first octet.
fn read_integer(input: &mut &[u8], prefix: u32) -> Result<u64, HpackError> {
    let (&first, mut rest) = input.split_first().ok_or(HpackError::Truncated)?;
    let mask = (1u8 << prefix) - 1;
    let mut value = u64::from(first & mask);
    if value == u64::from(mask) {
        let mut shift = 0u32;
        loop {
            let (&byte, tail) = rest.split_first().ok_or(HpackError::Truncated)?;
            rest = tail;
            value += u64::from(byte & 0x7f) << shift;
            if value > MAX_INTEGER {
                return Err(HpackError::IntegerOverflow);
            }
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 28 {
                return Err(HpackError::IntegerOverflow);
            }
        }
    }
    *input = rest;
    Ok(value)
}

/// RFC 7541 section 5.2.
fn read_string(input: &mut &[u8]) -> Result<Vec<u8>, HpackError> {
    let huffman_coded = input.first().is_some_and(|first| first & 0x80 != 0);
    let length = read_integer(input, 7)?;
    let length = usize::try_from(length).map_err(|_| HpackError::Truncated)?;
    if length > input.len() {
        return Err(HpackError::Truncated);
    }
    let (string, rest) = input.split_at(length);
    *input = rest;
    if !huffman_coded {
        return Ok(string.to_vec());
    }
    let mut decoded = Vec::with_capacity(length);
    huffman::decode(string, &mut decoded)?;
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http2::huffman::hex;

    const NO_LIMIT: usize = usize::MAX;

    fn fields(list: &HeaderList) -> Vec<(String, String)> {
        list.fields
            .iter()
            .map(|field| (field.name.to_string(), field.value.clone()))
            .collect()
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    /// A header block in hex, the fields it decodes to, and the table size after it.
    type Vector<'a> = (&'a str, &'a [(&'a str, &'a str)], usize);

    /// Decodes `blocks` in order on one decoder, checking fields and table size after each.
    fn check_sequence(decoder: &mut Decoder, blocks: &[Vector<'_>]) {
        for (index, (block, expected, table_size)) in blocks.iter().enumerate() {
            let list = decoder
                .decode(&hex(block), NO_LIMIT)
                .expect("RFC vector decodes");
            assert_eq!(fields(&list), pairs(expected), "block {index}");
            assert!(!list.truncated && !list.unresolved);
            assert_eq!(
                decoder.table_bytes(),
                *table_size,
                "table size after block {index}"
            );
        }
    }

    #[test]
    fn rfc7541_c2_field_representations() {
        let mut decoder = Decoder::new(4096);
        check_sequence(
            &mut decoder,
            &[
                (
                    "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
                    &[("custom-key", "custom-header")],
                    55,
                ),
                (
                    "040c 2f73 616d 706c 652f 7061 7468",
                    &[(":path", "/sample/path")],
                    55,
                ),
                (
                    "1008 7061 7373 776f 7264 0673 6563 7265 74",
                    &[("password", "secret")],
                    55,
                ),
                ("82", &[(":method", "GET")], 55),
            ],
        );
    }

    const C3_C4_FIELDS: [&[(&str, &str)]; 3] = [
        &[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
        ],
        &[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
            ("cache-control", "no-cache"),
        ],
        &[
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/index.html"),
            (":authority", "www.example.com"),
            ("custom-key", "custom-value"),
        ],
    ];

    #[test]
    fn rfc7541_c3_requests_without_huffman() {
        check_sequence(
            &mut Decoder::new(4096),
            &[
                (
                    "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
                    C3_C4_FIELDS[0],
                    57,
                ),
                ("8286 84be 5808 6e6f 2d63 6163 6865", C3_C4_FIELDS[1], 110),
                (
                    "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
                    C3_C4_FIELDS[2],
                    164,
                ),
            ],
        );
    }

    #[test]
    fn rfc7541_c4_requests_with_huffman() {
        check_sequence(
            &mut Decoder::new(4096),
            &[
                (
                    "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
                    C3_C4_FIELDS[0],
                    57,
                ),
                ("8286 84be 5886 a8eb 1064 9cbf", C3_C4_FIELDS[1], 110),
                (
                    "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
                    C3_C4_FIELDS[2],
                    164,
                ),
            ],
        );
    }

    const C5_C6_FIELDS: [&[(&str, &str)]; 3] = [
        &[
            (":status", "302"),
            ("cache-control", "private"),
            ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
            ("location", "https://www.example.com"),
        ],
        &[
            (":status", "307"),
            ("cache-control", "private"),
            ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
            ("location", "https://www.example.com"),
        ],
        &[
            (":status", "200"),
            ("cache-control", "private"),
            ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
            ("location", "https://www.example.com"),
            ("content-encoding", "gzip"),
            (
                "set-cookie",
                "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
            ),
        ],
    ];

    /// C.5 and C.6 run with a 256-byte table, so entries are evicted.
    fn small_table_decoder() -> Decoder {
        let mut decoder = Decoder::new(4096);
        decoder
            .decode(&[0x3f, 0xe1, 0x01], NO_LIMIT)
            .expect("size update to 256");
        decoder
    }

    #[test]
    fn rfc7541_c5_responses_without_huffman() {
        check_sequence(
            &mut small_table_decoder(),
            &[
                (
                    "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a \
                     3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
                    C5_C6_FIELDS[0],
                    222,
                ),
                ("4803 3330 37c1 c0bf", C5_C6_FIELDS[1], 222),
                (
                    "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 \
                     677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 \
                     553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31",
                    C5_C6_FIELDS[2],
                    215,
                ),
            ],
        );
    }

    #[test]
    fn rfc7541_c6_responses_with_huffman() {
        check_sequence(
            &mut small_table_decoder(),
            &[
                (
                    "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e \
                     919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
                    C5_C6_FIELDS[0],
                    222,
                ),
                ("4883 640e ffc1 c0bf", C5_C6_FIELDS[1], 222),
                (
                    "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 \
                     821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed \
                     4ee5 b106 3d50 07",
                    C5_C6_FIELDS[2],
                    215,
                ),
            ],
        );
    }

    #[test]
    fn python_hpack_encoder_blocks_decode() {
        let text = include_str!("../../tests/data/hpack_python.txt");
        let mut decoder = Decoder::new(4096);
        let mut blocks = 0;
        for chunk in text.split("block ").skip(1) {
            let mut lines = chunk.lines();
            let block = hex(lines.next().expect("hex line"));
            let expected: Vec<(String, String)> = lines
                .map(|line| line.split_once('\t').expect("name<TAB>value"))
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect();
            let list = decoder
                .decode(&block, NO_LIMIT)
                .expect("python hpack block decodes");
            assert_eq!(fields(&list), expected, "block {blocks}");
            blocks += 1;
        }
        assert_eq!(blocks, 11);
        assert_eq!(decoder.table_bytes(), 0, "the last block cleared the table");
    }

    #[test]
    fn size_updates_follow_the_announced_limit() {
        let mut decoder = Decoder::new(65536);
        // 31 + 0x61 + (0x3f << 7): a size update to 8192.
        let to_8192 = [0x3f, 0xe1, 0x3f];
        assert!(matches!(
            decoder.decode(&to_8192, NO_LIMIT),
            Err(HpackError::TableSizeOverLimit {
                size: 8192,
                allowed: 4096
            })
        ));
        decoder.announce_table_size(8192);
        assert!(decoder.decode(&to_8192, NO_LIMIT).is_ok());
        assert_eq!(
            decoder.decode(&[0x82, 0x20], NO_LIMIT),
            Err(HpackError::LateTableSizeUpdate)
        );
    }

    #[test]
    fn oversized_tables_are_capped_and_references_past_them_unresolved() {
        let mut decoder = Decoder::new(64);
        // Two literal entries with incremental indexing: "a: b" (34 bytes) then "c: d".
        let list = decoder
            .decode(&hex("4001 6101 62 4001 6301 64"), NO_LIMIT)
            .expect("decodes");
        assert_eq!(fields(&list), pairs(&[("a", "b"), ("c", "d")]));
        assert_eq!(
            decoder.table_bytes(),
            34,
            "only the newest fits in 64 bytes"
        );
        let list = decoder.decode(&hex("be bf"), NO_LIMIT).expect("decodes");
        assert_eq!(fields(&list), pairs(&[("c", "d")]));
        assert!(
            list.unresolved,
            "the peer's 4096-byte table still holds \"a: b\""
        );
    }

    #[test]
    fn joining_late_leaves_unknown_references_empty() {
        let mut decoder = Decoder::joined_late(4096);
        let list = decoder
            .decode(&hex("82 be 7e01 78"), NO_LIMIT)
            .expect("decodes");
        assert_eq!(fields(&list), pairs(&[(":method", "GET")]));
        assert!(list.unresolved);
        // The literal above (name from unknown entry 62, value "x") was inserted at 62; a new one
        // pushes it to 63. Names of entries we inserted ourselves are known.
        let list = decoder
            .decode(&hex("4001 6101 62 be bf c0"), NO_LIMIT)
            .expect("decodes");
        assert_eq!(fields(&list), pairs(&[("a", "b"), ("a", "b")]));
        assert!(
            list.unresolved,
            "63 has an unknown name, 64 is older than what we saw"
        );
        // A size update to 0 empties the peer's table: from here on everything is known.
        decoder.decode(&[0x20], NO_LIMIT).expect("size update");
        assert_eq!(
            decoder.decode(&[0xbe], NO_LIMIT),
            Err(HpackError::InvalidIndex(62))
        );
    }

    #[test]
    fn bombs_stay_within_the_list_bound_and_keep_the_table_in_step() {
        let mut decoder = Decoder::new(4096);
        let mut block = vec![0x40, 0x01, b'k', 0x7f, 0xa1, 0x1e];
        block.extend(std::iter::repeat_n(b'v', 4000));
        block.extend(std::iter::repeat_n(0xbe, 10_000));
        // A literal after the bomb still enters the table.
        block.extend(hex("4001 6101 62"));
        let list = decoder.decode(&block, 10_000).expect("decodes");
        assert!(list.truncated);
        assert_eq!(list.fields.len(), 2, "4033 bytes each, 10000 allowed");
        assert_eq!(
            decoder.table_bytes(),
            4033 + 34,
            "both entries are in the table"
        );
        let list = decoder.decode(&[0xbe], NO_LIMIT).expect("decodes");
        assert_eq!(fields(&list), pairs(&[("a", "b")]));
    }

    #[test]
    fn malformed_blocks_are_errors() {
        let mut decoder = Decoder::new(4096);
        assert_eq!(
            decoder.decode(&[0x80], NO_LIMIT),
            Err(HpackError::InvalidIndex(0))
        );
        assert_eq!(
            decoder.decode(&[0xbe], NO_LIMIT),
            Err(HpackError::InvalidIndex(62))
        );
        assert_eq!(
            decoder.decode(&[0xff], NO_LIMIT),
            Err(HpackError::Truncated)
        );
        assert_eq!(
            decoder.decode(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], NO_LIMIT),
            Err(HpackError::IntegerOverflow)
        );
        assert_eq!(
            decoder.decode(&hex("4005 61"), NO_LIMIT),
            Err(HpackError::Truncated)
        );
        assert_eq!(
            decoder.decode(&hex("4081 00 0161"), NO_LIMIT),
            Err(HpackError::Huffman(HuffmanError::BadPadding))
        );
    }
}
