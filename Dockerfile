# The one Lifeline image: the operator (`lifeline run`), the mover Jobs (`lifeline mover`)
# and the fence gate (`lifeline fence-gate`) all run this binary.
#
# Build stage: the release binary, built exactly as `make release` builds it.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY tests ./tests
RUN cargo build --release --locked --bin lifeline \
    && install -D -m 0755 target/release/lifeline /out/lifeline

# Run stage: glibc and CA certificates, no shell, no package manager; non-root.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/lifeline /usr/local/bin/lifeline
# `kubectl lifeline` finds the same binary under this name.
COPY --from=build /out/lifeline /usr/local/bin/kubectl-lifeline
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/lifeline"]
CMD ["run"]
