# moat-collector and the moat CLI. Written and reviewed, not built by this repository's CI (no
# container engine runs there); build it from the repository root:
#   docker build -f docker/collector.Dockerfile -t moat-collector:0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# protox compiles the .proto files in Rust and rusqlite bundles SQLite: no protoc, no libsqlite.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p collector --bin moat-collector -p cli --bin moat \
 && install -D target/release/moat-collector /out/moat-collector \
 && install -D target/release/moat /out/moat

# Distroless with glibc and CA certificates (for PostgreSQL over TLS), no shell, non-root
# (uid 65532, which the chart runs it as).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/moat-collector /usr/local/bin/moat-collector
# The CLI too, for `kubectl exec deploy/moat-collector -- moat ...`.
COPY --from=build /out/moat /usr/local/bin/moat
USER 65532:65532
EXPOSE 7070
ENTRYPOINT ["/usr/local/bin/moat-collector"]
