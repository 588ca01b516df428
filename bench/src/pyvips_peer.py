# The persistent-libvips peer of `satchel bench`'s photos workload: one long-lived process
# (the bench starts one per core, imgproxy's way), libvips loaded once and kept warm. It reads
# the photo's bytes once, makes the set of files satchel makes for a photo (thumbnail, preview,
# blurred, all WebP) once as a warm-up and to show their quality, then waits for the common
# start and repeats the transforms, in memory only, until the measured time is up.
#
# usage: python pyvips_peer.py PHOTO OUT_PREFIX START_AT SECONDS \
#            THUMB_EDGE THUMB_Q PREVIEW_EDGE PREVIEW_Q BLUR_EDGE BLUR_Q BLUR_SIGMA
# prints one JSON line: photos done, seconds measured, CPU seconds of this process over them,
# its peak memory, and the versions.

import json
import resource
import sys
import time

import pyvips

# The operation cache would answer a repeated thumbnail_buffer of the same bytes from memory:
# every photo must be decoded and encoded anew.
pyvips.cache_set_max(0)
pyvips.cache_set_max_mem(0)


def main():
    photo, out_prefix, start_at, seconds = sys.argv[1:5]
    start_at, seconds = float(start_at), float(seconds)
    t_edge, t_q, p_edge, p_q, b_edge, b_q = (int(a) for a in sys.argv[5:11])
    sigma = float(sys.argv[11])
    with open(photo, "rb") as f:
        data = f.read()

    def one():
        # size="down": like satchel, nothing is ever upscaled.
        thumb = pyvips.Image.thumbnail_buffer(data, t_edge, size="down")
        preview = pyvips.Image.thumbnail_buffer(data, p_edge, size="down")
        tiny = pyvips.Image.thumbnail_buffer(data, b_edge, size="down")
        blurred = tiny.gaussblur(sigma) if sigma > 0 else tiny
        return (
            thumb.webpsave_buffer(Q=t_q, keep="none"),
            preview.webpsave_buffer(Q=p_q, keep="none"),
            blurred.webpsave_buffer(Q=b_q, keep="none"),
        )

    for name, body in zip(("thumbnail", "preview", "blurred"), one()):
        with open(f"{out_prefix}{name}.webp", "wb") as f:
            f.write(body)

    late = time.time() > start_at
    while time.time() < start_at:
        time.sleep(min(0.01, max(0.0, start_at - time.time())))
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    began = time.time()
    deadline = began + seconds
    photos = 0
    while True:
        one()
        photos += 1
        if time.time() >= deadline:
            break
    ended = time.time()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    hwm_kib = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm_kib = int(line.split()[1])
    print(
        json.dumps(
            {
                "photos": photos,
                "began": began,
                "ended": ended,
                "cpu_s": cpu,
                "late": late,
                "peak_rss_kib": hwm_kib,
                "pyvips": pyvips.__version__,
                "libvips": pyvips.version_string()
                if hasattr(pyvips, "version_string")
                else "%d.%d.%d" % tuple(pyvips.version(i) for i in range(3)),
            }
        ),
        flush=True,
    )


main()
