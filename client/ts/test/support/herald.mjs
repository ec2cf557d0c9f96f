// Test support shared by the client's and the dashboard's tests: a real
// `herald serve` (the debug binary unless HERALD_BIN says otherwise) on
// ephemeral ports over a fresh SQLite file, a real HTTP receiver, and the
// `herald tenant` command.
import { execFile, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../..");

/** The herald binary under test. */
export const heraldBin = process.env.HERALD_BIN ?? path.join(root, "target/debug/herald");

/** A guard against hangs, never a pacing device. */
export const PATIENCE_MS = 20_000;

/**
 * Starts `herald serve` with `env` on top of test settings, after creating
 * the tenants named in `tenants`; resolves once it logs that it is
 * serving, with the addresses it bound and each tenant's API key.
 */
export async function startHerald({ env = {}, tenants: names = [] } = {}) {
  const dir = await mkdtemp(path.join(tmpdir(), "herald-ts-"));
  const databaseUrl = `sqlite://${path.join(dir, "herald.db")}`;
  const settings = {
    HERALD_DATABASE_URL: databaseUrl,
    HERALD_LISTEN_ADDR: "127.0.0.1:0",
    HERALD_ALLOW_TARGET_CIDRS: "127.0.0.0/8",
    HERALD_POLL_INTERVAL: "200ms",
    HERALD_RETRY_MIN_BACKOFF: "10ms",
    HERALD_RETRY_MAX_BACKOFF: "50ms",
    HERALD_CREDENTIAL_CACHE: "0s",
    HERALD_LOG_FORMAT: "json",
    HERALD_LOG: "info,sqlx=warn",
    ...env,
  };
  const tenants = [];
  if (names.length > 0) await run(["migrate"], databaseUrl);
  for (const name of names) {
    tenants.push(await createTenant(databaseUrl, name));
  }
  const child = spawn(heraldBin, ["serve"], {
    env: { ...process.env, ...settings },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const log = [];
  const serving = new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      // A server that never said it serves is not left running.
      child.kill("SIGKILL");
      reject(new Error(`herald did not start:\n${log.join("\n")}`));
    }, PATIENCE_MS);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`herald exited with ${code}:\n${log.join("\n")}`));
    });
    for (const stream of [child.stdout, child.stderr]) {
      createInterface({ input: stream }).on("line", (line) => {
        log.push(line);
        if (log.length > 200) log.shift();
        let entry;
        try {
          entry = JSON.parse(line);
        } catch {
          return;
        }
        if (entry.fields?.message === "herald is serving") {
          clearTimeout(timer);
          resolve(entry.fields);
        }
      });
    }
  });
  const fields = await serving;
  const optional = (value) => (value && value !== "None" ? value.replace(/^Some\((.*)\)$/, "$1") : undefined);
  return {
    databaseUrl,
    tenants,
    grpc: `http://${fields.local_addr}`,
    dashboard: optional(fields.dashboard_addr) && `http://${optional(fields.dashboard_addr)}`,
    metrics: optional(fields.metrics_addr) && `http://${optional(fields.metrics_addr)}`,
    log,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once("exit", resolve));
        child.kill("SIGTERM");
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Creates tenant `name` with `herald tenant create`; resolves to its API key. */
export async function createTenant(databaseUrl, name) {
  const stdout = await run(["tenant", "create", name], databaseUrl);
  const line = stdout.split("\n").find((text) => text.startsWith("api key:"));
  if (!line) throw new Error(`no api key in: ${stdout}`);
  return { name, apiKey: line.slice("api key:".length).trim().split(/\s+/)[0] };
}

/** Runs the one-shot `herald ARGS` on `databaseUrl`; resolves to what it printed. */
async function run(args, databaseUrl) {
  const { stdout } = await promisify(execFile)(heraldBin, args, {
    env: { ...process.env, HERALD_DATABASE_URL: databaseUrl, NO_COLOR: "1" },
  });
  return stdout;
}

/**
 * A real HTTP receiver on loopback: answers the status `replies` maps a
 * path's first segment to (204 otherwise) and counts what it got.
 */
export async function startReceiver(replies = {}) {
  const received = new Map();
  const server = http.createServer((request, response) => {
    request.resume();
    request.on("end", () => {
      received.set(request.url, (received.get(request.url) ?? 0) + 1);
      const segment = request.url.split("/")[1];
      response.writeHead(replies[segment] ?? 204).end();
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    replies,
    received,
    url: (pathname) => `http://127.0.0.1:${port}${pathname}`,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}
