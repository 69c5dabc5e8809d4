# moat-agent: the node agent. Written and reviewed, not built by this repository's CI (no
# container engine runs there); build it from the repository root:
#   docker build -f docker/agent.Dockerfile -t moat-agent:0.1.0 .
#
# Stage 1 builds the kernel programs (nightly, rust-src, bpf-linker against LLVM 22, as
# `cargo xtask setup` does) and the agent that embeds them. agent/build.rs runs `cargo +nightly`,
# so the pinned nightly is linked under that name.
FROM rust:1.95-bookworm AS build
ARG NIGHTLY=nightly-2026-05-19
ARG BPF_LINKER_VERSION=0.13.0
RUN apt-get update \
 && apt-get install -y --no-install-recommends llvm-22-dev libpolly-22-dev libzstd-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
RUN rustup toolchain install "$NIGHTLY" --profile minimal --component rust-src \
 && rustup toolchain link nightly "$(rustup run "$NIGHTLY" rustc --print sysroot)" \
 && LLVM_PREFIX="$(llvm-config-22 --prefix)" cargo install "bpf-linker@$BPF_LINKER_VERSION" \
      --locked --no-default-features --features llvm-22
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p agent --bin moat-agent \
 && install -D target/release/moat-agent /out/moat-agent

# Stage 2: Debian slim rather than distroless, because the chart's init container uses its
# shell, stat and mount (util-linux) to mount bpffs and tracefs when the host has not.
# The agent runs as uid 0 with only CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN (and, for adopting
# existing connections, CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH): bpffs pins and tracefs files
# are root's, so it cannot run as another user.
FROM debian:bookworm-slim
COPY --from=build /out/moat-agent /usr/local/bin/moat-agent
ENTRYPOINT ["/usr/local/bin/moat-agent"]
