# syntax=docker/dockerfile:1
# gen container image: one image for `gen coordinator` and `gen worker` (k8s/, docs/kubernetes.md).
#
# Build from the repository root (the crate needs the workspace's Cargo.toml and Cargo.lock):
#
#   docker build -t gen .
#   docker run --rm gen --help
#
# The final image runs as uid 65532 (distroless "nonroot"; numeric so runAsNonRoot can check
# it): right for the coordinator and for a worker without kernel probes. A worker with probes runs as uid 0 with
# every capability dropped but BPF and PERFMON (k8s/base/worker.yaml says why).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the crate registry and build between builds (BuildKit, the default
# builder); the binary is copied out of the cached target dir in the same step.
# --locked: exactly the versions the workspace tested. The eBPF objects are committed, so
# no clang is needed.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p generator \
 && install -D -m 0755 target/release/gen /out/gen \
 && strip --strip-debug /out/gen

# glibc and libgcc only, no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/gen /usr/local/bin/gen
USER 65532:65532
# 8089: coordinator UI, API and /metrics. 9100: a worker's /metrics.
EXPOSE 8089 9100
ENTRYPOINT ["/usr/local/bin/gen"]
CMD ["--help"]
