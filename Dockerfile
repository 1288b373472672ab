# ansim: build in a Rust image, run in a slim Debian.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY config ./config
RUN cargo build --release --locked --bin ansim

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home-dir /var/lib/ansim --create-home ansim
COPY --from=build /src/target/release/ansim /usr/local/bin/ansim
WORKDIR /var/lib/ansim
USER ansim
# SIP (UDP/TCP), HTTP API, RTP range.
EXPOSE 5060/udp 5060/tcp 8080/tcp 20000-20999/udp
ENTRYPOINT ["ansim"]
CMD ["serve", "--config", "/etc/ansim/ansim.toml"]
