#!/usr/bin/env python3
"""A provider for Quarry's exec contract (docs/providers.md) that "rents"
machines reached over SSH: hosts in network namespaces that the test made,
each running sshd (the HQ's key authorized) and dockerd. `add` hands out the
next free one as `"ssh": "root@10.214.0.N"` with its host key, `remove` takes
it back. What is rented is kept in STATE (one file per host), and every
`remove` is appended to STATE/removed.

    sshpool.py STATE N [N ...]     (N: 15 → 10.214.0.15, /tmp/quarry-test-ns-15)

Reads one JSON request on stdin, writes one JSON answer on stdout.
"""
import json
import os
import sys

SIZES = [
    {"name": "small", "cpus": 1, "memory": 512, "price": 0.01},
    {"name": "large", "cpus": 2, "memory": 2048, "price": 0.04},
]


def answer(obj, code=0):
    print(json.dumps(obj))
    sys.exit(code)


def main():
    state, numbers = sys.argv[1], [int(a) for a in sys.argv[2:]]
    os.makedirs(state, exist_ok=True)
    request = json.loads(sys.stdin.readline())
    action = request.get("action")
    if action == "ping":
        answer({"ok": True})
    if action == "sizes":
        answer({"sizes": SIZES})
    if action == "add":
        size = next((s for s in SIZES if s["name"] == request["size"]), None)
        if size is None:
            answer({"error": f"no size {request['size']}"}, 1)
        free = [n for n in numbers if not os.path.exists(os.path.join(state, str(n)))]
        if not free:
            answer({"error": "every test host is rented"}, 1)
        n = free[0]
        key_file = f"/tmp/quarry-test-ns-{n}/sshd/host_key.pub"
        try:
            host_key = open(key_file).read().strip()
        except OSError as e:
            answer({"error": f"host {n} has no sshd: {e}"}, 1)
        open(os.path.join(state, str(n)), "w").write(request["name"] + "\n")
        answer({"id": f"ns-{n}", "ssh": f"root@10.214.0.{n}", "host_key": host_key,
                "address": f"10.214.0.{n}", "memory": size["memory"],
                "labels": {"provider": "sshpool"}})
    if action == "remove":
        n = int(request["id"].removeprefix("ns-"))
        if n not in numbers:
            answer({"error": f"{request['id']} is not one of this provider's hosts"}, 1)
        try:
            os.remove(os.path.join(state, str(n)))
        except FileNotFoundError:
            pass
        with open(os.path.join(state, "removed"), "a") as f:
            f.write(request["id"] + "\n")
        answer({"ok": True})
    answer({"error": f"unknown action {action!r}"}, 2)


if __name__ == "__main__":
    main()
