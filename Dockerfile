# cloakroom's container image. Two stages: a Debian bookworm Rust image
# compiles the release binary; the runtime is distroless (glibc, the CA
# bundle, /etc/passwd with nonroot = 65532; no shell, no package manager).
#
#   docker build -t cloakroom .
#   docker run -p 8443:8443 -v cloakroom-data:/data cloakroom
#
# Both bases are build arguments so that a build without a registry can
# name local images of the same kind (tests/container.rs does).
ARG RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
COPY src ./src
# The registry and target caches survive between builds on one machine;
# the binary is copied out of the cache in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin cloakroom \
 && install -D -m 0755 target/release/cloakroom /out/cloakroom \
 && install -d -m 0700 /out/data

FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="cloakroom" \
      org.opencontainers.image.description="A reverse proxy that terminates TLS and sessions in front of unmodified web applications" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/cloakroom/cloakroom"
COPY --from=build /out/cloakroom /usr/local/bin/cloakroom
# The container-ready default: HTTPS on 8443 with a certificate it makes
# for itself, the embedded store, secret and certificate under /data, the
# admin listener on the container's own loopback (for HEALTHCHECK; never
# published). Mount your own proxy.toml over it to name your app.
COPY contrib/container/proxy.toml /etc/cloakroom/proxy.toml
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
# `cloakroom check`, `cloakroom healthcheck` … read ./proxy.toml by default.
WORKDIR /etc/cloakroom
VOLUME ["/data"]
EXPOSE 8443
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/cloakroom", "healthcheck", "--config", "/etc/cloakroom/proxy.toml"]
ENTRYPOINT ["/usr/local/bin/cloakroom"]
CMD ["--config", "/etc/cloakroom/proxy.toml"]
