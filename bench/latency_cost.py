#!/usr/bin/env python3
"""What per-stage latency timing costs at full speed (issue 12).

Runs the bulk benchmark (`run --once`, tail from the head -> frames -> spool -> file sink)
on one generated file with the timing off (`[alerts] samples_per_sec = 0`), at its default
(100 timed frames a second, then one in k), and timing every frame (a rate no pipeline
reaches), interleaved ROUNDS times (the order turning each round), and prints the CPU seconds of each run and the median
ratio to "off" within each round: the machine is shared, so compare ratios within one run.

usage: bench/latency_cost.py [--lines 2000000] [--rounds 5] [--bin PATH]
"""
import argparse, os, shutil, statistics, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

MODES = [("off", "[alerts]\nsamples_per_sec = 0\n"),
         ("default", ""),
         ("every frame", "[alerts]\nsamples_per_sec = 1000000000\n")]

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=2_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--bin", default=os.path.join(bench.ROOT, "target/release/tailbeat"))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tailbeat-latcost-") as tmp:
        logs = os.path.join(tmp, "logs"); os.makedirs(logs)
        src = os.path.join(logs, "app.log")
        bench.gen(src, a.lines)
        cpu = {m: [] for m, _ in MODES}
        ratios = {m: [] for m, _ in MODES}
        for r in range(a.rounds):
            this = {}
            # The order turns each round: no mode always runs first (cold caches) or last.
            for mode, extra in MODES[r % 3:] + MODES[:r % 3]:
                d = os.path.join(tmp, "run")
                shutil.rmtree(d, ignore_errors=True); os.makedirs(d)
                # spool fsync off: the disk's waits are not the CPU this is about.
                cfg = bench.config(d, src, extra=extra)
                with open(cfg) as f:
                    text = f.read()
                text = text.replace('segment_bytes = "16MiB"', 'segment_bytes = "16MiB"\nfsync = false')
                with open(cfg, "w") as f:
                    f.write(text)
                wall, c, rss, thr = bench.run_once(a.bin, cfg)
                cpu[mode].append(c); this[mode] = c
                print(f"round {r + 1} {mode:12} wall {wall:.2f} s, CPU {c:.2f} s, peak RSS {rss / 1024:.1f} MiB", flush=True)
            for mode, _ in MODES:
                ratios[mode].append(this[mode] / this["off"])
        print("\n| timing | CPU s (median of %d) | CPU / off, median of the rounds' ratios |" % a.rounds)
        print("|---|---|---|")
        for mode, _ in MODES:
            print(f"| {mode} | {statistics.median(cpu[mode]):.2f} | {statistics.median(ratios[mode]):.3f} |")

if __name__ == "__main__":
    main()
