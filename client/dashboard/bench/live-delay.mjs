// How long the Live view takes to show an outcome: enqueue to drawn, at a
// steady rate of deliveries that all succeed, measured in chromium against
// a real `herald serve` (the release binary unless HERALD_BIN says
// otherwise) and a local receiver. Reports, never asserts.
//
//   node client/dashboard/bench/live-delay.mjs [RATE_PER_SECOND] [SECONDS]
//   HERALD_BENCH_DATABASE_URL=postgres://... node client/dashboard/bench/live-delay.mjs
//
// Every BATCH_EVERY_MS a batch of RATE * BATCH_EVERY_MS / 1000 deliveries
// is enqueued (EnqueueBatch). A batch is drawn once the page's succeeded
// count reaches the number enqueued up to and including it; its delay runs
// from the start of its enqueue call to the animation frame after that
// count was put in the page. The same is reported for a gRPC watcher in
// Node (enqueue to streamed), and the difference (streamed to drawn) is
// what the page itself adds.
import path from "node:path";
import { fileURLToPath } from "node:url";

import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { DeliveryService, OutcomeKind } from "@herald/client";

import { startHerald, startReceiver } from "../../ts/test/support/herald.mjs";
import { launch, openPage } from "../test/browser.mjs";

const rate = Number(process.argv[2] ?? 2000);
const seconds = Number(process.argv[3] ?? 20);
const BATCH_EVERY_MS = 50;
const batchSize = Math.max(1, Math.round((rate * BATCH_EVERY_MS) / 1000));
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
process.env.HERALD_BIN ??= path.join(root, "target/release/herald");

const receiver = await startReceiver();
const herald = await startHerald({
  env: {
    HERALD_DASHBOARD_ADDR: "127.0.0.1:0",
    HERALD_DESTINATION_CONCURRENCY: "64",
    // A fresh SQLite file unless this names another database.
    ...(process.env.HERALD_BENCH_DATABASE_URL && { HERALD_DATABASE_URL: process.env.HERALD_BENCH_DATABASE_URL }),
  },
});
const browser = await launch();
try {
  const { page } = await openPage(browser, herald.dashboard);
  await page.locator('[data-stream="live"]').waitFor();
  // Records, for each change of the drawn succeeded count, the count and
  // the time of the next animation frame (when it is on screen).
  await page.evaluate(() => {
    const tile = document.querySelector('[data-count="succeeded"]');
    window.drawn = [];
    new MutationObserver(() => {
      const value = Number(tile.textContent.replaceAll(",", ""));
      requestAnimationFrame(() => window.drawn.push([value, Date.now()]));
    }).observe(tile, { characterData: true, childList: true, subtree: true });
  });

  const client = createClient(DeliveryService, createGrpcTransport({ baseUrl: herald.grpc }));
  // The same outcomes as Node sees them over gRPC: when the server had
  // them, so the page's own share of the delay can be told apart.
  const streamed = [];
  const abort = new AbortController();
  const watching = (async () => {
    let seen = 0;
    try {
      for await (const { outcome } of client.watchOutcomes(
        { kinds: [OutcomeKind.SUCCEEDED] },
        { signal: abort.signal },
      )) {
        if (outcome) streamed.push([++seen, Date.now()]);
      }
    } catch (error) {
      if (!abort.signal.aborted) throw error;
    }
  })();
  const body = new TextEncoder().encode('{"type":"bench"}');
  const batches = [];
  const calls = [];
  let enqueued = 0;
  const start = Date.now();
  const total = Math.round((seconds * 1000) / BATCH_EVERY_MS);
  for (let index = 0; index < total; index += 1) {
    const due = start + index * BATCH_EVERY_MS;
    const wait = due - Date.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    enqueued += batchSize;
    const batch = { sentAt: Date.now(), upTo: enqueued };
    batches.push(batch);
    calls.push(
      client.enqueueBatch({
        deliveries: Array.from({ length: batchSize }, () => ({ url: receiver.url("/bench"), body })),
      }),
    );
  }
  await Promise.all(calls);
  const sendSeconds = (Date.now() - start) / 1000;
  await page.waitForFunction(
    (expected) => window.drawn.length > 0 && window.drawn[window.drawn.length - 1][0] >= expected,
    enqueued,
    { timeout: 120_000, polling: 100 },
  );
  abort.abort();
  await watching;
  const drawn = await page.evaluate(() => window.drawn);
  const lastDrawnAt = drawn[drawn.length - 1][1];
  /** The first time `series` ([count, ms] pairs) reached `count`. */
  const reached = (series, count) => series.find(([value]) => value >= count)[1];
  const quantiles = (values) => {
    const sorted = [...values].sort((a, b) => a - b);
    const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
    return { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: sorted[sorted.length - 1] };
  };
  console.log(
    JSON.stringify({
      target_rate_per_s: rate,
      enqueued,
      enqueue_seconds: Number(sendSeconds.toFixed(1)),
      drawn_rate_per_s: Math.round(enqueued / ((lastDrawnAt - start) / 1000)),
      draws: drawn.length,
      enqueue_to_drawn_ms: quantiles(batches.map((batch) => reached(drawn, batch.upTo) - batch.sentAt)),
      enqueue_to_streamed_ms: quantiles(batches.map((batch) => reached(streamed, batch.upTo) - batch.sentAt)),
      streamed_to_drawn_ms: quantiles(
        batches.map((batch) => reached(drawn, batch.upTo) - reached(streamed, batch.upTo)),
      ),
    }),
  );
} finally {
  await browser.close();
  await herald.stop();
  await receiver.close();
}
