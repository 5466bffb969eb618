"""Docker API behaviours, checked through docker-py as Docker's Engine API
reference describes them (https://docs.docker.com/reference/api/engine/).
Environment: DOCKER_HOST, SKIFF_IMAGE (a busybox image already loaded).
Prints one line per behaviour: `PASS name` or `FAIL name: what differed`.
Exits non-zero only when the script itself cannot run."""
import io
import os
import struct
import sys
import time
import tempfile

import docker
from docker.errors import APIError
from docker.types import LogConfig

IMAGE = os.environ["SKIFF_IMAGE"]
client = docker.from_env()
api = client.api
results = []


def check(name, ok, detail=""):
    results.append(name)
    print(f"PASS {name}" if ok else f"FAIL {name}: {detail}", flush=True)


def frames(data):
    """Splits a multiplexed stream (8-byte headers: stream, 0, 0, 0, size)
    into (stream, payload) pairs; None when the bytes are not frames."""
    out = []
    while data:
        if len(data) < 8 or data[0] not in (0, 1, 2) or data[1:4] != b"\0\0\0":
            return None
        size = struct.unpack(">I", data[4:8])[0]
        out.append((data[0], data[8:8 + size]))
        data = data[8 + size:]
    return out


def read_all(sock):
    sock = getattr(sock, "_sock", sock)
    chunks = []
    while True:
        b = sock.recv(65536)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


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


def exec_framing(c):
    """POST /exec/{id}/start frames by the start request's Tty."""
    eid = api.exec_create(c.id, ["echo", "hi"], tty=True)["Id"]
    sock = api.exec_start(eid, tty=False, socket=True)
    data = read_all(sock)
    got = frames(data)
    check("exec start Tty false: frames for an exec created with a TTY",
          got == [(1, b"hi\r\n")], f"read {data!r}")
    eid = api.exec_create(c.id, ["sh", "-c", "echo out; echo err >&2"], tty=False)["Id"]
    data = read_all(api.exec_start(eid, tty=True, socket=True))
    check("exec start Tty true: raw stdout and stderr for an exec created without one",
          sorted(data.splitlines()) == [b"err", b"out"], f"read {data!r}")


def exec_detach(c):
    """A detached exec start answers 200 with an empty body."""
    eid = api.exec_create(c.id, ["true"])["Id"]
    body = api.exec_start(eid, detach=True)
    check("exec start Detach: empty body", body == "", f"body {body!r}")


def container_state():
    """A killed container is exited; removing a running one is refused
    with 409 in Docker's words."""
    c = client.containers.run(IMAGE, ["sleep", "300"], detach=True, name="conf-kill")
    try:
        c.kill()
        inspected = api.inspect_container(c.id)["State"]["Status"]
        listed = api.containers(all=True, filters={"id": c.id})[0]["State"]
        check("kill: the container is exited", (inspected, listed) == ("exited", "exited"),
              f"inspect {inspected!r}, list {listed!r}")
    finally:
        c.remove(force=True)
    c = client.containers.run(IMAGE, ["sleep", "300"], detach=True, name="conf-rm")
    try:
        try:
            c.remove()
            check("rm of a running container: 409 in Docker's words", False, "it was removed")
        except APIError as e:
            want = ('cannot remove container "/conf-rm": container is running: '
                    "stop the container before removing or force remove")
            got = (e.response.status_code, e.explanation)
            check("rm of a running container: 409 in Docker's words", got == (409, want), f"{got!r}")
    finally:
        try:
            c.remove(force=True)
        except APIError:
            pass


def memory_swappiness():
    """On cgroup v2 (the guest's), MemorySwappiness is discarded with
    Docker's warning and the container runs."""
    hc = api.create_host_config(mem_swappiness=60)
    created = api.create_container(IMAGE, ["true"], host_config=hc, name="conf-swap")
    try:
        api.start(created["Id"])
        code = api.wait(created["Id"], timeout=120)["StatusCode"]
        want = ("Your kernel does not support memory swappiness capabilities or the cgroup is not mounted. "
                "Memory swappiness discarded.")
        got = (created.get("Warnings"), code)
        check("MemorySwappiness on cgroup v2: ignored with a warning", got == ([want], 0), f"{got!r}")
    finally:
        api.remove_container(created["Id"], force=True)


def memory_swappiness_unset():
    """-1 is what the docker CLI sends when --memory-swappiness is not
    given: unset, so no warning (Docker warns only for a real value)."""
    hc = api.create_host_config(mem_swappiness=-1)
    created = api.create_container(IMAGE, ["true"], host_config=hc, name="conf-swap-unset")
    try:
        check("MemorySwappiness -1 (unset): no warning", not created.get("Warnings"), f"{created.get('Warnings')!r}")
    finally:
        api.remove_container(created["Id"], force=True)


def unknown_log_driver():
    """An unknown log driver: 400, in Docker's words."""
    hc = api.create_host_config(log_config=LogConfig(type="asdf"))
    name = "unknown log driver: 400 in Docker's words"
    try:
        created = api.create_container(IMAGE, ["true"], host_config=hc, name="conf-log")
        api.remove_container(created["Id"], force=True)
        check(name, False, "it was created")
    except APIError as e:
        got = (e.response.status_code, e.explanation)
        check(name, got == (400, "logger: no log driver named 'asdf' is registered"), f"{got!r}")


def volume_answers():
    """A volume made without labels or options: {} for both (docs'
    `docker volume inspect` example), and create, inspect and the list
    answer it alike."""
    created = api.create_volume("conf-vol")
    try:
        inspected = api.inspect_volume("conf-vol")
        listed = [v for v in api.volumes()["Volumes"] if v["Name"] == "conf-vol"]
        empty = (created.get("Labels"), created.get("Options"))
        check("volume create: no labels or options are {}", empty == ({}, {}), f"create answered {created!r}")
        check("volume create, inspect and list answer alike", created == inspected and listed == [inspected],
              f"create {created!r}, inspect {inspected!r}, list {listed!r}")
    finally:
        api.remove_volume("conf-vol", force=True)


def network_default_shown():
    """Inspect and the list show the default network as "bridge" (docker-py
    names no network here)."""
    c = client.containers.run(IMAGE, ["sleep", "300"], detach=True, name="conf-default-net")
    try:
        inspected = list(api.inspect_container(c.id)["NetworkSettings"]["Networks"])
        listed = list(api.containers(filters={"id": c.id})[0]["NetworkSettings"]["Networks"])
        check("the default network shows as bridge in inspect and the list", (inspected, listed) == (["bridge"], ["bridge"]),
              f"inspect {inspected!r}, list {listed!r}")
    finally:
        c.remove(force=True)


def mac_address():
    """Config.MacAddress (docker-py's mac_address) is the container's MAC
    on the default network."""
    mac = "02:42:ac:11:00:99"
    created = api.create_container(IMAGE, ["sleep", "300"], mac_address=mac, name="conf-mac")
    try:
        api.start(created["Id"])
        nets = api.inspect_container(created["Id"])["NetworkSettings"]["Networks"]
        got = [n.get("MacAddress") for n in nets.values()]
        check("Config.MacAddress: the container has that MAC", got == [mac], f"Networks {nets!r}")
    finally:
        api.remove_container(created["Id"], force=True)


def env_without_value():
    """An Env entry without "=" is removed from the process's environment
    and kept in Config.Env as given. (GOGC is set in the engine's own
    environment: it must not reach the container.)"""
    env = ["GOGC", "Other=one", "Blank="]
    created = api.create_container(IMAGE, ["env"], environment=env, name="conf-env")
    try:
        api.start(created["Id"])
        api.wait(created["Id"], timeout=120)
        listed = api.inspect_container(created["Id"])["Config"]["Env"]
        seen = api.logs(created["Id"]).decode().splitlines()
        ok = (all(e in listed for e in env) and "Other=one" in seen and "Blank=" in seen
              and not any(line.startswith("GOGC") for line in seen))
        check("env entry without =: unset in the process, kept in Config.Env", ok, f"Config.Env {listed!r}, env {seen!r}")
    finally:
        api.remove_container(created["Id"], force=True)


def tmpfs_as_given():
    """HostConfig.Tmpfs shows the options the client gave."""
    given = {"/conf-tmp": "rw,noexec,size=1m"}
    created = api.create_container(IMAGE, ["true"], host_config=api.create_host_config(tmpfs=given), name="conf-tmpfs")
    try:
        got = api.inspect_container(created["Id"])["HostConfig"].get("Tmpfs")
        check("Tmpfs options as given", got == given, f"Tmpfs {got!r}")
    finally:
        api.remove_container(created["Id"], force=True)


def host_config_as_given():
    """Runtime is runc (Docker's default); Isolation, LogConfig.Config,
    VolumeDriver and DeviceCgroupRules read back as given."""
    hc = api.create_host_config(isolation="default", volume_driver="local", device_cgroup_rules=["c 1:3 mr"],
                                log_config=LogConfig(type="json-file", config={"max-size": "1m"}))
    created = api.create_container(IMAGE, ["true"], host_config=hc, name="conf-hostconfig")
    try:
        h = api.inspect_container(created["Id"])["HostConfig"]
        got = {k: h.get(k) for k in ("Runtime", "Isolation", "LogConfig", "VolumeDriver", "DeviceCgroupRules")}
        want = {"Runtime": "runc", "Isolation": "default", "LogConfig": {"Type": "json-file", "Config": {"max-size": "1m"}},
                "VolumeDriver": "local", "DeviceCgroupRules": ["c 1:3 mr"]}
        check("HostConfig: Runtime runc, the rest as given", got == want, f"{got!r}")
    finally:
        api.remove_container(created["Id"], force=True)


def cgroupns_mode():
    """CgroupnsMode "host" is applied (the process sees the host's cgroup
    path, not "/") and shown; without one, inspect shows the default,
    "private" on cgroup v2."""
    hc = api.create_host_config(cgroupns="host")
    host = api.create_container(IMAGE, ["cat", "/proc/self/cgroup"], host_config=hc, name="conf-cgns-host")
    default = api.create_container(IMAGE, ["cat", "/proc/self/cgroup"], name="conf-cgns-default")
    try:
        api.start(host["Id"])
        api.wait(host["Id"], timeout=120)
        seen = api.logs(host["Id"]).decode().strip()
        modes = [api.inspect_container(c["Id"])["HostConfig"].get("CgroupnsMode") for c in (host, default)]
        check("CgroupnsMode host applied and shown, private by default",
              modes == ["host", "private"] and seen not in ("", "0::/"), f"modes {modes!r}, /proc/self/cgroup {seen!r}")
    finally:
        api.remove_container(host["Id"], force=True)
        api.remove_container(default["Id"], force=True)


def changes():
    """GET /containers/{id}/changes lists what the process changed, not
    the engine's own files (hosts, resolv.conf, mount points)."""
    created = api.create_container(IMAGE, ["sh", "-c", "mkdir /conf && echo hi > /conf/x"], name="conf-changes")
    try:
        api.start(created["Id"])
        api.wait(created["Id"], timeout=120)
        got = sorted(((d["Path"], d["Kind"]) for d in api.diff(created["Id"]) or []))
        check("changes: only what the process changed", got == [("/conf", 1), ("/conf/x", 1)], f"changes {got!r}")
    finally:
        api.remove_container(created["Id"], force=True)


def links():
    """A legacy link (--link, compose's links:): in the linking container
    the alias reaches the linked container, and inspect shows the link."""
    db = client.containers.run(IMAGE, ["sh", "-c", "echo linked > /index.html && httpd -f -p 8080 -h /"],
                               detach=True, name="conf-db")
    try:
        hc = api.create_host_config(links={"conf-db": "database"})
        created = api.create_container(IMAGE, ["sh", "-c", "for i in 1 2 3 4 5; do wget -q -O - http://database:8080/index.html && exit; sleep 1; done; exit 1"],
                                       host_config=hc, name="conf-web")
        try:
            api.start(created["Id"])
            code = api.wait(created["Id"], timeout=120)["StatusCode"]
            out = api.logs(created["Id"]).decode().strip()
            shown = api.inspect_container(created["Id"])["HostConfig"].get("Links")
            check("links: the alias reaches the linked container, inspect shows it",
                  (code, out, shown) == (0, "linked", ["/conf-db:/conf-web/database"]),
                  f"exit {code}, output {out!r}, Links {shown!r}")
        finally:
            api.remove_container(created["Id"], force=True)
    finally:
        db.remove(force=True)


def volume_subpath():
    """Mounts.VolumeOptions.Subpath mounts that folder of the volume."""
    api.create_volume("conf-subpath")
    try:
        fill = client.containers.run(IMAGE, ["sh", "-c", "mkdir /v/sub && echo in-sub > /v/sub/f && echo top > /v/f"],
                                     volumes={"conf-subpath": {"bind": "/v", "mode": "rw"}}, remove=True)
        mount = {"Type": "volume", "Source": "conf-subpath", "Target": "/m", "VolumeOptions": {"Subpath": "sub"}}
        created = api.create_container(IMAGE, ["cat", "/m/f"], name="conf-subpath",
                                       host_config=api.create_host_config(mounts=[mount]))
        try:
            api.start(created["Id"])
            api.wait(created["Id"], timeout=120)
            out = api.logs(created["Id"]).decode().strip()
            check("VolumeOptions.Subpath: that folder of the volume is mounted", out == "in-sub", f"/m/f reads {out!r} ({fill!r})")
        finally:
            api.remove_container(created["Id"], force=True)
    finally:
        api.remove_volume("conf-subpath", force=True)


# Images, links and networks (patches 0022-0029): one block.


def commit_parent():
    """POST /commit: the new image's Parent is the image its container was
    made from (inspect shows both as sha256:ID)."""
    c = client.containers.run(IMAGE, ["sh", "-c", "echo > /committed"], detach=True, name="conf-commit")
    try:
        c.wait(timeout=120)
        img = api.commit(c.id)["Id"]
        try:
            got = api.inspect_image(img).get("Parent")
            want = api.inspect_image(IMAGE)["Id"]
            check("commit: the image's Parent is its container's image", got == want, f"Parent {got!r}, image {want!r}")
        finally:
            api.remove_image(img, force=True)
    finally:
        c.remove(force=True)


def load_garbage():
    """POST /images/load of bytes that are no tar archive: 200 with the
    error in the JSON stream, in Docker's words (its tar reader's), which
    docker-py raises as ImageLoadError."""
    for data, want in ((b"abc", "unexpected EOF"), (b"x" * 1024, "archive/tar: invalid tar header")):
        name = f"load of {len(data)} bytes of garbage: {want!r} in the stream"
        try:
            client.images.load(data)
            check(name, False, "it loaded")
        except docker.errors.ImageLoadError as e:
            check(name, str(e) == want, f"ImageLoadError {str(e)!r}")
        except APIError as e:
            check(name, False, f"APIError {e.response.status_code} {e.explanation!r}")


def wait_for_logs(cid, text, count, timeout=120):
    """The container's output once `text` shows in it `count` times."""
    deadline = time.time() + timeout
    while True:
        out = api.logs(cid).decode()
        if out.count(text) >= count or time.time() > deadline:
            return out
        time.sleep(1)


def link_environment():
    """A legacy link sets Docker's link variables in the linking process
    (ALIAS_PORT, per port ALIAS_PORT_<n>_<PROTO> with _ADDR, _PORT, _PROTO,
    a run of ports' _START and _END, ALIAS_NAME, ALIAS_ENV_*) and the
    alias's /etc/hosts entry, and again after `docker restart`."""
    db = api.create_container(IMAGE, ["sleep", "300"], ports=[8080, 8081, (53, "udp")],
                              environment=["DB_USER=me"], name="conf-envdb")
    web = None
    try:
        api.start(db["Id"])
        ip = api.inspect_container(db["Id"])["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
        hc = api.create_host_config(links={"conf-envdb": "data-base"})
        script = "env | grep ^DATA_BASE_ | sort; grep -c data-base /etc/hosts; echo LINKS-DONE; exec sleep 300"
        web = api.create_container(IMAGE, ["sh", "-c", script], host_config=hc, name="conf-envweb")["Id"]
        api.start(web)
        want = {f"DATA_BASE_PORT=tcp://{ip}:8080", f"DATA_BASE_NAME=/conf-envweb/data-base", "DATA_BASE_ENV_DB_USER=me",
                f"DATA_BASE_PORT_8080_TCP_START=tcp://{ip}:8080", "DATA_BASE_PORT_8080_TCP_PORT_START=8080",
                f"DATA_BASE_PORT_8080_TCP_END=tcp://{ip}:8081", "DATA_BASE_PORT_8080_TCP_PORT_END=8081", "1"}
        for port, proto in ((8080, "tcp"), (8081, "tcp"), (53, "udp")):
            prefix = f"DATA_BASE_PORT_{port}_{proto.upper()}"
            want |= {f"{prefix}={proto}://{ip}:{port}", f"{prefix}_ADDR={ip}", f"{prefix}_PORT={port}", f"{prefix}_PROTO={proto}"}
        first = wait_for_logs(web, "LINKS-DONE", 1).split("LINKS-DONE")[0].split()
        check("links: Docker's link variables and the hosts entry", set(first) == want and len(first) == len(want),
              f"saw {sorted(first)!r}, Docker sets {sorted(want)!r}")
        api.restart(web, timeout=1)
        again = wait_for_logs(web, "LINKS-DONE", 2).split("LINKS-DONE")
        again = again[1].split() if len(again) > 2 else []
        check("links: the variables and the hosts entry again after docker restart",
              set(again) == want and len(again) == len(want), f"saw {sorted(again)!r}")
    finally:
        if web:
            api.remove_container(web, force=True)
        api.remove_container(db["Id"], force=True)


def network_name_with_spaces():
    """A network name with spaces is accepted, and a container joins it."""
    name = "conf net with spaces"
    try:
        created = api.create_network(name)
    except APIError as e:
        check("network name with spaces: accepted", False, f"{e.response.status_code} {e.explanation!r}")
        return
    try:
        c = client.containers.run(IMAGE, ["sleep", "300"], detach=True, name="conf-spaces", network=name)
        try:
            nets = list(api.inspect_container(c.id)["NetworkSettings"]["Networks"])
            shown = api.inspect_network(created["Id"])["Name"]
            check("network name with spaces: accepted", (nets, shown) == ([name], name), f"Networks {nets!r}, inspect {shown!r}")
        finally:
            c.remove(force=True)
    finally:
        api.remove_network(created["Id"])


def distribution_unreachable():
    """GET /distribution/{name}/json asks the name's registry: when it
    cannot be reached, Docker answers 500 with the HTTP client's error
    (here a refused connection to a container's closed port)."""
    c = client.containers.run(IMAGE, ["sleep", "300"], detach=True, name="conf-distribution")
    try:
        ip = api.inspect_container(c.id)["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
        res = api._get(api._url("/distribution/{0}/json", f"{ip}:9/app:1"))
        want = f'Get "https://{ip}:9/v2/": dial tcp {ip}:9: connect: connection refused'
        try:
            got = (res.status_code, res.json().get("message"))
        except ValueError:
            got = (res.status_code, res.text)
        check("distribution: an unreachable registry's error in Docker's words", got == (500, want), f"{got!r}")
    finally:
        c.remove(force=True)
# Classic build (POST /build): engine/patches/0030-0038.

def build_log(**kw):
    """Runs a classic build; its decoded JSON messages."""
    return list(api.build(decode=True, rm=True, **kw))


def dockerfile(*lines):
    return io.BytesIO("\n".join([f"FROM {IMAGE}", *lines]).encode())


def stream_text(log):
    return "".join(m.get("stream", "") for m in log)


def one_line(output):
    """The words of a container's one line of output (containers.run's
    logs right after the exit sometimes lacked all but the first line)."""
    return output.decode().split()


def build_labels():
    """labels: the image has exactly the labels given (the base has none)."""
    build_log(fileobj=dockerfile(), tag="conf-build-labels", labels={"a": "1", "b": "two"})
    got = api.inspect_image("conf-build-labels")["Config"].get("Labels")
    check("build labels: exactly as given", got == {"a": "1", "b": "two"}, f"Labels {got!r}")


def build_stream_stderr():
    """Every message is a stream (or the aux image ID); a RUN step's stderr
    comes as a stream message in the terminal's red."""
    log = build_log(fileobj=dockerfile("RUN echo out; echo err >&2"), nocache=True)
    keys = {k for m in log for k in m}
    streams = [m["stream"] for m in log if "stream" in m]
    ok = keys <= {"stream", "aux"} and "out\n" in streams and "\x1b[91merr\n\x1b[0m" in streams
    check("build output: stream messages, RUN stderr in red", ok, f"messages {log!r}")


def build_error_wording():
    """A failing RUN step: Docker's words in error and errorDetail, with
    the exit code."""
    log = build_log(fileobj=dockerfile("RUN exit 3"), nocache=True)
    want = "The command '/bin/sh -c exit 3' returned a non-zero code: 3"
    got = (log[-1].get("error"), log[-1].get("errorDetail")) if log else None
    check("build failure: Docker's words and code", got == (want, {"code": 3, "message": want}), f"last message {got!r}")


def build_extrahosts():
    """Several extrahosts (one query value each, as docker-py and the CLI
    send them) are in the RUN steps' /etc/hosts."""
    hosts = {"one.test": "10.9.8.7", "two.test": "10.9.8.6"}
    try:
        log = build_log(fileobj=dockerfile("RUN cat /etc/hosts"), nocache=True, extra_hosts=hosts)
    except APIError as e:
        check("build extrahosts: several accepted", False, f"{e.response.status_code} {e.explanation}")
        return
    lines = [line.split() for line in stream_text(log).splitlines()]
    ok = all([ip, name] in lines for name, ip in hosts.items())
    check("build extrahosts: several accepted", ok, f"output {stream_text(log)!r}")


def build_networkmode():
    """networkmode: a user network's build runs on it and is tagged; a
    "none" build has no address but loopback."""
    net = api.create_network("conf-build-net", ipam=docker.types.IPAMConfig(
        pool_configs=[docker.types.IPAMPool(subnet="172.30.10.0/24")]))["Id"]
    try:
        on_net = stream_text(build_log(fileobj=dockerfile("RUN ip -o -4 addr"), tag="conf-build-net",
                                       nocache=True, network_mode=net))
        tagged = [i.tags for i in client.images.list(name="conf-build-net")]
        none = stream_text(build_log(fileobj=dockerfile("RUN ip -o -4 addr"), nocache=True, network_mode="none"))
        addrs = [w for w in none.split() if w.count(".") == 3 and "/" in w]
        ok = "172.30.10." in on_net and tagged == [["conf-build-net:latest"]] and addrs in ([], ["127.0.0.1/8"])
        check("build networkmode: a user network's build is tagged, none has no network", ok,
              f"on the network {on_net!r}, tags {tagged!r}, none {none!r}")
    finally:
        api.remove_network(net)


def build_dockerignore():
    """.dockerignore by Docker's rules: patterns trimmed of spaces, "!"
    exceptions keep files under an excluded folder."""
    d = tempfile.mkdtemp()
    with open(os.path.join(d, "Dockerfile"), "w") as f:
        f.write(f"FROM {IMAGE}\nADD . /test\n")
    with open(os.path.join(d, ".dockerignore"), "w") as f:
        f.write("\n".join(["ignored", "Dockerfile", ".dockerignore", " ignored-with-spaces ",
                           "!ignored/subdir/excepted-file", "! ignored/subdir/excepted-with-spaces  ", "", "#*"]))
    os.makedirs(os.path.join(d, "ignored", "subdir"))
    for name in ["ignored/file", "ignored/subdir/file", "ignored/subdir/excepted-file",
                 "ignored/subdir/excepted-with-spaces", "ignored-with-spaces", "not-ignored"]:
        with open(os.path.join(d, name), "w") as f:
            f.write("x")
    build_log(path=d, tag="conf-build-ignore")
    got = one_line(client.containers.run("conf-build-ignore", ["sh", "-c", "echo $(ls -AR /test)"], remove=True))
    want = ["/test:", "ignored", "not-ignored", "/test/ignored:", "subdir",
            "/test/ignored/subdir:", "excepted-file", "excepted-with-spaces"]
    check("build .dockerignore: ! exceptions, spaces trimmed", got == want, f"copied {got!r}")


def build_outside_dockerfile():
    """A Dockerfile outside the context (docker-py puts it in the tar under
    another name) builds, and is not copied by COPY ."""
    d, elsewhere = tempfile.mkdtemp(), tempfile.mkdtemp()
    with open(os.path.join(d, "file.txt"), "w") as f:
        f.write("hello")
    with open(os.path.join(d, ".dockerignore"), "w") as f:
        f.write(".dockerignore\n")
    with open(os.path.join(elsewhere, "Dockerfile"), "w") as f:
        f.write(f"FROM {IMAGE}\nCOPY . /src\nWORKDIR /src\n")
    log = build_log(path=d, dockerfile=os.path.join(elsewhere, "Dockerfile"), tag="conf-build-outside")
    if not any("aux" in m for m in log):
        check("build: a Dockerfile outside the context", False, f"build {log!r}")
        return
    got = sorted(one_line(client.containers.run("conf-build-outside", ["sh", "-c", "echo $(ls -a)"], remove=True)))
    check("build: a Dockerfile outside the context", got == [".", "..", "file.txt"], f"ls -a {got!r}")


def build_cachefrom():
    """cachefrom: a build reuses the steps of the image named; naming only
    a missing image reuses none. The base is the test image imported, so
    it has a history: the engine's builder reuses no step on a base
    without one (the loaded test image has none)."""
    c = client.containers.create(IMAGE, ["true"], name="conf-build-export")
    try:
        data = b"".join(c.export())
    finally:
        c.remove(force=True)
    api.import_image_from_data(data, repository="conf-build-base", tag="latest", changes=["ENV PATH=/bin"])
    steps = ("FROM conf-build-base", "ENV FOO=bar", "RUN echo > /baz", "RUN echo > /bax")
    build_log(fileobj=io.BytesIO("\n".join(steps).encode()), tag="conf-build-cache1")
    cached = [stream_text(build_log(fileobj=io.BytesIO("\n".join(steps).encode()), cache_from=[name])).count("Using cache")
              for name in ("conf-build-cache1", "conf-build-nosuchtag")]
    check("build cachefrom: the named image's steps reused, none for a missing one", cached == [3, 0],
          f"steps from the cache: {cached!r}")


def build_squash():
    """squash: the build's steps become one layer on top of the base's."""
    log = build_log(fileobj=dockerfile("RUN echo 1 > /f1", "RUN echo 2 > /f2", "RUN echo 3 > /f3"),
                    tag="conf-build-squash", squash=True, nocache=True)
    base = len(api.inspect_image(IMAGE)["RootFS"]["Layers"])
    got = len(api.inspect_image("conf-build-squash")["RootFS"]["Layers"]) if any("aux" in m for m in log) else None
    check("build squash: one layer on the base", got == base + 1, f"{got!r} layers, base {base}; {log[-1:]!r}")


def guarded(row, *args):
    """A row that raises fails as a whole, and the others still run."""
    try:
        row(*args)
    except Exception as e:
        check(row.__name__, False, f"{type(e).__name__}: {e}")


def main():
    guarded(container_list_ports)
    c = client.containers.run(IMAGE, ["sleep", "300"], detach=True, name="conf-exec")
    try:
        guarded(exec_framing, c)
        guarded(exec_detach, c)
    finally:
        c.remove(force=True)
    guarded(container_state)
    guarded(memory_swappiness)
    guarded(memory_swappiness_unset)
    guarded(unknown_log_driver)
    guarded(volume_answers)
    guarded(network_default_shown)
    guarded(mac_address)
    guarded(env_without_value)
    guarded(tmpfs_as_given)
    guarded(host_config_as_given)
    guarded(cgroupns_mode)
    guarded(changes)
    guarded(links)
    guarded(volume_subpath)
    guarded(commit_parent)
    guarded(load_garbage)
    guarded(link_environment)
    guarded(network_name_with_spaces)
    guarded(distribution_unreachable)
    for row in (build_labels, build_stream_stderr, build_error_wording, build_extrahosts, build_networkmode,
                build_dockerignore, build_outside_dockerfile, build_cachefrom, build_squash):
        guarded(row)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # the script itself broke: say where
        print(f"conformance.py: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(2)
