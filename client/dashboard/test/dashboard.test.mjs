// The dashboard in a real browser against a real `herald serve` and a real
// receiver: live outcomes, a redrive, tenant walls, a burst of 20,000.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { DeliveryService, OutcomeKind } from "@herald/client";

import { PATIENCE_MS, startHerald, startReceiver } from "../../ts/test/support/herald.mjs";
import { launch, openPage } from "./browser.mjs";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/** A gRPC client of `herald`, with `apiKey` if given. */
function grpcClient(herald, apiKey) {
  const interceptors = apiKey
    ? [
        (next) => (request) => {
          request.header.set("authorization", `Bearer ${apiKey}`);
          return next(request);
        },
      ]
    : [];
  return createClient(DeliveryService, createGrpcTransport({ baseUrl: herald.grpc, interceptors }));
}

/** Resolves with the first outcome of `id` of one of `kinds`, replaying recorded ones. */
async function outcomeOf(client, id, kinds) {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), PATIENCE_MS);
  try {
    for await (const { outcome } of client.watchOutcomes(
      { start: { case: "fromOldest", value: true }, deliveryIds: [id], kinds },
      { signal: abort.signal },
    )) {
      return outcome;
    }
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
  throw new Error(`no outcome for ${id}`);
}

/** The Live view's count of `kind`, as drawn. */
async function drawnCount(page, kind) {
  return Number((await page.locator(`[data-count="${kind}"]`).textContent()).replaceAll(",", ""));
}

describe("open loopback mode", () => {
  let herald;
  let receiver;
  before(async () => {
    receiver = await startReceiver({ flaky: 503 });
    herald = await startHerald({
      env: { HERALD_DASHBOARD_ADDR: "127.0.0.1:0", HERALD_MAX_ATTEMPTS: "1", HERALD_METRICS_ADDR: "127.0.0.1:0" },
    });
  });
  after(async () => {
    await herald?.stop();
    await receiver?.close();
  });

  test("a delivery enqueued over gRPC shows as succeeded on the live page within 1 s", async () => {
    const { page, errors, close } = await openPage(browser, herald.dashboard);
    await page.locator('[data-stream="live"]').waitFor();
    const { id } = await grpcClient(herald).enqueue({ url: receiver.url("/live") });
    await page.locator(`li[data-delivery-id="${id}"][data-kind="succeeded"]`).waitFor({ timeout: 1000 });
    assert.deepEqual(errors, []);
    await close();
  });

  test("a dead letter is redriven from the page, after its dry-run count, and then succeeds", async () => {
    const client = grpcClient(herald);
    const { id } = await client.enqueue({ url: receiver.url("/flaky/order") });
    await outcomeOf(client, id, [OutcomeKind.DEAD_LETTERED]);
    receiver.replies.flaky = 204;

    const { page, errors, close } = await openPage(browser, herald.dashboard);
    await page.locator('[data-backlog="deadLetters"]', { hasText: /^1$/ }).waitFor();
    await page.getByRole("link", { name: "Dead letters" }).first().click();
    const row = page.locator(`tr[data-delivery-id="${id}"]`);
    await row.getByRole("checkbox").check();
    await page.getByRole("button", { name: "Redrive selected…" }).click();
    await page.locator('[data-dry-run-count="1"]').waitFor();
    await page.getByRole("button", { name: "Redrive 1" }).click();
    await page.getByText("Redrove 1 dead letter.").waitFor();
    const outcome = await outcomeOf(client, id, [OutcomeKind.SUCCEEDED]);
    assert.equal(outcome.attemptNumber, 2);

    await page.goto(`${herald.dashboard}/#/deliveries/${id}`);
    await page.locator('[data-state="succeeded"]').waitFor();
    assert.equal(await page.locator("tr[data-attempt]").count(), 2);
    assert.deepEqual(errors, []);
    await close();
  });

  test("the live view keeps up with a burst of 20,000: its counts are the server's", async () => {
    const { page, errors, close } = await openPage(browser, herald.dashboard);
    await page.locator('[data-stream="live"]').waitFor();
    const before = {
      succeeded: await drawnCount(page, "succeeded"),
      metrics: await succeededTotal(herald),
    };
    const client = grpcClient(herald);
    const total = 20_000;
    const batch = 1000;
    const abort = new AbortController();
    // Counted from Node too, so the test knows when the server is done
    // without polling its metrics.
    const watched = (async () => {
      let seen = 0;
      for await (const { outcome } of client.watchOutcomes(
        { kinds: [OutcomeKind.SUCCEEDED], destinationHost: "127.0.0.1" },
        { signal: abort.signal },
      )) {
        if (outcome.deliveryId && ++seen === total) return seen;
      }
    })();
    for (let sent = 0; sent < total; sent += batch) {
      const { results } = await client.enqueueBatch({
        deliveries: Array.from({ length: batch }, () => ({ url: receiver.url("/burst") })),
      });
      assert.ok(results.every((item) => item.result.case === "accepted"));
    }
    assert.equal(await watched, total);
    abort.abort();
    const served = (await succeededTotal(herald)) - before.metrics;
    assert.equal(served, total);
    await page.waitForFunction(
      ([expected]) => document.querySelector('[data-count="succeeded"]')?.textContent.replaceAll(",", "") === expected,
      [String(before.succeeded + served)],
      { timeout: PATIENCE_MS },
    );
    assert.equal((await drawnCount(page, "succeeded")) - before.succeeded, served);
    assert.deepEqual(errors, []);
    await close();
  });
});

describe("tenants", () => {
  let herald;
  let receiver;
  before(async () => {
    receiver = await startReceiver();
    herald = await startHerald({ env: { HERALD_DASHBOARD_ADDR: "127.0.0.1:0" }, tenants: ["alpha", "beta"] });
  });
  after(async () => {
    await herald?.stop();
    await receiver?.close();
  });

  /** Signs in on a fresh tab with `apiKey`. */
  async function signIn(apiKey, viewport) {
    const opened = await openPage(browser, `${herald.dashboard}/#/deliveries`, viewport);
    await opened.page.getByLabel("API key").fill(apiKey);
    await opened.page.getByRole("button", { name: "Sign in" }).click();
    return opened;
  }

  test("a wrong key says so plainly", async () => {
    const { page, close } = await signIn("hk_wrong_key");
    await page.getByText("That API key was not accepted: it is wrong, or it was revoked.").waitFor();
    await close();
  });

  test("a tenant's pages never show another tenant's deliveries, nor secret header values", async () => {
    const [alpha, beta] = herald.tenants;
    const { id } = await grpcClient(herald, alpha.apiKey).enqueue({
      url: receiver.url("/alpha"),
      headers: [
        // Herald refuses names such as x-api-key; the page hides more.
        { name: "x-session-id", value: "s3cret-value" },
        { name: "x-event-type", value: "order.created" },
      ],
    });
    await outcomeOf(grpcClient(herald, alpha.apiKey), id, [OutcomeKind.SUCCEEDED]);

    const own = await signIn(alpha.apiKey);
    await own.page.locator(`tr[data-delivery-id="${id}"]`).waitFor();
    await own.page.goto(`${herald.dashboard}/#/deliveries/${id}`);
    await own.page.getByText("order.created").waitFor();
    assert.ok(!(await own.page.content()).includes("s3cret-value"), "a secret header's value is on the page");
    await own.close();

    // Beta, on a phone-sized screen: its listing and a direct address.
    const other = await signIn(beta.apiKey, { width: 390, height: 844 });
    await other.page.getByRole("heading", { name: "Deliveries" }).waitFor();
    await other.page.getByText("No deliveries match.").waitFor();
    assert.equal(await other.page.locator(`[data-delivery-id="${id}"]`).count(), 0);
    await other.page.goto(`${herald.dashboard}/#/deliveries/${id}`);
    await other.page.getByText(/NotFound/).waitFor();
    assert.ok(!(await other.page.content()).includes("order.created"));
    await other.close();
  });
});

/** herald_deliveries_succeeded_total on the server's metrics page. */
async function succeededTotal(herald) {
  const page = await (await fetch(`${herald.metrics}/metrics`)).text();
  const line = page.split("\n").find((text) => text.startsWith("herald_deliveries_succeeded_total "));
  return Number(line.split(" ")[1]);
}
