#!/usr/bin/env python3
"""vips' WebP at satchel's variant sizes, the peer in examples/webp_table.rs.

usage: vips_webp.py INPUT OUT_DIR NAME RUNS EDGE:Q[,Q...] [EDGE:Q...]

For each EDGE, thumbnails INPUT as vips does (`thumbnail_buffer`, shrink-on-load, autorotate)
never upscaling, as satchel does) and saves it with `webpsave_buffer(Q=q)` at libvips' default
effort; writes OUT_DIR/NAME-EDGE-qQ.webp and prints one tab-separated line per file:
EDGE Q bytes width height median_cpu_ms median_wall_ms. The encode is timed alone, on pixels
already in memory, median of RUNS; CPU time is the whole process's, so a busy machine does
not inflate it. Needs pyvips (pip install pyvips pyvips-binary).
"""
import statistics
import sys
import time

import pyvips


def save(image, q):
    try:
        return image.webpsave_buffer(Q=q, keep="none")
    except pyvips.Error:
        return image.webpsave_buffer(Q=q, strip=True)  # libvips before 8.15


def main():
    src, out_dir, name, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    data = open(src, "rb").read()
    for spec in sys.argv[5:]:
        edge, qs = spec.split(":")
        image = pyvips.Image.thumbnail_buffer(data, int(edge), size="down").copy_memory()
        for q in (int(q) for q in qs.split(",")):
            cpu, wall = [], []
            for _ in range(runs):
                started, started_cpu = time.perf_counter(), time.process_time()
                out = save(image, q)
                cpu.append((time.process_time() - started_cpu) * 1e3)
                wall.append((time.perf_counter() - started) * 1e3)
            with open(f"{out_dir}/{name}-{edge}-q{q}.webp", "wb") as f:
                f.write(out)
            print(edge, q, len(out), image.width, image.height,
                  f"{statistics.median(cpu):.3f}", f"{statistics.median(wall):.3f}", sep="\t")
    print("libvips", pyvips.version(0), pyvips.version(1), pyvips.version(2), sep="\t",
          file=sys.stderr)


if __name__ == "__main__":
    main()
