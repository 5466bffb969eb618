// Testcontainers for Node against Skiff: a GenericContainer running busybox
// httpd with port 8080 exposed, getMappedPort, fetch from the host, stop.
// Environment: DOCKER_HOST, SKIFF_IMAGE (present in the engine: the default
// pull policy pulls only a missing image), SKIFF_NODE_CLIENTS (the
// `npm install --prefix` folder holding testcontainers),
// TESTCONTAINERS_RYUK_DISABLED=true and TESTCONTAINERS_HOST_OVERRIDE=localhost
// (set by the test). Prints the body on stdout; exits non-zero with a
// message on any failure.
import { createRequire } from "node:module";
import { join } from "node:path";

const BODY = "hello from testcontainers-node";

function fail(msg) {
  console.error(`testcontainers_node: FAILED: ${msg}`);
  process.exit(1);
}

async function get(url, limitMs = 30000) {
  const end = Date.now() + limitMs;
  let last;
  while (Date.now() < end) {
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(10000) });
      return [r.status, await r.text()];
    } catch (e) {
      last = e;
      await new Promise((ok) => setTimeout(ok, 200));
    }
  }
  fail(`GET ${url}: no answer within ${limitMs / 1000}s: ${last}`);
}

async function main() {
  const image = process.env.SKIFF_IMAGE || fail("SKIFF_IMAGE not set");
  const prefix = process.env.SKIFF_NODE_CLIENTS || fail("SKIFF_NODE_CLIENTS not set");
  const require = createRequire(join(prefix, "package.json"));
  const { GenericContainer, PullPolicy } = require("testcontainers");
  const version = require("testcontainers/package.json").version;
  console.error(`testcontainers_node: testcontainers ${version}, node ${process.version}`);
  const cmd = `mkdir -p /www && echo '${BODY}' > /www/index.html && exec httpd -f -p 8080 -h /www`;
  const container = await new GenericContainer(image)
    .withCommand(["sh", "-c", cmd])
    .withExposedPorts(8080)
    .withPullPolicy(PullPolicy.defaultPolicy())
    .start();
  try {
    const host = container.getHost();
    const port = container.getMappedPort(8080);
    console.error(`testcontainers_node: 8080 -> ${host}:${port}`);
    const [status, body] = await get(`http://${host}:${port}/`);
    if (status !== 200 || !body.includes(BODY)) fail(`GET / gave ${status} ${JSON.stringify(body)}`);
    console.log(body.trim());
  } finally {
    await container.stop({ timeout: 2000 });
  }
}

main().catch((e) => fail(e && e.stack ? e.stack : String(e)));
