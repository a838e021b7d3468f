# syntax=docker/dockerfile:1
# Build: docker build -t stacksnap .
# Run:   docker run -e DATABASE_URL=postgres://user:pass@db/stacksnap -p 8080:8080 stacksnap

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY sim ./sim
COPY migrations ./migrations
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p stacksnap && cp target/release/stacksnap /usr/local/bin/stacksnap

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin stacksnap
COPY --from=build /usr/local/bin/stacksnap /usr/local/bin/stacksnap
USER 10001:10001
ENV STACKSNAP_LISTEN=0.0.0.0:8080 \
    STACKSNAP_LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["stacksnap", "healthcheck"]
ENTRYPOINT ["stacksnap"]
CMD ["serve"]
