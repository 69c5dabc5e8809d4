//! Generates Moat's gRPC code from proto/moat/v1. protox compiles the .proto files in Rust, so
//! no protoc is needed; the descriptor set is kept for server reflection.

use std::path::PathBuf;

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    const FILES: [&str; 3] = [
        "../proto/moat/v1/records.proto",
        "../proto/moat/v1/ingest.proto",
        "../proto/moat/v1/query.proto",
    ];
    for file in FILES {
        println!("cargo::rerun-if-changed={file}");
    }
    let descriptors = protox::compile(FILES, ["../proto"]).context("compile proto/moat/v1")?;
    let out = PathBuf::from(std::env::var("OUT_DIR").context("OUT_DIR")?);
    std::fs::write(
        out.join("moat_v1_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )
    .context("write the descriptor set")?;
    tonic_prost_build::compile_fds(descriptors).context("generate moat.v1's code")?;
    Ok(())
}
