"""Call Herald from Python: enqueue a delivery, then watch its outcomes.

Herald's contract is plain gRPC, so any language with a gRPC library can
call it. This example generates Python stubs from the repository's
``proto/`` directory at start (grpcio-tools ships its own ``protoc``), so it
always matches the contract it sits beside.

    pip install -r client/python/requirements.txt
    python client/python/herald_example.py https://example.com/webhooks \\
        --server http://127.0.0.1:50051 --api-key "$HERALD_API_KEY"

The server and the key come from ``--server``/``HERALD_SERVER`` and
``--api-key``/``HERALD_API_KEY``, as for the ``herald`` commands: the server
is ``http://host:port``, ``https://host:port`` for a TLS listener (trusting
the system's certificate authorities), or a bare ``host:port`` (plain).
A key is needed once the server has a tenant (``herald tenant create``
prints one); a server still open (no tenant yet) takes calls without one.

It prints each outcome as Herald records it and exits 0 once the delivery
succeeded (1 if it was dead-lettered or cancelled).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.resources
import json
import os
import pathlib
import sys
import tempfile
import uuid

import grpc
from grpc_tools import protoc

PROTO_ROOT = pathlib.Path(__file__).resolve().parents[2] / "proto"


def load_stubs(out_dir: str):
    """Generates the stubs of every file of the contract (herald.v1 and the
    google.rpc.Status it imports) into out_dir and imports herald.v1's."""
    protos = sorted(
        str(path.relative_to(PROTO_ROOT)) for path in PROTO_ROOT.rglob("*.proto")
    )
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    status = protoc.main(
        [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"-I{well_known}",
            f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            *protos,
        ]
    )
    if status != 0:
        raise RuntimeError(f"protoc failed on {protos}")
    sys.path.insert(0, out_dir)
    messages = importlib.import_module("herald.v1.delivery_service_pb2")
    outcomes = importlib.import_module("herald.v1.outcome_pb2")
    services = importlib.import_module("herald.v1.delivery_service_pb2_grpc")
    return messages, outcomes, services


def channel_target(server: str) -> tuple[str, bool]:
    """The gRPC target in server (written as for the herald commands) and
    whether it speaks TLS."""
    if server.startswith("https://"):
        return server.removeprefix("https://").rstrip("/"), True
    return server.removeprefix("http://").rstrip("/"), False


def open_channel(server: str) -> grpc.Channel:
    """A channel to Herald at server (see channel_target)."""
    target, tls = channel_target(server)
    if tls:
        return grpc.secure_channel(target, grpc.ssl_channel_credentials())
    return grpc.insecure_channel(target)


def deliver(server: str, url: str, payload: dict, api_key: str | None = None,
            timeout: float = 60.0) -> str:
    """Enqueues payload as JSON to url and follows it to a terminal outcome.

    Returns the final outcome kind's name, e.g. "OUTCOME_KIND_SUCCEEDED".
    """
    with tempfile.TemporaryDirectory() as stubs_dir:
        messages, outcomes, services = load_stubs(stubs_dir)
        # Every call carries the tenant's API key (not needed while Herald
        # runs open on loopback).
        metadata = [("authorization", f"Bearer {api_key}")] if api_key else []
        terminal = {
            outcomes.OUTCOME_KIND_SUCCEEDED,
            outcomes.OUTCOME_KIND_DEAD_LETTERED,
            outcomes.OUTCOME_KIND_CANCELLED,
        }
        with open_channel(server) as channel:
            stub = services.DeliveryServiceStub(channel)
            enqueued = stub.Enqueue(
                messages.EnqueueRequest(
                    url=url,
                    body=json.dumps(payload).encode(),
                    content_type="application/json",
                    # Safe to repeat: the same key returns the same delivery.
                    idempotency_key=str(uuid.uuid4()),
                ),
                metadata=metadata,
                timeout=10,
            )
            print(f"enqueued {enqueued.id}", flush=True)
            # Replays this delivery's outcomes from the oldest, then follows
            # it live, so nothing recorded before the watch began is missed.
            stream = stub.WatchOutcomes(
                messages.WatchOutcomesRequest(
                    from_oldest=True, delivery_ids=[enqueued.id]
                ),
                metadata=metadata,
                timeout=timeout,
            )
            for response in stream:
                outcome = response.outcome
                kind = outcomes.OutcomeKind.Name(outcome.kind)
                print(
                    f"#{outcome.sequence} {kind} attempt={outcome.attempt_number} "
                    f"status={outcome.status_code} {outcome.error_message}".rstrip(),
                    flush=True,
                )
                if outcome.kind in terminal:
                    stream.cancel()
                    return kind
    raise RuntimeError("the outcome stream ended before the delivery finished")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="where Herald should deliver")
    parser.add_argument(
        "--server", default=os.environ.get("HERALD_SERVER", "http://127.0.0.1:50051"),
        help="Herald's address: http://host:port, https://host:port or host:port "
        "(HERALD_SERVER)",
    )
    parser.add_argument(
        "--api-key", default=os.environ.get("HERALD_API_KEY"),
        help="the tenant's API key (HERALD_API_KEY); needed once the server "
        "has a tenant",
    )
    args = parser.parse_args()
    kind = deliver(args.server, args.url, {"type": "example.ping"}, args.api_key)
    return 0 if kind == "OUTCOME_KIND_SUCCEEDED" else 1


if __name__ == "__main__":
    sys.exit(main())
