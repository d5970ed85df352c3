# hookline gateway image, used by docker-compose.yml.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin hookline

FROM debian:bookworm-slim
# librdkafka is linked against the system OpenSSL (Kafka TLS/SASL).
RUN apt-get update && apt-get install -y --no-install-recommends libssl3 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/hookline /usr/local/bin/hookline
COPY rules /rules
ENV HOOKLINE_RULES=/rules HOOKLINE_DATA=/data
EXPOSE 1883
ENTRYPOINT ["hookline", "run"]
