//! Field offsets of the kernel structures the capture programs read, from the running kernel's
//! BTF (/sys/kernel/btf/vmlinux). Rust eBPF has no CO-RE relocations, so the programs read
//! through offsets the agent finds here and hands over at load time; a kernel with another
//! layout gets the right offsets, not a silent misread.

use agent_common::capture::KernelLayout;

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("the BTF blob is malformed: {0}")]
    Malformed(&'static str),
    #[error("the kernel's BTF has no struct {0}")]
    NoStruct(&'static str),
    #[error("the kernel's BTF has no field {field} in struct {structure}")]
    NoField {
        structure: &'static str,
        field: &'static str,
    },
}

const MAGIC: u16 = 0xeb9f;
const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_ENUM64: u32 = 19;

struct Member {
    name_offset: u32,
    type_id: u32,
    bit_offset: u32,
}

/// Struct and union members by type id; other kinds are skipped.
struct Types<'a> {
    strings: &'a [u8],
    /// (name offset, members) for struct/union type ids; None for other kinds.
    composites: Vec<Option<(u32, Vec<Member>)>>,
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

impl<'a> Types<'a> {
    fn parse(blob: &'a [u8]) -> Result<Self, BtfError> {
        let malformed = BtfError::Malformed;
        let magic = blob.get(0..2).ok_or(malformed("too short"))?;
        if u16::from_le_bytes([magic[0], magic[1]]) != MAGIC {
            return Err(malformed("not little-endian BTF (bad magic)"));
        }
        let field = |at| u32_at(blob, at).ok_or(malformed("header cut short"));
        let header_len = field(4)? as usize;
        let (type_off, type_len) = (field(8)? as usize, field(12)? as usize);
        let (str_off, str_len) = (field(16)? as usize, field(20)? as usize);
        let section = |offset: usize, len: usize| {
            let start = header_len.checked_add(offset)?;
            blob.get(start..start.checked_add(len)?)
        };
        let types = section(type_off, type_len).ok_or(malformed("type section out of bounds"))?;
        let strings = section(str_off, str_len).ok_or(malformed("string section out of bounds"))?;
        // Type id 0 is void; ids count from 1 in section order.
        let mut composites = vec![None];
        let mut at = 0;
        while at < types.len() {
            let word =
                |index: usize| u32_at(types, at + 4 * index).ok_or(malformed("type cut short"));
            let (name_offset, info) = (word(0)?, word(1)?);
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let kind_flag = info >> 31 == 1;
            let body = at + 12;
            let trailer = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
                KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
                _ => 0,
            };
            if kind == KIND_STRUCT || kind == KIND_UNION {
                let mut members = Vec::with_capacity(vlen);
                for index in 0..vlen {
                    let member = body + 12 * index;
                    let word = |k: usize| {
                        u32_at(types, member + 4 * k).ok_or(malformed("member cut short"))
                    };
                    let offset = word(2)?;
                    members.push(Member {
                        name_offset: word(0)?,
                        type_id: word(1)?,
                        bit_offset: if kind_flag {
                            offset & 0x00ff_ffff
                        } else {
                            offset
                        },
                    });
                }
                composites.push(Some((name_offset, members)));
            } else {
                composites.push(None);
            }
            at = body + trailer;
        }
        Ok(Self {
            strings,
            composites,
        })
    }

    fn name(&self, offset: u32) -> &[u8] {
        let rest = self.strings.get(offset as usize..).unwrap_or_default();
        rest.split(|byte| *byte == 0).next().unwrap_or_default()
    }

    fn find_struct(&self, name: &'static str) -> Result<u32, BtfError> {
        self.composites
            .iter()
            .position(
                |entry| matches!(entry, Some((offset, _)) if self.name(*offset) == name.as_bytes()),
            )
            .map(|id| id as u32)
            .ok_or(BtfError::NoStruct(name))
    }

    /// Byte offset of `field` within composite `type_id`, looking into anonymous members (the
    /// kernel wraps most of sock_common's fields in anonymous unions).
    fn field_offset(&self, type_id: u32, field: &str, depth: u32) -> Option<u32> {
        let (_, members) = self.composites.get(type_id as usize)?.as_ref()?;
        for member in members {
            let name = self.name(member.name_offset);
            if name == field.as_bytes() {
                return Some(member.bit_offset / 8);
            }
            if name.is_empty()
                && depth < 4
                && let Some(inner) = self.field_offset(member.type_id, field, depth + 1)
            {
                return Some(member.bit_offset / 8 + inner);
            }
        }
        None
    }
}

/// Offsets of every field [`KernelLayout`] names, in the BTF `blob`.
pub fn kernel_layout(blob: &[u8]) -> Result<KernelLayout, BtfError> {
    let types = Types::parse(blob)?;
    let offset = |structure: &'static str, field: &'static str| {
        let id = types.find_struct(structure)?;
        types
            .field_offset(id, field, 0)
            .ok_or(BtfError::NoField { structure, field })
    };
    Ok(KernelLayout {
        task_files: offset("task_struct", "files")?,
        files_fdt: offset("files_struct", "fdt")?,
        fdtable_max_fds: offset("fdtable", "max_fds")?,
        fdtable_fd: offset("fdtable", "fd")?,
        file_private_data: offset("file", "private_data")?,
        socket_sk: offset("socket", "sk")?,
        sock_protocol: offset("sock", "sk_protocol")?,
        daddr: offset("sock_common", "skc_daddr")?,
        rcv_saddr: offset("sock_common", "skc_rcv_saddr")?,
        dport: offset("sock_common", "skc_dport")?,
        num: offset("sock_common", "skc_num")?,
        family: offset("sock_common", "skc_family")?,
        v6_daddr: offset("sock_common", "skc_v6_daddr")?,
        v6_rcv_saddr: offset("sock_common", "skc_v6_rcv_saddr")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_field_in_the_running_kernel() {
        let blob = std::fs::read(VMLINUX_BTF).expect("the kernel's BTF (capture needs it)");
        let layout = kernel_layout(&blob).expect("every field");
        // The leading fields have kept these offsets since Linux 4.x; the IPv6 ones vary with
        // the configuration, so only their order is checked.
        assert_eq!(layout.daddr, 0);
        assert_eq!(layout.rcv_saddr, 4);
        assert_eq!(layout.dport, 12);
        assert_eq!(layout.num, 14);
        assert_eq!(layout.family, 16);
        assert!(layout.v6_daddr > layout.family);
        assert_eq!(layout.v6_rcv_saddr, layout.v6_daddr + 16);
        // struct fdtable opens with max_fds, then the descriptor array.
        assert_eq!((layout.fdtable_max_fds, layout.fdtable_fd), (0, 8));
        assert!(layout.task_files > 0 && layout.sock_protocol > layout.v6_rcv_saddr);
    }

    #[test]
    fn malformed_blobs_are_errors_not_panics() {
        assert!(matches!(kernel_layout(b""), Err(BtfError::Malformed(_))));
        assert!(matches!(
            kernel_layout(&[0x9f, 0xeb, 1, 0]),
            Err(BtfError::Malformed(_))
        ));
        let mut header = vec![0x9f, 0xeb, 1, 0];
        for word in [24u32, 0, 1000, 0, 10] {
            header.extend_from_slice(&word.to_le_bytes());
        }
        assert!(matches!(
            kernel_layout(&header),
            Err(BtfError::Malformed(_))
        ));
        let mut empty = vec![0x9f, 0xeb, 1, 0];
        for word in [24u32, 0, 0, 0, 1] {
            empty.extend_from_slice(&word.to_le_bytes());
        }
        empty.push(0);
        assert!(matches!(
            kernel_layout(&empty),
            Err(BtfError::NoStruct("task_struct"))
        ));
    }
}
