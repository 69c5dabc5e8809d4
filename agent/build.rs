//! Builds agent-ebpf for the BPF target and leaves the object in OUT_DIR, where
//! `loader.rs` embeds it. The build needs the nightly toolchain with rust-src and bpf-linker;
//! `cargo xtask setup` installs both.

use anyhow::{Context as _, anyhow};

const EBPF_PACKAGE: &str = "agent-ebpf";

fn main() -> anyhow::Result<()> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("reading the workspace metadata")?;
    let package = metadata
        .packages
        .iter()
        .find(|package| package.name.as_str() == EBPF_PACKAGE)
        .ok_or_else(|| anyhow!("package {EBPF_PACKAGE} is not in the workspace"))?;
    let root_dir = package
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent directory", package.manifest_path))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: EBPF_PACKAGE,
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        aya_build::Toolchain::Nightly,
    )
    .context(
        "building the eBPF programs failed; `cargo xtask setup` installs what the build needs \
         (nightly rust-src, bpf-linker built against LLVM 22)",
    )
}
