"""What the Python client scripts share: a failure message and exit, the
busybox httpd command they run, and a GET from the host that waits for the
server to listen."""
import sys
import time
import urllib.request


def fail(who, msg):
    print(f"{who}: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def httpd(body):
    """busybox httpd serving `body` as / on port 8080."""
    return ["sh", "-c", f"mkdir -p /www && echo '{body}' > /www/index.html && exec httpd -f -p 8080 -h /www"]


def get(who, url, limit=30.0):
    end = time.monotonic() + limit
    last = None
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return r.status, r.read().decode()
        except Exception as e:  # not listening yet, reset while httpd starts
            last = e
            time.sleep(0.2)
    fail(who, f"GET {url}: no answer within {limit}s: {last!r}")


def run(who, main):
    """Runs `main`, turning any exception into a failure message."""
    try:
        main()
    except SystemExit:
        raise
    except Exception as e:
        fail(who, repr(e))
