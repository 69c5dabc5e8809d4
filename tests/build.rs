//! Generates the tonic peer's code from proto/echo.proto. protox compiles the .proto file in
//! Rust, so no protoc is needed.

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    const PROTO: &str = "proto/echo.proto";
    println!("cargo::rerun-if-changed={PROTO}");
    let descriptors = protox::compile([PROTO], ["proto"]).context("compile proto/echo.proto")?;
    tonic_prost_build::compile_fds(descriptors).context("generate the Echo service's code")?;
    Ok(())
}
