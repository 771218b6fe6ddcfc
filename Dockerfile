# syntax=docker/dockerfile:1.7
#
# fleetwire container image: `docker build -t fleetwire .` (docs/deploy.md).
#
# Two stages. The builder compiles the release binary with cargo's registry, git and target
# directories in BuildKit cache mounts, so a rebuild after a source change recompiles only
# fleetwire's own crates. The runtime is Debian slim of the same release as the builder
# (the binary links against its glibc) with CA certificates, the binary, config/aws.toml at
# /etc/fleetwire/aws.toml and the health-check script. It runs as an unprivileged user.
#
# Listeners (config/aws.toml; terraform/tests/test_consistency.py keeps these in step):
#   8080  public API, SSE, live page (http.listen)
#   9090  admin: /healthz, /readyz, /metrics (admin.listen); keep it private
#   8443  Tesla Fleet Telemetry mTLS (tesla.listen, issue #9)
#
# Configuration beyond the file: FLEETWIRE_<SECTION>__<KEY> environment variables.
# Arguments after the image name are appended to `serve`, e.g. `--shutdown-limit-secs 60`.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=trixie

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY actors actors
COPY loadtest loadtest
COPY src src
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --locked --release --bin fleetwire \
    && install -D -m 0755 target/release/fleetwire /out/fleetwire

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# ca-certificates: TLS to AWS endpoints and ElastiCache. Not version-pinned on purpose: the
# suite's security updates should land at every rebuild.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 fleetwire \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/fleetwire --no-create-home \
       --shell /usr/sbin/nologin fleetwire \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/fleetwire
COPY --from=build /out/fleetwire /usr/local/bin/fleetwire
COPY --chmod=0755 docker/healthcheck /usr/local/bin/fleetwire-healthcheck
COPY --chmod=0644 config/aws.toml /etc/fleetwire/aws.toml

USER 10001:10001
WORKDIR /var/lib/fleetwire
EXPOSE 8080 9090 8443
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/fleetwire-healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/fleetwire", "serve", "--config", "/etc/fleetwire/aws.toml"]
