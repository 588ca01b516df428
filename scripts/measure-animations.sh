#!/usr/bin/env bash
# Measures the `animation` variant: GIF size against the MP4's, and the time the image job
# takes, on GIFs made here from FFmpeg's synthetic sources (plus any GIF or WebP you add to
# the directory), and the ffmpeg CLI (libx264, the same preset and CRF) on the same GIFs.
#
#   scripts/measure-animations.sh [DIR]     (default: /tmp/satchel-animations)
#
# The workers crate is built at opt-level 3 (as in a release build: the dev profile leaves
# it, and the generic `image` code it instantiates, unoptimised, ten times slower) in its own
# target directory, `$CARGO_TARGET_DIR-measure` (or target-measure).
set -euo pipefail
dir="${1:-/tmp/satchel-animations}"
mkdir -p "$dir"
cd "$(dirname "$0")/.."

ff() { ffmpeg -hide_banner -loglevel error -y "$@"; }
palette="split[a][b];[a]palettegen=stats_mode=diff[p];[b][p]paletteuse=dither=bayer:bayer_scale=3"
[ -f "$dir/testsrc2.gif" ] || ff -f lavfi -i "testsrc2=s=480x270:r=15:d=6" -vf "$palette" "$dir/testsrc2.gif"
[ -f "$dir/mandelbrot.gif" ] || ff -f lavfi -i "mandelbrot=s=400x300:r=15,trim=duration=6" -vf "$palette" "$dir/mandelbrot.gif"
[ -f "$dir/cellauto.gif" ] || ff -f lavfi -i "cellauto=s=480x360:r=15:rule=110,trim=duration=6" -vf "$palette" "$dir/cellauto.gif"
[ -f "$dir/life.gif" ] || ff -f lavfi \
  -i "life=s=320x240:r=15:mold=10:death_color=#202040:life_color=#e0e040,trim=duration=8,scale=640:480:flags=neighbor" \
  -vf "$palette" "$dir/life.gif"

target="${CARGO_TARGET_DIR:-target}-measure"
SATCHEL_ANIMATIONS="$dir" CARGO_TARGET_DIR="$target" cargo run --quiet --release \
  -p satchel-workers --example measure_animations 2>&1 | grep '^|'

echo
echo "| input | ffmpeg CLI MP4 | ffmpeg CLI time |"
echo "|---|---|---|"
for gif in "$dir"/*.gif; do
  out="$(mktemp --suffix .mp4)"
  start=$(date +%s.%N)
  ff -i "$gif" -an -c:v libx264 -preset medium -crf 23 -pix_fmt yuv420p \
    -vf "scale=trunc(iw/2)*2:trunc(ih/2)*2" -movflags +faststart "$out"
  end=$(date +%s.%N)
  printf '| %s | %s KB | %.2f s |\n' "$(basename "$gif")" "$(( $(stat -c %s "$out") / 1000 ))" \
    "$(echo "$end - $start" | bc)"
  rm -f "$out"
done
