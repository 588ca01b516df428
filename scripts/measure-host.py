#!/usr/bin/env python3
"""Per-job start-up cost of a transform: a job run by a kept `satchel transform --host` (one
fork per job) against `satchel transform` started afresh for each job, on the same input.

    scripts/measure-host.py [SATCHEL] [INPUT] [JOBS]

Prints the median wall time per job and the CPU per job (the host's children, and the host's
own share, from /proc/<pid>/stat) for both, and their difference: the start-up a kept host
saves. Defaults: target/release/satchel, fixtures/photo.jpg, 40 jobs.
"""
import json, os, shutil, statistics, subprocess, sys, tempfile, time

exe = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/release/satchel")
src = os.path.abspath(sys.argv[2] if len(sys.argv) > 2 else "fixtures/photo.jpg")
jobs = int(sys.argv[3]) if len(sys.argv) > 3 else 40
tick = os.sysconf("SC_CLK_TCK")
env = {"SATCHEL_LOG": "error", "MALLOC_ARENA_MAX": "2"}


def scratch(root, n):
    d = os.path.join(root, f"job-{n}")
    os.makedirs(os.path.join(d, "out"))
    shutil.copy(src, os.path.join(d, "original"))
    return os.path.join(d, "original"), os.path.join(d, "out")


def cpu_of(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    # utime, stime, cutime, cstime (fields 14-17)
    return sum(int(x) for x in f[11:15]) / tick


def hosted(root, task):
    host = subprocess.Popen([exe, "transform", "--host", "--within", root], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env=env, cwd=root)
    walls = []
    # The first job also waits for the host to start: not counted.
    for n in range(jobs + 1):
        inp, out = scratch(root, f"h{n}")
        req = {"input": inp, "out_dir": out, "memory_limit": 2 << 30, "timeout_ms": 60000,
               "task": task}
        if n == 1:
            cpu0 = cpu_of(host.pid)
        t = time.perf_counter()
        host.stdin.write((json.dumps(req) + "\n").encode()); host.stdin.flush()
        answer = json.loads(host.stdout.readline())
        report = host.stdout.read(answer["report_len"])
        assert answer["exit"] == {"ended": "exited", "code": 0}, answer
        assert task["do"] == "probe" or json.loads(report)["outcome"] == "done", report
        if n > 0:
            walls.append(time.perf_counter() - t)
    cpu = cpu_of(host.pid) - cpu0
    host.stdin.close(); host.wait()
    return statistics.median(walls), cpu / jobs


def fresh(root, args):
    walls = []
    before = os.times()
    for n in range(jobs):
        inp, out = scratch(root, f"f{n}")
        t = time.perf_counter()
        p = subprocess.run([exe, "transform", *args, "--out", out, inp],
                           stdout=subprocess.PIPE, env=env, cwd=out, check=True)
        assert args == ["--probe"] or json.loads(p.stdout)["outcome"] == "done"
        walls.append(time.perf_counter() - t)
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return statistics.median(walls), cpu / jobs


print(f"{jobs} jobs each; wall is the median per job, CPU the mean")
with tempfile.TemporaryDirectory() as root:
    for name, task, args in [
        (f"image job on {os.path.basename(src)}", {"do": "transform", "kind": "image"}, ["--kind", "image"]),
        ("empty job (the sandbox probe)", {"do": "probe", "open": [], "connect": None, "neighbour": None}, ["--probe"]),
    ]:
        sub = tempfile.mkdtemp(dir=root)
        hw, hc = hosted(sub, task)
        fw, fc = fresh(sub, args)
        print(name)
        print(f"  kept host (fork per job): {hw*1e3:7.1f} ms wall  {hc*1e3:7.1f} ms CPU")
        print(f"  fresh process per job   : {fw*1e3:7.1f} ms wall  {fc*1e3:7.1f} ms CPU")
        print(f"  saved per job           : {(fw-hw)*1e3:7.1f} ms wall  {(fc-hc)*1e3:7.1f} ms CPU")
