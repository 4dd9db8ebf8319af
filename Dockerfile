# The mt5-hub image: one binary, every command (`fetch`, `filter`, `run`, `gateway`,
# `alert-relay`, `streams …`, `deadletter …`, `publish`, `config check`). docker-compose.yml runs
# one service per command from it; docs/deploy.md explains the stack.
#
#   docker build -t mt5-hub:latest .
#   docker run --rm -e MT5_REDIS_URL=redis://redis-host:6379 mt5-hub:latest streams stats
#
# The build needs a registry (the base images) and crates.io (the dependencies); `cargo build
# --locked` refuses a Cargo.lock that does not match the manifests. The build context is the
# whole workspace minus what .dockerignore leaves out: every workspace member's manifest is
# needed for the workspace to load, the vendored `noxious` and `redis` patches for Cargo.lock to resolve; the
# sample news the binary embeds are mt5-news's own (news/data/sample/), and the test fixtures'
# data (fixtures/data/) stays out.

# --- build -------------------------------------------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p mt5-hub \
    && install -D -m 0755 target/release/mt5-hub /out/mt5-hub

# --- runtime -----------------------------------------------------------------------------------
FROM debian:bookworm-slim
# ca-certificates: the system roots, for rediss:// and HTTPS (EODHD, DingTalk).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 mt5 \
    && useradd --uid 10001 --gid mt5 --no-log-init --home-dir /var/lib/mt5-hub --create-home \
       --shell /usr/sbin/nologin mt5
COPY --from=build /out/mt5-hub /usr/local/bin/mt5-hub

# /metrics, /healthz, /readyz (and the gateway's and the relay's routes) listen on every
# interface of the container; docker-compose.yml gives each service its own port.
ENV MT5_HTTP_ADDR=0.0.0.0:9464
EXPOSE 9464
USER 10001:10001
WORKDIR /var/lib/mt5-hub

# Liveness: GET /healthz on the port of MT5_HTTP_ADDR, with bash's /dev/tcp (the slim image has
# no curl). /healthz answers 200 while the process runs; /readyz (Redis reachable, groups exist)
# is for readiness and alerts, not for restarts. One-shot commands (`streams stats`, …) serve no
# HTTP: run them with `--no-healthcheck` or ignore the status.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${MT5_HTTP_ADDR##*:} && printf 'GET /healthz HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]

# SIGTERM stops a service gracefully within bus.consumer.shutdown_timeout_ms (8 s by default,
# under Docker's 10 s grace).
ENTRYPOINT ["mt5-hub"]
CMD ["--help"]
