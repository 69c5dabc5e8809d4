//! Idempotent machine set-up: each step checks first and acts only on what is missing, says what
//! it did, and on failure names itself.

use std::process::Command;

use anyhow::{Context as _, bail};

use crate::shell::{self, exec, output};

const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM: &str = "llvm-config-22";

/// Debian packages, with why Moat needs each.
const DEBIAN_PACKAGES: &[(&str, &str)] = &[
    ("llvm-22-dev", "bpf-linker links eBPF objects with LLVM 22"),
    ("libpolly-22-dev", "bpf-linker's LLVM 22 link dependency"),
    ("libzstd-dev", "bpf-linker's LLVM 22 link dependency"),
    ("zlib1g-dev", "bpf-linker's LLVM 22 link dependency"),
    (
        "iproute2",
        "the testbed builds namespaces, veths and bridges with `ip`",
    ),
    ("iputils-ping", "tests and the demo send ICMP echo"),
    ("tcpdump", "tests compare the agent's counts with a capture"),
    ("util-linux", "tests drop privileges with setpriv"),
    ("procps", "the testbed sets per-namespace sysctls"),
    ("curl", "the demo's HTTP client"),
    ("bpftool", "tests check which programs are attached where"),
    ("python3", "the demo's HTTP server"),
    (
        "nginx-light",
        "capture tests' HTTP/1.1 server (keep-alive, pipelining, chunked)",
    ),
    (
        "nghttp2-client",
        "capture tests' HTTP/2 client (nghttp) and load generator (h2load)",
    ),
    ("nghttp2-server", "capture tests' HTTP/2 server (nghttpd)"),
    ("python3-grpcio", "capture tests' gRPC client and server"),
    (
        "python3-h2",
        "capture tests' HTTP/1.1 Upgrade to h2c server (nghttpd does not upgrade)",
    ),
    (
        "tshark",
        "capture tests compare records with tshark's dissection of the same traffic",
    ),
    (
        "postgresql",
        "the collector's PostgreSQL store is tested and benchmarked against throwaway servers",
    ),
    (
        "python3-venv",
        "the chart checks run in a virtualenv (target/chart-venv)",
    ),
    (
        "openssl",
        "the demo and tests make test CAs and certificates; the chart checks verify the chart's",
    ),
];

/// Peers and baselines the benchmarks run against, installed only by `cargo xtask bench`.
const BENCH_PACKAGES: &[(&str, &str)] = &[
    (
        "netsniff-ng",
        "trafgen generates the XDP benchmark's floods",
    ),
    ("nftables", "the nftables baseline"),
    ("iptables", "the iptables baseline"),
    ("ipset", "the iptables baseline's blocklist"),
    ("iperf3", "pass-path throughput"),
    ("wrk", "the capture benchmark's HTTP/1.1 load generator"),
];

/// The baseline the evaluations compare with, installed only by `cargo xtask eval`.
const EVAL_PACKAGES: &[(&str, &str)] = &[
    ("nginx", "serves the ModSecurity baseline on loopback"),
    (
        "libnginx-mod-http-modsecurity",
        "ModSecurity v3 in nginx, the detection baseline",
    ),
    (
        "modsecurity-crs",
        "the OWASP Core Rule Set the baseline runs at paranoia level 1",
    ),
];

struct Step {
    name: &'static str,
    action: fn() -> anyhow::Result<Outcome>,
}

enum Outcome {
    AlreadyDone(String),
    Done(String),
}

const STEPS: &[Step] = &[
    Step {
        name: "Debian packages",
        action: debian_packages,
    },
    Step {
        name: "nightly toolchain with rust-src",
        action: nightly_rust_src,
    },
    Step {
        name: "bpf-linker",
        action: bpf_linker,
    },
    Step {
        name: "bpffs mount",
        action: || mount("bpf", "/sys/fs/bpf"),
    },
    Step {
        name: "tracefs mount",
        action: || mount("tracefs", "/sys/kernel/tracing"),
    },
    Step {
        name: "chart checks' virtualenv",
        action: chart_venv,
    },
];

pub fn run() -> anyhow::Result<()> {
    for step in STEPS {
        let outcome =
            (step.action)().with_context(|| format!("set-up step `{}` failed", step.name))?;
        match outcome {
            Outcome::AlreadyDone(what) => eprintln!("setup: {}: ok ({what})", step.name),
            Outcome::Done(what) => eprintln!("setup: {}: {what}", step.name),
        }
    }
    Ok(())
}

fn require_root(to: &str) -> anyhow::Result<()> {
    if !shell::is_root() {
        bail!("{to} needs root; run `cargo xtask ...` as root (e.g. with sudo -E)");
    }
    Ok(())
}

/// Installs cargo-fuzz if it is missing.
pub fn cargo_fuzz() -> anyhow::Result<()> {
    if output(Command::new("cargo").args(["fuzz", "--version"])).is_some() {
        eprintln!("setup: cargo-fuzz: ok");
        return Ok(());
    }
    exec(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))
        .context("set-up step `cargo-fuzz` failed")?;
    eprintln!("setup: cargo-fuzz: installed");
    Ok(())
}

/// Installs what the benchmarks need, as `setup` does for building and testing.
pub fn bench_packages() -> anyhow::Result<()> {
    let outcome =
        install_missing(BENCH_PACKAGES).context("set-up step `benchmark packages` failed")?;
    match outcome {
        Outcome::AlreadyDone(what) => eprintln!("setup: benchmark packages: ok ({what})"),
        Outcome::Done(what) => eprintln!("setup: benchmark packages: {what}"),
    }
    Ok(())
}

/// Installs what the evaluations compare with, as `setup` does for building and testing.
pub fn eval_packages() -> anyhow::Result<()> {
    let outcome =
        install_missing(EVAL_PACKAGES).context("set-up step `evaluation packages` failed")?;
    match outcome {
        Outcome::AlreadyDone(what) => eprintln!("setup: evaluation packages: ok ({what})"),
        Outcome::Done(what) => eprintln!("setup: evaluation packages: {what}"),
    }
    Ok(())
}

fn debian_packages() -> anyhow::Result<Outcome> {
    install_missing(DEBIAN_PACKAGES)
}

fn install_missing(packages: &[(&str, &str)]) -> anyhow::Result<Outcome> {
    let missing: Vec<&str> = packages
        .iter()
        .map(|(package, _)| *package)
        .filter(|package| !debian_package_installed(package))
        .collect();
    if missing.is_empty() {
        return Ok(Outcome::AlreadyDone(format!(
            "{} installed",
            packages.len()
        )));
    }
    require_root(&format!("installing {}", missing.join(" ")))?;
    exec(Command::new("apt-get").args(["update", "-qq"]))?;
    exec(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    Ok(Outcome::Done(format!("installed {}", missing.join(" "))))
}

fn debian_package_installed(package: &str) -> bool {
    output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|status| status.trim() == "install ok installed")
}

fn nightly_rust_src() -> anyhow::Result<Outcome> {
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))
    .context(
        "no nightly toolchain: the eBPF programs build with nightly (-Z build-std); install it with \
         `rustup toolchain install nightly`",
    )?;
    if installed
        .lines()
        .any(|line| line.trim().starts_with("rust-src"))
    {
        return Ok(Outcome::AlreadyDone("rust-src present".to_owned()));
    }
    exec(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))?;
    Ok(Outcome::Done("added rust-src to nightly".to_owned()))
}

fn bpf_linker() -> anyhow::Result<Outcome> {
    let version = output(Command::new("bpf-linker").arg("--version"));
    if let Some(version) = &version
        && version.contains(BPF_LINKER_VERSION)
    {
        return Ok(Outcome::AlreadyDone(version.trim().to_owned()));
    }
    let prefix = output(Command::new(LLVM).arg("--prefix")).with_context(|| {
        format!("{LLVM} not found; the Debian packages step installs llvm-22-dev")
    })?;
    exec(
        Command::new("cargo")
            .args(["install", &format!("bpf-linker@{BPF_LINKER_VERSION}")])
            .args(["--locked", "--no-default-features", "--features", "llvm-22"])
            // Without it the build looks for libLLVM in the wrong place and fails to link -lLLVM.
            .env("LLVM_PREFIX", prefix.trim()),
    )?;
    Ok(Outcome::Done(format!(
        "built bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (was: {})",
        version.as_deref().map_or("absent", str::trim)
    )))
}

/// The virtualenv the chart checks run in (Helm through helm-python-sdk, kubernetes-validate).
pub const CHART_VENV: &str = "target/chart-venv";
/// Its pinned requirements; a copy inside the virtualenv says what it was built from.
const CHART_REQUIREMENTS: &str = "charts/tests/requirements.txt";

fn chart_venv() -> anyhow::Result<Outcome> {
    let root = shell::workspace_root();
    let venv = root.join(CHART_VENV);
    let wanted = std::fs::read_to_string(root.join(CHART_REQUIREMENTS))
        .with_context(|| format!("reading {CHART_REQUIREMENTS}"))?;
    let installed_from = venv.join("requirements.txt");
    let python = venv.join("bin/python");
    if std::fs::read_to_string(&installed_from).is_ok_and(|installed| installed == wanted)
        && python.exists()
    {
        return Ok(Outcome::AlreadyDone(format!("{CHART_VENV} as pinned")));
    }
    if !python.exists() {
        exec(
            Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .current_dir(&root),
        )?;
    }
    exec(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg("--requirement")
            .arg(root.join(CHART_REQUIREMENTS)),
    )?;
    std::fs::write(&installed_from, &wanted)
        .with_context(|| format!("writing {}", installed_from.display()))?;
    Ok(Outcome::Done(format!(
        "installed {CHART_REQUIREMENTS} into {CHART_VENV}"
    )))
}

fn mount(filesystem: &str, target: &str) -> anyhow::Result<Outcome> {
    if Command::new("mountpoint")
        .args(["-q", target])
        .status()
        .is_ok_and(|status| status.success())
    {
        return Ok(Outcome::AlreadyDone(format!("{target} mounted")));
    }
    require_root(&format!("mounting {filesystem} on {target}"))?;
    exec(Command::new("mount").args(["-t", filesystem, filesystem, target]))?;
    Ok(Outcome::Done(format!("mounted {filesystem} on {target}")))
}
