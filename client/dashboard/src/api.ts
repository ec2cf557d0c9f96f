// The page's only way to Herald: the generated client over gRPC-web, to
// the origin that served the page (the dashboard listener serves the same
// API), with the API key typed at sign-in.
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { DeliveryService, DestinationService } from "@herald/client";

/** Where the key lives: this browser tab only, gone when it closes. */
const KEY_STORAGE = "herald.apiKey";

/** The clients of both services, calling with one key (or none). */
export interface Herald {
  deliveries: Client<typeof DeliveryService>;
  destinations: Client<typeof DestinationService>;
}

/** Clients that send `apiKey` as the bearer token, or no key at all. */
export function connect(apiKey: string | null): Herald {
  const bearer: Interceptor = (next) => (request) => {
    if (apiKey) request.header.set("authorization", `Bearer ${apiKey}`);
    return next(request);
  };
  const transport = createGrpcWebTransport({
    baseUrl: window.location.origin,
    interceptors: [bearer],
  });
  return {
    deliveries: createClient(DeliveryService, transport),
    destinations: createClient(DestinationService, transport),
  };
}

/** The key this tab signed in with, if any. */
export function storedKey(): string | null {
  return window.sessionStorage.getItem(KEY_STORAGE);
}

/** Keeps `apiKey` for this tab, or forgets it. */
export function storeKey(apiKey: string | null): void {
  if (apiKey) window.sessionStorage.setItem(KEY_STORAGE, apiKey);
  else window.sessionStorage.removeItem(KEY_STORAGE);
}

/** Whether `error` says the key is missing, wrong or revoked. */
export function isUnauthenticated(error: unknown): boolean {
  return ConnectError.from(error).code === Code.Unauthenticated;
}

/** Whether `error` is the abort of a call the page gave up on. */
export function isCanceled(error: unknown): boolean {
  return ConnectError.from(error).code === Code.Canceled;
}

/** What went wrong, for people: the server's message without the code prefix. */
export function describe(error: unknown): string {
  const connect = ConnectError.from(error);
  return `${Code[connect.code] ?? "error"}: ${connect.rawMessage}`;
}

/** Tries `herald` with a cheap call: resolves if the key (or no key) is let in. */
export async function probe(herald: Herald): Promise<void> {
  await herald.destinations.listDestinations({ pageSize: 1 });
}
