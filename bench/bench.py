#!/usr/bin/env python3
"""tailbeat benchmark: throughput, CPU, peak RSS, threads, wake-ups and binary size.

Runs the release binary for real on generated syslog-like files:
  1. bulk: tail N lines from the head -> frames -> spool (fsync on) -> file sink, `run --once`;
     the same at 1/30 of the size, to show that peak RSS does not follow the input;
  2. live: a writer appends L lines/s for S seconds; CPU share of one core the agent used;
  3. idle: RSS and context switches over 10 quiet seconds.
Prints a Markdown table. Figures from one run on one machine: compare ratios, not absolutes.

  4. with --mqtt: the bulk run again into the MQTT sink, against Mosquitto on loopback.

--compression none,deflate,lz4 runs the large bulk run once per codec (`batch.compression`),
in the same run, so their bytes per input byte, speed and CPU compare; without it the agent's
default is used.

usage: bench/bench.py [--lines 2000000] [--live-rate 50000] [--live-secs 10] [--bin PATH] [--mqtt]
                      [--compression CODEC[,CODEC...]]
"""
import argparse, os, random, shutil, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

def gen(path, n, seed=1):
    """Syslog-like lines, ~150 bytes each on average."""
    rnd = random.Random(seed)
    procs = ["sshd", "modbusd", "dhcpd", "kernel", "mqtt-bridge", "cron", "systemd"]
    words = ("poll slave ok timeout retry link up down usb device new high speed eth0 reading "
             "sensor value temperature humidity pressure accepted publickey from port session "
             "opened closed for user admin root gateway uplink").split()
    with open(path, "w") as f:
        buf = []
        for i in range(n):
            msg = " ".join(rnd.choice(words) for _ in range(rnd.randint(8, 22)))
            buf.append(f"Nov 22 {i // 3600 % 24:02}:{i // 60 % 60:02}:{i % 60:02} gw-0001 "
                       f"{rnd.choice(procs)}[{rnd.randint(100, 9999)}]: {i:09} {msg}\n")
            if len(buf) == 10000:
                f.write("".join(buf)); buf = []
        f.write("".join(buf))

def config(d, glob, extra="", sink=None, codec=None):
    p = os.path.join(d, "bench.toml")
    batch = f'[batch]\ncompression = "{codec}"\n' if codec else ""
    sink = sink or f'''[sink]
type = "file"
path = "{d}/out.tbf"'''
    with open(p, "w") as f:
        f.write(f'''data_dir = "{d}/data"
instance_id = "bench"
stats_interval = "60s"
{extra}
[[input]]
name = "bench"
paths = ["{glob}"]
start_at = "head"

[spool]
max_bytes = "256MiB"
segment_bytes = "16MiB"

{batch}
{sink}
''')
    return p

def threads_of(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for l in f:
                if l.startswith("Threads:"):
                    return int(l.split()[1])
    except OSError:
        return 0
    return 0

def disk_writes(pid):
    """Bytes the kernel was asked to write to the disk for `pid`: those it dirtied, less those
    it truncated or deleted before writeback (/proc/PID/io; 0 on a tmpfs)."""
    try:
        io = dict(l.split(": ") for l in open(f"/proc/{pid}/io").read().splitlines() if l)
        return int(io["write_bytes"]) - int(io["cancelled_write_bytes"])
    except (OSError, KeyError, ValueError):
        return None

def run_once(binary, cfg):
    """Runs `run --once`; returns wall s, cpu s, peak RSS KiB, max threads seen, and the bytes
    it had written to the disk as last seen (its last deletions may come after the last look,
    which only over-counts).

    Peak RSS comes from GNU time, not from wait4 here: a child forked from Python carries
    the interpreter's RSS until exec, and ru_maxrss would report that."""
    t0 = time.time()
    tf = cfg + ".time"
    p = subprocess.Popen(["/usr/bin/time", "-o", tf, "-f", "%M %U %S", binary, "run", "--once",
                          "--config", cfg], stderr=subprocess.PIPE)
    maxthr = [0]
    disk = [0]
    def watch():
        while p.poll() is None:
            try:
                kids = open(f"/proc/{p.pid}/task/{p.pid}/children").read().split()
            except OSError:
                kids = []
            for k in kids:
                maxthr[0] = max(maxthr[0], threads_of(int(k)))
                w = disk_writes(int(k))
                if w is not None:
                    disk[0] = w
            time.sleep(0.005)
    w = threading.Thread(target=watch); w.start()
    err = p.stderr.read().decode()
    p.wait()
    wall = time.time() - t0
    w.join()
    if p.returncode != 0:
        sys.exit(f"tailbeat failed:\n{err}")
    rss, user, sys_ = open(tf).read().split()[-3:]
    return wall, float(user) + float(sys_), int(rss), maxthr[0], disk[0]

def count_lines(binary, sink):
    out = subprocess.run([binary, "decode", sink], stdout=subprocess.PIPE, check=True).stdout
    return out.count(b"\n")

def cpu_of(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for l in f:
            if l.startswith(key):
                return int(l.split()[1])
    return 0

def switches(pid):
    total = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{t}/status") as f:
            for l in f:
                if l.startswith("voluntary_ctxt_switches"):
                    total += int(l.split()[1])
    return total

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=2_000_000)
    ap.add_argument("--live-rate", type=int, default=50_000)
    ap.add_argument("--live-secs", type=int, default=10)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/tailbeat"))
    ap.add_argument("--mqtt", action="store_true", help="also the bulk run into the MQTT sink (needs mosquitto)")
    ap.add_argument("--compression", default=None,
                    help="comma-separated codecs for the large bulk run (none, deflate, lz4)")
    a = ap.parse_args()
    if a.bin == ap.get_default("bin"):
        # Always: a stale binary measures old code.
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    rows = []
    tmp = tempfile.mkdtemp(prefix="tailbeat-bench-")
    try:
        # 1. bulk, large and small
        codecs = a.compression.split(",") if a.compression else [None]
        runs = [(a.lines, c) for c in codecs] + [(max(a.lines // 30, 1000), codecs[0])]
        for n, codec in runs:
            d = os.path.join(tmp, f"bulk{n}")
            log = os.path.join(d, "syslog.log")
            if not os.path.exists(log):
                os.makedirs(d)
                gen(log, n)
            size = os.path.getsize(log)
            label = f", {codec}" if codec else ""
            for fsync in ("true", "false"):
                shutil.rmtree(os.path.join(d, "data"), ignore_errors=True)
                if os.path.exists(os.path.join(d, "out.tbf")):
                    os.remove(os.path.join(d, "out.tbf"))
                cfg = config(d, log, "", codec=codec)
                if fsync == "false":
                    with open(cfg) as f:
                        text = f.read().replace('segment_bytes = "16MiB"', 'segment_bytes = "16MiB"\nfsync = false')
                    with open(cfg, "w") as f:
                        f.write(text)
                wall, cpu, rss, thr, disk = run_once(a.bin, cfg)
                got = count_lines(a.bin, os.path.join(d, "out.tbf"))
                if got != n:
                    sys.exit(f"delivered {got} lines of {n}")
                out = os.path.getsize(os.path.join(d, "out.tbf"))
                rows.append((f"bulk {n:,} lines ({size / 1e6:.0f} MB){label}, spool fsync {fsync}",
                             f"{n / wall:,.0f}", f"{size / wall / 1e6:.0f}", f"{cpu:.2f}",
                             f"{rss / 1024:.1f}", str(thr), f"{out / size:.3f}", f"{disk / out:.2f}"))
        # 4. MQTT sink against Mosquitto on loopback
        if a.mqtt:
            import socket
            with socket.socket() as so:
                so.bind(("127.0.0.1", 0)); port = so.getsockname()[1]
            d = os.path.join(tmp, "mqtt")
            os.makedirs(d)
            with open(os.path.join(d, "m.conf"), "w") as f:
                f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
            mosq = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", os.path.join(d, "m.conf")],
                                    stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            n = a.lines
            log = os.path.join(d, "syslog.log")
            gen(log, n)
            size = os.path.getsize(log)
            cfg = config(d, log, "", f'[sink]\ntype = "mqtt"\nurl = "mqtt://127.0.0.1:{port}"\nwindow = 64\n')
            wall, cpu, rss, thr, disk = run_once(a.bin, cfg)
            mosq.terminate(); mosq.wait()
            rows.append((f"bulk {n:,} lines ({size / 1e6:.0f} MB) into MQTT (mosquitto), spool fsync true",
                         f"{n / wall:,.0f}", f"{size / wall / 1e6:.0f}", f"{cpu:.2f}",
                         f"{rss / 1024:.1f}", str(thr), "-", "-"))
        # 2. live writer
        d = os.path.join(tmp, "live")
        os.makedirs(d)
        log = os.path.join(d, "live.log")
        open(log, "w").close()
        cfg = config(d, log, 'poll_interval = "1s"')
        p = subprocess.Popen([a.bin, "run", "--config", cfg], stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        rnd = random.Random(2)
        c0, t0 = cpu_of(p.pid), time.time()
        written = 0
        with open(log, "a") as f:
            while time.time() - t0 < a.live_secs:
                chunk = a.live_rate // 20
                f.write("".join(f"Nov 22 10:00:00 gw-0001 app[42]: {written + i:09} live line with some payload {rnd.random():.6f}\n" for i in range(chunk)))
                f.flush()
                written += chunk
                time.sleep(max(0, t0 + written / a.live_rate - time.time()))
        time.sleep(2.0)
        c1, t1 = cpu_of(p.pid), time.time()
        rss_live = status_kib(p.pid, "VmHWM:")
        # 3. idle
        time.sleep(3.0)
        s0, i0 = switches(p.pid), cpu_of(p.pid)
        time.sleep(10.0)
        s1, i1 = switches(p.pid), cpu_of(p.pid)
        rss_idle = status_kib(p.pid, "VmRSS:")
        thr = threads_of(p.pid)
        p.terminate(); p.wait()
        got = count_lines(a.bin, os.path.join(d, "out.tbf"))
        if got != written:
            sys.exit(f"live: delivered {got} lines of {written}")
        size = os.path.getsize(a.bin)
        print(f"tailbeat benchmark, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, binary {a.bin} ({size:,} bytes)\n")
        print("| run | lines/s | MB/s | CPU s | peak RSS MiB | threads | sink bytes / input bytes | disk writes / sink bytes |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            print("| " + " | ".join(r) + " |")
        print(f"\nlive: {a.live_rate:,} lines/s for {a.live_secs} s: {(c1 - c0) / (t1 - t0) * 100:.1f}% of one core, peak RSS {rss_live / 1024:.1f} MiB, all {written:,} lines delivered")
        print(f"idle: RSS {rss_idle / 1024:.1f} MiB, {thr} threads, {(s1 - s0) / 10:.1f} voluntary context switches/s (all threads), CPU {(i1 - i0) / 10 * 100:.2f}%")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

if __name__ == "__main__":
    main()
