// Times typed in a datetime-local field, as the API takes them.
import { timestampFromDate, timestampFromMs, type Timestamp } from "@bufbuild/protobuf/wkt";

/** A datetime-local field's value as a timestamp; undefined when empty. */
export function localTime(value: string): Timestamp | undefined {
  if (!value) return undefined;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? undefined : timestampFromDate(date);
}

/**
 * A redrive filter's `dead_lettered_before_time` that takes every dead
 * letter: a redrive selects by ids or by a filter, and a filter must set
 * at least one of its fields.
 */
export function beforeEveryDeadLetter(): Timestamp {
  return timestampFromMs(Date.now() + 60_000);
}
