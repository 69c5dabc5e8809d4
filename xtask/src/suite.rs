//! `cargo xtask test`: the whole suite, in the order that fails fastest on the commonest mistakes.

use std::process::Command;

use anyhow::bail;

use crate::shell::{exec, is_root, workspace_root};

pub fn run() -> anyhow::Result<()> {
    if !is_root() {
        bail!(
            "the suite loads eBPF programs and builds network namespaces, so it needs root; \
             run `sudo -E cargo xtask test` (privileged tests fail rather than skip without it)"
        );
    }
    let root = workspace_root();
    let cargo = |toolchain: Option<&str>| {
        let mut command = Command::new("cargo");
        if let Some(toolchain) = toolchain {
            command.arg(toolchain);
        }
        command.current_dir(&root);
        command
    };
    exec(cargo(None).args(["fmt", "--all", "--check"]))?;
    exec(cargo(None).args([
        "clippy",
        "--workspace",
        "--exclude",
        "agent-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The kernel programs are linted for the target they run on; on the host they do not build.
    exec(cargo(Some("+nightly")).args([
        "clippy",
        "--package",
        "agent-ebpf",
        "--release",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The Helm chart, offline: rendered and linted by Helm, validated against the Kubernetes
    // schemas, and its security properties asserted (charts/tests/check_chart.py).
    exec(
        Command::new(root.join(crate::setup::CHART_VENV).join("bin/python"))
            .arg(root.join("charts/tests/check_chart.py"))
            .current_dir(&root),
    )?;
    // End-to-end tests run the agent, collector and CLI binaries: build them before the tests.
    exec(cargo(None).args([
        "build",
        "--package",
        "agent",
        "--package",
        "collector",
        "--package",
        "cli",
        "--bins",
    ]))?;
    exec(cargo(None).args(["test", "--workspace", "--exclude", "agent-ebpf"]))?;
    eprintln!("xtask: the whole suite passed");
    Ok(())
}
