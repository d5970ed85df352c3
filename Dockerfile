# hookline image, used by docker-compose.yml: the gateway (the entrypoint) and the
# door-lock platform's notifier, monitor, auditor and simulator.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p hookline -p hookline-platform --bins

FROM debian:bookworm-slim
# librdkafka is linked against the system OpenSSL (Kafka TLS/SASL).
RUN apt-get update && apt-get install -y --no-install-recommends libssl3 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/hookline /src/target/release/notifier /src/target/release/monitor \
     /src/target/release/auditor /src/target/release/simulator /usr/local/bin/
COPY examples/door-lock-platform/platform.toml /etc/hookline/platform.toml
COPY rules /rules
ENV HOOKLINE_RULES=/rules HOOKLINE_DATA=/data
EXPOSE 1883
ENTRYPOINT ["hookline", "run"]
