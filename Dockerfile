# syntax=docker/dockerfile:1
#
# tart-sync's container image.
#
#   docker build -t tart-sync .
#   docker run --rm tart-sync --help
#
# The image holds only the binary (on distroless/cc: glibc, libgcc and the CA
# certificates for https:// headscale URLs; no shell) and runs it as the
# unprivileged user "nonroot" (uid/gid 65532). By default it reads
# /etc/tart-sync/tart-sync.toml (mount yours there; every setting can also
# come from TART_SYNC_* environment variables) and serves its status page
# on port 9180. See docker-compose.example.yml for a complete setup.
#
# There is no HEALTHCHECK: the image has no shell or HTTP client to run one.
# Let the orchestrator probe GET /healthz and /readyz on port 9180 instead.

ARG RUST_VERSION=1

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# Only what the build needs: the workspace manifests and every member's
# sources (cargo loads the whole workspace). tests/packaging.rs checks that
# this list follows the members in Cargo.toml.
COPY Cargo.toml Cargo.lock ./
COPY caddy-client caddy-client
COPY tart-sync tart-sync
COPY tests tests
COPY bench bench
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p tart-sync --bin tart-sync \
    && install -D -m 0755 target/release/tart-sync /out/tart-sync

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/tart-sync /usr/local/bin/tart-sync
USER nonroot:nonroot
# In a container the status server must listen on all interfaces to be
# reachable at all; publish the port only where it should be seen.
# Listening on every address: the status server still answers only to the Host
# names localhost, 127.0.0.1, [::1] and those in TART_SYNC_STATUS_ALLOWED_HOSTS
# (comma-separated); set it to the names used to reach the status page.
ENV TART_SYNC_STATUS_LISTEN=0.0.0.0:9180
EXPOSE 9180
ENTRYPOINT ["tart-sync"]
CMD ["--config", "/etc/tart-sync/tart-sync.toml", "run"]
