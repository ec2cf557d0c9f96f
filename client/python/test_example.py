"""Runs herald_example.py against a live Herald: starts a local receiver
and the herald binary (SQLite in a temporary directory), delivers through
the example and checks what arrived. Run by .ci/run:

    python client/python/test_example.py target/debug/herald
"""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import tempfile
import threading

import herald_example


class Receiver(http.server.BaseHTTPRequestHandler):
    """Answers 204 and remembers every request."""

    received: list[tuple[str, dict, bytes]] = []

    def do_POST(self):  # noqa: N802 (the http.server naming)
        body = self.rfile.read(int(self.headers["content-length"]))
        Receiver.received.append((self.path, dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def start_herald(binary: str, database_url: str) -> tuple[subprocess.Popen, str]:
    """Starts `herald serve` on `database_url`, with its defaults otherwise,
    and returns it with the address it serves on."""
    # Only the settings named here: none of the caller's own HERALD_* ones.
    inherited = {
        name: value for name, value in os.environ.items() if not name.startswith("HERALD_")
    }
    env = dict(
        inherited,
        HERALD_LISTEN_ADDR="127.0.0.1:0",
        HERALD_DATABASE_URL=database_url,
        HERALD_ALLOW_TARGET_CIDRS="127.0.0.0/8",
        HERALD_LOG="info",
        NO_COLOR="1",
    )
    herald = subprocess.Popen(
        [binary, "serve"], env=env, stdout=subprocess.PIPE, text=True
    )
    for line in herald.stdout:
        if "herald is serving" in line:
            address = line.split("local_addr=")[1].split()[0]
            # Keep draining the log so the server never blocks on it.
            threading.Thread(target=herald.stdout.read, daemon=True).start()
            return herald, address
    raise RuntimeError("herald exited before serving")


def main() -> int:
    binary = sys.argv[1]
    # HERALD_SERVER is written as for the herald commands.
    assert herald_example.channel_target("http://127.0.0.1:50051") == ("127.0.0.1:50051", False)
    assert herald_example.channel_target("localhost:50051") == ("localhost:50051", False)
    assert herald_example.channel_target("https://herald.internal:50051/") == (
        "herald.internal:50051",
        True,
    )
    receiver = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{receiver.server_address[1]}/python"
    with tempfile.TemporaryDirectory() as directory:
        herald, address = start_herald(binary, f"sqlite://{directory}/herald.db")
        try:
            kind = herald_example.deliver(
                f"http://{address}", url, {"from": "python"}, timeout=30
            )
        finally:
            herald.terminate()
            herald.wait(timeout=30)
    receiver.shutdown()
    assert kind == "OUTCOME_KIND_SUCCEEDED", kind
    assert len(Receiver.received) == 1, Receiver.received
    path, headers, body = Receiver.received[0]
    assert path == "/python", path
    assert body == b'{"from": "python"}', body
    headers = {name.lower(): value for name, value in headers.items()}
    assert headers["webhook-signature"].startswith("v1,"), headers
    print("python example: delivered and watched to SUCCEEDED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
