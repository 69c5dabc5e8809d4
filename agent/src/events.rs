//! Drop events from the kernel's ring buffer, turned into `policy.denied` records.

use std::{net::IpAddr, os::fd::AsRawFd};

use agent_common::{
    address,
    policy::{DropEvent, FlowKey, map_names},
};
use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;

use crate::loader::{Datapath, LoadError};

/// At most this many events are read per wake-up, so a flood of drops cannot starve the rest of
/// the agent's loop; the remainder is read on the next turn.
const MAX_EVENTS_PER_READ: usize = 1024;

pub struct DropEvents {
    ring: AsyncFd<RingBufFd>,
    /// Ring-buffer records too short to be a drop event (never, from our program, but the bytes
    /// are not trusted to be): skipped and counted.
    pub malformed: u64,
}

/// Adapter so that AsyncFd can own the ring buffer.
struct RingBufFd(RingBuf<MapData>);

impl AsRawFd for RingBufFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}

impl DropEvents {
    pub fn open(datapath: &mut Datapath) -> Result<Self, LoadError> {
        let name = map_names::DROP_EVENTS;
        let ring = RingBuf::try_from(datapath.take_map(name)?)
            .map_err(|source| LoadError::MapRead { map: name, source })?;
        // SAFETY: the descriptor belongs to the RingBuf that AsyncFd now owns; it stays open for
        // as long as the registration, and nothing else closes it.
        let ring = unsafe { AsyncFd::register(RingBufFd(ring)) }.map_err(|error| {
            LoadError::EventReader {
                source: std::io::Error::from(error),
            }
        })?;
        Ok(Self { ring, malformed: 0 })
    }

    /// Waits for events and returns those available (at most [`MAX_EVENTS_PER_READ`]).
    pub async fn next_batch(&mut self) -> std::io::Result<Vec<DropEvent>> {
        loop {
            let mut guard = self.ring.readable_mut().await?;
            let ring = &mut guard.get_inner_mut().0;
            let mut events = Vec::new();
            let mut malformed = 0;
            while events.len() < MAX_EVENTS_PER_READ {
                let Some(item) = ring.next() else { break };
                match decode(&item) {
                    Some(event) => events.push(event),
                    None => malformed += 1,
                }
            }
            self.malformed += malformed;
            if events.len() < MAX_EVENTS_PER_READ {
                guard.clear_ready();
            }
            if !events.is_empty() {
                return Ok(events);
            }
        }
    }
}

/// A drop event from ring-buffer bytes; None if the bytes are too short (never, from our kernel
/// program, but the bytes are not trusted to be).
pub fn decode(bytes: &[u8]) -> Option<DropEvent> {
    if bytes.len() < size_of::<DropEvent>() {
        return None;
    }
    // SAFETY: DropEvent is #[repr(C)] plain integers, valid for any bytes; read_unaligned copes
    // with the ring buffer's alignment.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<DropEvent>()) })
}

pub fn addresses(flow: &FlowKey) -> (IpAddr, IpAddr) {
    (
        address::decode(flow.family, &flow.src),
        address::decode(flow.family, &flow.dst),
    )
}

#[cfg(test)]
mod tests {
    use agent_common::{policy::verdict_slot, xdp::FAMILY_IPV4};

    use super::*;

    fn event(family: u8, counter: u32) -> DropEvent {
        let mut flow = FlowKey {
            src: [0; 16],
            dst: [0; 16],
            src_port: 40000,
            dst_port: 5432,
            protocol: 6,
            family,
            _pad: [0; 2],
        };
        flow.src[..4].copy_from_slice(&[198, 18, 1, 10]);
        flow.dst[..4].copy_from_slice(&[198, 18, 3, 10]);
        DropEvent {
            time_ns: 7,
            flow,
            ifindex: 3,
            counter,
            slot: 1,
            _pad: 0,
        }
    }

    #[test]
    fn events_round_trip_through_bytes_and_short_input_is_refused() {
        let original = event(FAMILY_IPV4, verdict_slot::RULE_BASE + 4);
        // SAFETY: viewing a plain-integer struct as bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts((&raw const original).cast::<u8>(), size_of::<DropEvent>())
        };
        assert_eq!(decode(bytes), Some(original));
        assert_eq!(decode(&bytes[..10]), None);
        assert_eq!(decode(&[]), None);
    }

    #[test]
    fn addresses_follow_the_family() {
        let (src, dst) = addresses(&event(FAMILY_IPV4, verdict_slot::BLOCKLIST_DROP).flow);
        assert_eq!(src, "198.18.1.10".parse::<IpAddr>().unwrap());
        assert_eq!(dst, "198.18.3.10".parse::<IpAddr>().unwrap());
    }
}
