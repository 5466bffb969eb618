"""Testcontainers for Python against Skiff: a DockerContainer running busybox
httpd with port 8080 exposed, its mapped port read with get_exposed_port,
GET / from the host. Environment: DOCKER_HOST, SKIFF_IMAGE (present in the
engine: nothing is pulled), TESTCONTAINERS_RYUK_DISABLED=true and
TESTCONTAINERS_HOST_OVERRIDE=localhost (set by the test). Prints the body
on stdout; exits non-zero with a message on any failure."""
import os
import sys
from importlib.metadata import version

from testcontainers.core.container import DockerContainer

import serving

BODY = "hello from testcontainers-python"


def fail(msg):
    serving.fail("testcontainers_py", msg)


def main():
    image = os.environ.get("SKIFF_IMAGE") or fail("SKIFF_IMAGE not set")
    print(f"testcontainers_py: testcontainers {version('testcontainers')}, docker {version('docker')}", file=sys.stderr)
    cmd = serving.httpd(BODY)
    with DockerContainer(image).with_command(cmd).with_exposed_ports(8080) as c:
        host = c.get_container_host_ip()
        port = int(c.get_exposed_port(8080))
        print(f"testcontainers_py: 8080 -> {host}:{port}", file=sys.stderr)
        if port == 8080:
            fail("get_exposed_port gave the container port, not a mapped one (in-container mode?)")
        status, body = serving.get("testcontainers_py", f"http://{host}:{port}/")
        if status != 200 or BODY not in body:
            fail(f"GET / gave {status} {body!r}")
        print(body.strip())


if __name__ == "__main__":
    serving.run("testcontainers_py", main)
