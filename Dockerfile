# strata in a container: a release build of the binary on a slim Debian.
# Used by docker-compose.yml; build alone with `docker build -t strata .`.
FROM rust:1-bookworm AS build
WORKDIR /src
# librdkafka is built from source by rdkafka-sys (configure + make).
RUN apt-get update && apt-get install -y --no-install-recommends cmake python3 && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --bin strata && cp target/release/strata /usr/local/bin/strata

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/strata /usr/local/bin/strata
COPY deploy/ /jobs/
WORKDIR /work
ENTRYPOINT ["strata"]
CMD ["run", "/jobs/kafka_to_parquet.sql"]
