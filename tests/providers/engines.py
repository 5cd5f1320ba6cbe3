#!/usr/bin/env python3
"""A provider for Quarry's exec contract (docs/providers.md) that "rents"
Docker engines on this machine: `add` starts one more dockerd on the next
free address of the list it was given, `remove` stops it. Used by the tests.

    engines.py [--fail-add] N [N ...]     (N: 5 → 127.0.0.5, /tmp/quarry-test-host-5)

Reads one JSON request on stdin, writes one JSON answer on stdout.
"""
import json
import os
import signal
import subprocess
import sys
import time

SIZES = [
    {"name": "small", "cpus": 1, "memory": 512, "price": 0.01},
    {"name": "large", "cpus": 2, "memory": 2048, "price": 0.04},
]


def answer(obj, code=0):
    print(json.dumps(obj))
    sys.exit(code)


def host_dir(n):
    return f"/tmp/quarry-test-host-{n}"


def running_pid(n):
    """The pid of engine n's dockerd, if it runs (and is really ours)."""
    try:
        pid = int(open(os.path.join(host_dir(n), "docker.pid")).read().strip())
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
    except (OSError, ValueError):
        return None
    return pid if host_dir(n) in cmdline else None


def ip(*args):
    subprocess.run(["ip", *args], capture_output=True)


def start(n):
    d = host_dir(n)
    bridge = f"qtbr{n}"
    ip("link", "del", bridge)
    subprocess.run(["rm", "-rf", d])
    os.makedirs(d)
    for args in (["link", "add", bridge, "type", "bridge"],
                 ["addr", "add", f"10.212.{n}.1/24", "dev", bridge],
                 ["link", "set", bridge, "up"]):
        r = subprocess.run(["ip", *args], capture_output=True, text=True)
        if r.returncode != 0:
            answer({"error": f"ip {' '.join(args)}: {r.stderr.strip()}"}, 1)
    sock = f"unix://{d}/docker.sock"
    log = open(os.path.join(d, "dockerd.log"), "ab")
    subprocess.Popen(
        ["dockerd", "-H", sock, "--data-root", f"{d}/data", "--exec-root", f"{d}/exec",
         "--pidfile", f"{d}/docker.pid", "--bridge", bridge, "--ip", f"127.0.0.{n}",
         "--iptables=false", "--ip-masq=false",
         "--default-address-pool", f"base=10.213.{n}.0/24,size=28"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        if subprocess.run(["docker", "-H", sock, "info"], capture_output=True).returncode == 0:
            return sock
        time.sleep(0.2)
    answer({"error": f"engine {n} did not answer within 60s (see {d}/dockerd.log)"}, 1)


def stop(n):
    pid = running_pid(n)
    if pid:
        os.kill(pid, signal.SIGTERM)
        deadline = time.time() + 30
        while time.time() < deadline and os.path.exists(f"/proc/{pid}"):
            time.sleep(0.1)
    # The bridges of its user networks, found by their routes in its pool.
    routes = subprocess.run(["ip", "-o", "route", "show"], capture_output=True, text=True).stdout
    for line in routes.splitlines():
        words = line.split()
        if words and words[0].startswith(f"10.213.{n}.") and "dev" in words:
            dev = words[words.index("dev") + 1]
            if dev.startswith("br-"):
                ip("link", "del", dev)
    ip("link", "del", f"qtbr{n}")
    subprocess.run(["rm", "-rf", host_dir(n)])


def main():
    args = sys.argv[1:]
    fail_add = "--fail-add" in args
    numbers = [int(a) for a in args if not a.startswith("--")]
    request = json.loads(sys.stdin.readline())
    action = request.get("action")
    if action == "ping":
        answer({"ok": True})
    if action == "sizes":
        answer({"sizes": SIZES})
    if action == "add":
        if fail_add:
            answer({"error": "quota exceeded: no more machines in region test"}, 1)
        size = next((s for s in SIZES if s["name"] == request["size"]), None)
        if size is None:
            answer({"error": f"no size {request['size']}"}, 1)
        free = [n for n in numbers if running_pid(n) is None]
        if not free:
            answer({"error": "every test engine is in use"}, 1)
        n = free[0]
        sock = start(n)
        answer({"id": f"engine-{n}", "docker": sock, "address": f"127.0.0.{n}",
                "memory": size["memory"], "labels": {"provider": "engines"}})
    if action == "remove":
        n = int(request["id"].removeprefix("engine-"))
        if n not in numbers:
            answer({"error": f"{request['id']} is not one of this provider's engines"}, 1)
        stop(n)
        answer({"ok": True})
    answer({"error": f"unknown action {action!r}"}, 2)


if __name__ == "__main__":
    main()
