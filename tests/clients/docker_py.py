"""docker-py against Skiff: run busybox httpd with port 8080 published on a
host port the engine picks, read that port back, GET / from the host, then
stop and remove. Environment: DOCKER_HOST, SKIFF_IMAGE. Prints the body on
stdout; exits non-zero with a message on any failure."""
import os
import sys

import docker

import serving

BODY = "hello from docker-py"


def fail(msg):
    serving.fail("docker_py", msg)


def main():
    image = os.environ.get("SKIFF_IMAGE") or fail("SKIFF_IMAGE not set")
    os.environ.get("DOCKER_HOST") or fail("DOCKER_HOST not set")
    client = docker.from_env()
    print(f"docker_py: docker {docker.__version__}, engine {client.version().get('Version')}", file=sys.stderr)
    cmd = serving.httpd(BODY)
    container = client.containers.run(image, cmd, ports={"8080/tcp": None}, detach=True)
    try:
        container.reload()
        bindings = (container.ports or {}).get("8080/tcp")
        if not bindings:
            fail(f"no host port for 8080/tcp in container.ports: {container.ports!r}")
        port = int(bindings[0]["HostPort"])
        print(f"docker_py: 8080/tcp -> host port {port}", file=sys.stderr)
        status, body = serving.get("docker_py", f"http://127.0.0.1:{port}/")
        if status != 200 or BODY not in body:
            fail(f"GET / gave {status} {body!r}")
        print(body.strip())
    finally:
        container.stop(timeout=2)
        container.remove()
    names = [c.id for c in client.containers.list(all=True)]
    if container.id in names:
        fail("container still listed after remove")


if __name__ == "__main__":
    serving.run("docker_py", main)
