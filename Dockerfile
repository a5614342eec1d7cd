# Multi-stage build: compile with the Rust toolchain (libclang is needed by the
# SQL parser's build), run from a slim Debian image as a non-root user.
#
#   docker build -t pg-tenant-proxy .                        # the proxy (last stage)
#   docker build --target demo-client -t pgtp-demo-client .  # + psql, for docker-compose.yml
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libclang1-14 libclang-common-14-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin pg-tenant-proxy

# The one-shot client of docker-compose.yml: the same binary (to mint tokens
# with `pg-tenant-proxy token`) and psql. Not for production.
FROM debian:bookworm-slim AS demo-client
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin pgtp
COPY --from=build /src/target/release/pg-tenant-proxy /usr/local/bin/pg-tenant-proxy
USER 10001:10001
ENTRYPOINT ["/bin/sh"]

# The proxy image (default target).
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin pgtp
COPY --from=build /src/target/release/pg-tenant-proxy /usr/local/bin/pg-tenant-proxy
COPY config/pg-tenant-proxy.toml /etc/pg-tenant-proxy/pg-tenant-proxy.toml
USER 10001:10001
# 6432: clients. 9187: the admin listener (/healthz, /readyz, /metrics). It
# listens on all interfaces so that orchestrator probes reach it; keep the
# port off public networks, or set PGTP_ADMIN_LISTEN=127.0.0.1:9187 to keep it
# inside the container (the HEALTHCHECK below still works, Kubernetes httpGet
# probes do not).
EXPOSE 6432 9187
ENV PGTP_LISTEN=0.0.0.0:6432 \
    PGTP_ADMIN_LISTEN=0.0.0.0:9187
# The image has no curl: the binary's hidden `healthcheck` subcommand GETs
# http://127.0.0.1:9187/healthz with hyper and exits 0 on 2xx, 1 otherwise.
# If you move the admin listener, pass --url to match.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/pg-tenant-proxy", "healthcheck", "--url", "http://127.0.0.1:9187/healthz", "--timeout", "4"]
ENTRYPOINT ["/usr/local/bin/pg-tenant-proxy"]
CMD ["serve", "--config", "/etc/pg-tenant-proxy/pg-tenant-proxy.toml"]
