# Multi-stage build of the release binary.
#   docker build -t glimpse .
#   docker run -p 8080:8080 -e GLIMPSE_CLICKHOUSE_URL=http://clickhouse:8123 -e GLIMPSE_SITES=example.com glimpse
# The dashboard is the same image with another command:
#   docker run -p 8081:8081 -e GLIMPSE_CLICKHOUSE_URL=... -e GLIMPSE_SITES=example.com \
#     -e GLIMPSE_DASHBOARD_LISTEN=0.0.0.0:8081 -e GLIMPSE_DASHBOARD_TOKEN=<secret> glimpse dashboard
# Geo data is not baked in: mount the .mmdb files and set GLIMPSE_GEOIP_DATABASE.

FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not refetch and rebuild them.
COPY Cargo.toml Cargo.lock ./
# The test harness is a workspace member: its manifest is needed to resolve the workspace.
COPY tests/support/Cargo.toml ./tests/support/Cargo.toml
RUN mkdir -p src benches tests/support/src \
    && echo 'fn main() {}' > src/main.rs && touch src/lib.rs tests/support/src/lib.rs \
    && for b in stages load dashboard; do echo 'fn main() {}' > benches/$b.rs; done \
    && cargo build --release --locked \
    && rm -rf src benches
COPY src ./src
COPY schema ./schema
COPY lists ./lists
COPY benches ./benches
# Touch so cargo sees the real sources as newer than the placeholder build.
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin glimpse

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home glimpse \
    && mkdir -p /var/lib/glimpse/spool \
    && chown -R glimpse /var/lib/glimpse
COPY --from=build /src/target/release/glimpse /usr/local/bin/glimpse
USER glimpse
ENV GLIMPSE_LISTEN=0.0.0.0:8080
# Accepted events wait here until ClickHouse has them: mount a persistent volume, one per
# container (a second collector on the same directory refuses to start).
ENV GLIMPSE_SPOOL_DIR=/var/lib/glimpse/spool
VOLUME ["/var/lib/glimpse/spool"]
EXPOSE 8080 8081
# SIGTERM makes glimpse stop accepting and deliver its spool within the grace period; what
# ClickHouse does not take in time stays in the volume for the next start.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/glimpse"]
CMD ["serve"]
