"""Docker API behaviours, checked through docker-py as Docker's Engine API
reference describes them (https://docs.docker.com/reference/api/engine/).
Environment: DOCKER_HOST, SKIFF_IMAGE (a busybox image already loaded).
Prints one line per behaviour: `PASS name` or `FAIL name: what differed`.
Exits non-zero only when the script itself cannot run."""
import os
import struct
import sys

import docker
from docker.errors import APIError

IMAGE = os.environ["SKIFF_IMAGE"]
client = docker.from_env()
api = client.api
results = []


def check(name, ok, detail=""):
    results.append(name)
    print(f"PASS {name}" if ok else f"FAIL {name}: {detail}", flush=True)


def container_list_ports():
    """GET /containers/json: each published port with the address it is
    bound on (0.0.0.0 for all IPv4 addresses, or the address given)."""
    c = client.containers.run(IMAGE, ["sleep", "300"], detach=True, name="conf-ports",
                              ports={"8080/tcp": None, "8081/tcp": ("127.0.0.1", None)})
    try:
        listed = api.containers(filters={"id": c.id})[0]["Ports"]
        got = sorted(((p.get("IP"), p.get("PrivatePort"), p.get("Type")) for p in listed), key=str)
        want = sorted([("0.0.0.0", 8080, "tcp"), ("127.0.0.1", 8081, "tcp")], key=str)
        check("container list: published ports carry their IP", got == want, f"Ports {listed!r}")
    finally:
        c.remove(force=True)


def guarded(row, *args):
    """A row that raises fails as a whole, and the others still run."""
    try:
        row(*args)
    except Exception as e:
        check(row.__name__, False, f"{type(e).__name__}: {e}")


def main():
    guarded(container_list_ports)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # the script itself broke: say where
        print(f"conformance.py: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(2)
