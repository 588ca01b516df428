# syntax=docker/dockerfile:1
# satchel: build with Debian 12's FFmpeg 5.1 and libheif 1.15 -dev packages, run on
# bookworm-slim with only their runtime libraries (libjpeg-turbo is built from the source
# turbojpeg-sys bundles, with CMake and NASM, and linked in statically). Data (store, catalog,
# generated secrets) in /var/lib/satchel.

FROM rust:1-bookworm AS builder
# Debian's stable packages only get security fixes; pinning exact versions would break the
# build at each point release without making it more reproducible than the suite already is.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        clang libclang-dev pkg-config cmake nasm \
        libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev \
        libavfilter-dev libavdevice-dev libheif-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p satchel -p satchel-bench \
    && install -m 0755 target/release/satchel target/release/satchel-transform \
        target/release/satchel-bench /usr/local/bin/

FROM debian:bookworm-slim
# Same reason as above for not pinning. curl is for the HEALTHCHECK only.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates curl \
        libavcodec59 libavformat59 libavutil57 libswscale6 libswresample4 \
        libavfilter8 libavdevice59 libheif1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 satchel \
    && useradd --system --uid 10001 --gid satchel --home-dir /var/lib/satchel \
        --no-create-home --shell /usr/sbin/nologin satchel \
    && install -d -o satchel -g satchel -m 0700 /var/lib/satchel
# satchel-transform beside satchel: every job runs in it (it alone links FFmpeg). And
# satchel-bench, so that `satchel bench` works in the image (the peers it compares with,
# ffmpeg, vips and ImageMagick, are not installed here: reported as missing).
COPY --from=builder /usr/local/bin/satchel /usr/local/bin/satchel-transform \
    /usr/local/bin/satchel-bench /usr/local/bin/
COPY presets/ /etc/satchel/presets/
ENV SATCHEL_DATA_DIR=/var/lib/satchel \
    SATCHEL_LISTEN=0.0.0.0:8080 \
    SATCHEL_PRESETS=/etc/satchel/presets/default.toml
VOLUME ["/var/lib/satchel"]
# Numeric, so that runtimes enforcing runAsNonRoot can tell it is not root.
USER 10001:10001
WORKDIR /var/lib/satchel
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["sh", "-c", "curl -fsS http://127.0.0.1:8080/healthz || exit 1"]
ENTRYPOINT ["satchel"]
CMD ["serve"]
