// The Live view's arithmetic: outcomes counted as they stream in, per kind
// and per second over the last minutes, in O(1) per outcome. The view
// draws from it a few times a second, never per outcome.
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { OutcomeKind, type Outcome } from "@herald/client";

/** Seconds the chart reaches back. */
export const WINDOW_SECONDS = 300;
/** Seconds a rate is averaged over. */
const RATE_SECONDS = 5;
/** Outcomes kept for the "latest" list. */
const LATEST = 20;

/** The kinds drawn on the chart, in its order. */
export const CHARTED = [OutcomeKind.SUCCEEDED, OutcomeKind.RETRY_SCHEDULED, OutcomeKind.DEAD_LETTERED] as const;

/** Outcomes seen since the page opened. */
export class Tally {
  /** Count per kind since the page opened. */
  readonly totals = new Map<OutcomeKind, number>();
  /** Per charted kind, counts per second in a ring indexed by epoch second. */
  private readonly perSecond = CHARTED.map(() => new Float64Array(WINDOW_SECONDS));
  /** The epoch second each ring slot holds. */
  private readonly slotSecond = new Float64Array(WINDOW_SECONDS);
  /** The newest outcomes, newest first. */
  latest: Outcome[] = [];
  /** The newest sequence seen: where a lost stream resumes. */
  lastSequence: bigint | undefined;

  /** Counts one outcome, recorded at `nowMs` unless it says when. */
  add(outcome: Outcome, nowMs: number): void {
    this.totals.set(outcome.kind, (this.totals.get(outcome.kind) ?? 0) + 1);
    this.lastSequence = outcome.sequence;
    this.latest.unshift(outcome);
    if (this.latest.length > LATEST) this.latest.length = LATEST;
    const charted = CHARTED.indexOf(outcome.kind as (typeof CHARTED)[number]);
    if (charted < 0) return;
    const at = outcome.createTime ? timestampMs(outcome.createTime) : nowMs;
    const second = Math.floor(at / 1000);
    if (second <= Math.floor(nowMs / 1000) - WINDOW_SECONDS) return;
    this.perSecond[charted][this.slot(second)] += 1;
  }

  /** Count of `kind` since the page opened. */
  total(kind: OutcomeKind): number {
    return this.totals.get(kind) ?? 0;
  }

  /** Outcomes of a charted `kind` per second, over the last complete seconds. */
  rate(kind: (typeof CHARTED)[number], nowMs: number): number {
    const series = this.perSecond[CHARTED.indexOf(kind)];
    const now = Math.floor(nowMs / 1000);
    let sum = 0;
    for (let second = now - RATE_SECONDS; second < now; second += 1) {
      const slot = ((second % WINDOW_SECONDS) + WINDOW_SECONDS) % WINDOW_SECONDS;
      if (this.slotSecond[slot] === second) sum += series[slot];
    }
    return sum / RATE_SECONDS;
  }

  /** The chart's columns: epoch seconds, then each charted kind's counts. */
  columns(nowMs: number): [number[], ...number[][]] {
    const now = Math.floor(nowMs / 1000);
    const seconds: number[] = [];
    const series = CHARTED.map(() => [] as number[]);
    for (let second = now - WINDOW_SECONDS + 1; second <= now; second += 1) {
      seconds.push(second);
      const slot = ((second % WINDOW_SECONDS) + WINDOW_SECONDS) % WINDOW_SECONDS;
      const current = this.slotSecond[slot] === second;
      this.perSecond.forEach((ring, index) => series[index].push(current ? ring[slot] : 0));
    }
    return [seconds, ...series];
  }

  /** The ring slot of `second`, emptied first if it held an older second. */
  private slot(second: number): number {
    const slot = ((second % WINDOW_SECONDS) + WINDOW_SECONDS) % WINDOW_SECONDS;
    if (this.slotSecond[slot] !== second) {
      this.slotSecond[slot] = second;
      for (const ring of this.perSecond) ring[slot] = 0;
    }
    return slot;
  }
}
