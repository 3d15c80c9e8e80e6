# gatehouse: multi-stage build. The runtime image holds only the binary, CA certificates and
# an unprivileged user; state (host keys, staging, audit log, local-disk data) lives in the
# /var/lib/gatehouse volume. Mount your config at /etc/gatehouse/gatehouse.toml; listen on
# 0.0.0.0 there (the built-in demo config is loopback-only and unreachable from outside).
#
#   docker build -t gatehouse .
#   docker run -v $PWD/gatehouse.toml:/etc/gatehouse/gatehouse.toml:ro -v gh-state:/var/lib/gatehouse \
#       -p 2222:2222 -p 2121:2121 -p 50000-50099:50000-50099 -p 8080:8080 gatehouse

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
# The patched libunftp (see vendor/README.md) is a path dependency: cargo fetch needs it.
COPY vendor vendor
RUN mkdir -p src adapters config \
    && echo 'fn main() {}' > src/main.rs && touch src/lib.rs adapters/mod.rs config/demo.toml \
    && cargo fetch --locked
COPY . .
RUN cargo build --release --locked --bin gatehouse \
    && strip target/release/gatehouse

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/gatehouse --shell /usr/sbin/nologin gatehouse \
    && mkdir -p /var/lib/gatehouse /etc/gatehouse \
    && chown gatehouse:gatehouse /var/lib/gatehouse
COPY --from=build /src/target/release/gatehouse /usr/local/bin/gatehouse
WORKDIR /var/lib/gatehouse
VOLUME ["/var/lib/gatehouse"]
USER gatehouse
# SFTP, FTP control, FTP passive range, HTTP
EXPOSE 2222 2121 50000-50099 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/gatehouse"]
CMD ["serve", "--config", "/etc/gatehouse/gatehouse.toml"]
