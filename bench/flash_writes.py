#!/usr/bin/env python3
"""What a live trickle costs the flash: the agent's data_dir on an ext4 of its own (a loop
device, so every block the file system writes, data and journal, is counted in the loop
device's sectors written), an MQTT sink to a local Mosquitto, a writer appending one
syslog-like line (135 bytes) RATE times a second for SECS seconds.

Needs root (losetup, mount) and mosquitto. Usage:

    sudo python3 bench/flash_writes.py [--bin target/release/tailbeat] [--secs 60] [--rate 1] [--no-fsync]

Prints the bytes the file system wrote during the run, per line and per day at that rate.
"""
import argparse, os, shutil, subprocess, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/tailbeat"))
    ap.add_argument("--secs", type=int, default=60)
    ap.add_argument("--rate", type=float, default=1.0)
    ap.add_argument("--no-fsync", action="store_true", help="spool.fsync = false")
    a = ap.parse_args()
    mosq = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    w = tempfile.mkdtemp(prefix="tailbeat-flash-")
    img, mnt = os.path.join(w, "fs.img"), os.path.join(w, "mnt")
    os.makedirs(mnt)
    subprocess.run(["truncate", "-s", "256M", img], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", img], check=True)
    subprocess.run(["mount", "-o", "loop", img, mnt], check=True)
    procs = []
    try:
        dev = subprocess.run(["findmnt", "-n", "-o", "SOURCE", mnt], check=True,
                             stdout=subprocess.PIPE, text=True).stdout.strip()
        stat = f"/sys/block/{os.path.basename(dev)}/stat"
        sectors = lambda: int(open(stat).read().split()[6])
        open(os.path.join(w, "mosq.conf"), "w").write("listener 18839 127.0.0.1\nallow_anonymous true\n")
        procs.append(subprocess.Popen([mosq, "-c", os.path.join(w, "mosq.conf")], stderr=subprocess.DEVNULL))
        time.sleep(0.5)
        log = os.path.join(w, "app.log")
        open(log, "w").close()
        cfg = os.path.join(w, "t.toml")
        spool = "[spool]\nfsync = false\n" if a.no_fsync else ""
        open(cfg, "w").write(f'data_dir = "{mnt}/data"\ninstance_id = "flash"\n{spool}'
                             f'[[input]]\nname = "app"\npaths = ["{log}"]\n'
                             f'[sink]\ntype = "mqtt"\nurl = "mqtt://127.0.0.1:18839"\n')
        agent = subprocess.Popen([a.bin, "run", "--config", cfg],
                                 stderr=open(os.path.join(w, "agent.log"), "w"))
        procs.append(agent)
        time.sleep(3)
        subprocess.run(["sync", "-f", mnt + "/"])
        time.sleep(1)
        s0, t0, n = sectors(), time.time(), 0
        with open(log, "a") as f:
            while time.time() - t0 < a.secs:
                f.write(f"Dec  2 11:00:00 gw-0001 modbusd[4242]: {n:09} poll slave ok reading "
                        f"sensor value temperature 21.5 humidity 40 pressure 1013\n")
                f.flush()
                n += 1
                time.sleep(1 / a.rate)
        time.sleep(2)
        b = (sectors() - s0) * 512
        print(f"{n} lines ({n * 135} B of log) in {a.secs} s, spool fsync "
              f"{'off' if a.no_fsync else 'on'}: {b} B written by the file system "
              f"({b / n:.0f} B per line, {b / a.secs * 86400 / 1e6:.0f} MB a day)")
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait()
        subprocess.run(["umount", mnt])
        shutil.rmtree(w, ignore_errors=True)

if __name__ == "__main__":
    main()
