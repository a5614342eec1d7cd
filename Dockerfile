# Multi-stage build: compile with the Rust toolchain (libclang is needed by the
# SQL parser's build), run from a slim Debian image as a non-root user.
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libclang1-14 libclang-common-14-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin pg-tenant-proxy

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin pgtp
COPY --from=build /src/target/release/pg-tenant-proxy /usr/local/bin/pg-tenant-proxy
COPY config/pg-tenant-proxy.toml /etc/pg-tenant-proxy/pg-tenant-proxy.toml
USER 10001:10001
EXPOSE 6432
ENV PGTP_LISTEN=0.0.0.0:6432
ENTRYPOINT ["/usr/local/bin/pg-tenant-proxy"]
CMD ["serve", "--config", "/etc/pg-tenant-proxy/pg-tenant-proxy.toml"]
