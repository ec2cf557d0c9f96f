// The generated client against a live `herald serve`: gRPC from Node, and
// gRPC-web as a browser speaks it, with API keys and tenant walls.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";

import {
  DeliveryService,
  DeliveryState,
  DestinationService,
  EnqueueRequestSchema,
  OutcomeKind,
} from "@herald/client";
import { PATIENCE_MS, startHerald, startReceiver } from "./support/herald.mjs";

let herald;
let receiver;

before(async () => {
  receiver = await startReceiver({ reject: 400 });
  herald = await startHerald({ tenants: ["alpha", "beta"] });
});

after(async () => {
  await herald?.stop();
  await receiver?.close();
});

/** Sends `key` as the bearer token of every call. */
const bearer = (key) => (next) => (request) => {
  request.header.set("authorization", `Bearer ${key}`);
  return next(request);
};

const grpc = (key) =>
  createGrpcTransport({ baseUrl: herald.grpc, interceptors: [bearer(key)] });
const grpcWeb = (key) =>
  createGrpcWebTransport({ baseUrl: herald.grpc, httpVersion: "1.1", interceptors: [bearer(key)] });

/**
 * Enqueues `request`, then watches from the oldest outcome (so none is
 * missed, however late the watch starts) for the delivery's first outcome
 * of one of `kinds`.
 */
async function enqueueAndWatch(client, request, kinds) {
  const { id } = await client.enqueue(request);
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), PATIENCE_MS);
  try {
    for await (const { outcome } of client.watchOutcomes(
      { start: { case: "fromOldest", value: true }, deliveryIds: [id], kinds },
      { signal: abort.signal },
    )) {
      return { id, outcome };
    }
    throw new Error("the watch ended");
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
}

test("Node enqueues over gRPC and follows the outcome to success", async () => {
  const client = createClient(DeliveryService, grpc(herald.tenants[0].apiKey));
  const request = create(EnqueueRequestSchema, {
    url: receiver.url("/node"),
    body: new TextEncoder().encode('{"hello":"node"}'),
    contentType: "application/json",
  });
  const { id, outcome } = await enqueueAndWatch(client, request, [OutcomeKind.SUCCEEDED]);
  assert.equal(outcome.kind, OutcomeKind.SUCCEEDED);
  assert.equal(outcome.statusCode, 204);
  const { delivery } = await client.getDelivery({ id });
  assert.equal(delivery.state, DeliveryState.SUCCEEDED);
  assert.equal(delivery.attempts.length, 1);
});

test("gRPC-web reads, lists and streams as gRPC does", async () => {
  const client = createClient(DeliveryService, grpcWeb(herald.tenants[0].apiKey));
  const { id, outcome } = await enqueueAndWatch(
    client,
    { url: receiver.url("/reject/web") },
    [OutcomeKind.DEAD_LETTERED],
  );
  assert.equal(outcome.statusCode, 400);
  const { deliveries } = await client.listDeadLetters({});
  assert.deepEqual(
    deliveries.map((delivery) => delivery.id),
    [id],
  );
  const destinations = createClient(DestinationService, grpcWeb(herald.tenants[0].apiKey));
  const listed = await destinations.listDestinations({});
  assert.ok(listed.destinations.length >= 1);
});

test("a wrong key is UNAUTHENTICATED and another tenant's delivery NOT_FOUND", async () => {
  const alpha = createClient(DeliveryService, grpcWeb(herald.tenants[0].apiKey));
  const beta = createClient(DeliveryService, grpcWeb(herald.tenants[1].apiKey));
  const { id } = await alpha.enqueue({ url: receiver.url("/walls") });
  await assert.rejects(beta.getDelivery({ id }), (error) => {
    assert.equal(ConnectError.from(error).code, Code.NotFound);
    return true;
  });
  const stranger = createClient(DeliveryService, grpcWeb("hk_not_a_key"));
  await assert.rejects(stranger.getDelivery({ id }), (error) => {
    assert.equal(ConnectError.from(error).code, Code.Unauthenticated);
    return true;
  });
  await assert.rejects(beta.enqueue({ url: "" }), (error) => {
    const connect = ConnectError.from(error);
    assert.equal(connect.code, Code.InvalidArgument);
    assert.match(connect.rawMessage, /url/);
    return true;
  });
});
