// How values read on the page.
import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";
import { durationMs, timestampDate } from "@bufbuild/protobuf/wkt";
import { DeliveryState, OutcomeKind } from "@herald/client";

/** A timestamp in the reader's time zone, to the second; "—" when unset. */
export function time(timestamp: Timestamp | undefined): string {
  if (!timestamp) return "—";
  return timestampDate(timestamp).toLocaleString(undefined, { hour12: false });
}

/** A duration in ms or s; "—" when unset. */
export function duration(value: Duration | undefined): string {
  if (!value) return "—";
  const ms = durationMs(value);
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

/** A whole number with thousands separators. */
export function count(value: number | bigint): string {
  return value.toLocaleString("en-US");
}

/** A delivery state, in words ("dead-lettered"). */
export function stateName(state: DeliveryState): string {
  return (DeliveryState[state] ?? "unknown").toLowerCase().replace("_", "-");
}

/** An outcome kind, in words ("retry-scheduled"). */
export function kindName(kind: OutcomeKind): string {
  return (OutcomeKind[kind] ?? "unknown").toLowerCase().replaceAll("_", "-");
}

/** Header names whose values the page never shows. */
const SECRET_NAME = /auth|token|secret|key|sig|cookie|pass|session|credential|bearer/i;

/** Whether a header of this name may carry a secret. */
export function isSecretHeader(name: string): boolean {
  return SECRET_NAME.test(name);
}

/** Bytes as text when they are UTF-8, else as a hex dump of the first 256. */
export function bodyText(bytes: Uint8Array): string {
  if (bytes.length === 0) return "(empty)";
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    const hex = Array.from(bytes.slice(0, 256), (byte) => byte.toString(16).padStart(2, "0"));
    return `(binary, ${bytes.length} bytes) ${hex.join(" ")}`;
  }
}
