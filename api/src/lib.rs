//! Moat's gRPC API, package `moat.v1` (proto/moat/v1/*.proto).

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("moat.v1");

    /// The encoded file descriptor set, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/moat_v1_descriptor.bin"));
}
