// Live: outcomes as WatchOutcomes streams them, counted in the page and
// drawn at most every DRAW_EVERY_MS; the backlog, read again when outcomes
// show that it moved.
import { useEffect, useRef, useState } from "preact/hooks";

import { OutcomeKind, type GetBacklogResponse } from "@herald/client";
import { describe, isCanceled, isUnauthenticated } from "./api";
import { RateChart } from "./chart";
import { count, kindName, time } from "./format";
import { href } from "./route";
import { useReport, useSession } from "./session";
import { CHARTED, Tally } from "./tally";
import { ErrorLine } from "./widgets";

/** How often at most the page redraws while outcomes arrive. */
const DRAW_EVERY_MS = 250;
/** How often at most the backlog is read while outcomes arrive. */
const BACKLOG_EVERY_MS = 2000;
/** The response header that names the sequence a watch starts after. */
const AFTER_SEQUENCE = "herald-after-sequence";
/** How long a lost stream waits before it resumes. */
const RESUME_AFTER_MS = 1000;

/** The backlog's tiles. */
const BACKLOG = [
  { field: "due", label: "due now", detail: "waiting for a slot" },
  { field: "scheduledRetries", label: "retries scheduled", detail: "waiting for their time" },
  { field: "inFlight", label: "in flight", detail: "attempts under way" },
  { field: "deadLetters", label: "dead letters", detail: "kept, redrivable" },
] as const;

/** Kinds counted in tiles, besides the charted ones. */
const COUNTED = [...CHARTED, OutcomeKind.CANCELLED, OutcomeKind.REDRIVEN] as const;

export function Live() {
  const { herald } = useSession();
  const report = useReport();
  const tally = useRef(new Tally()).current;
  const [drawn, setDrawn] = useState(() => ({ at: Date.now(), columns: tally.columns(Date.now()) }));
  const [stream, setStream] = useState<"connecting" | "live" | string>("connecting");
  const [backlog, setBacklog] = useState<GetBacklogResponse | null>(null);
  const [backlogError, setBacklogError] = useState<string | null>(null);

  useEffect(() => {
    const abort = new AbortController();
    let dirty = false;
    let drawTimer: number | undefined;
    let backlogTimer: number | undefined;
    let lastBacklog = 0;
    const draw = () => {
      drawTimer = undefined;
      if (!dirty) return;
      dirty = false;
      const at = Date.now();
      setDrawn({ at, columns: tally.columns(at) });
    };
    const refresh = async () => {
      backlogTimer = undefined;
      lastBacklog = Date.now();
      try {
        setBacklog(await herald.deliveries.getBacklog({}));
        setBacklogError(null);
      } catch (error) {
        setBacklogError(report(error));
      }
    };
    // The backlog is read at once, then at most every BACKLOG_EVERY_MS
    // while outcomes arrive, and once more after the last of them.
    const outcomesArrived = () => {
      if (backlogTimer !== undefined) return;
      const wait = Math.max(0, lastBacklog + BACKLOG_EVERY_MS - Date.now());
      backlogTimer = window.setTimeout(refresh, wait);
    };
    void refresh();
    (async () => {
      // Where a lost stream resumes: after the last outcome counted, or,
      // before the first, where the stream said it started.
      let startedAfter: bigint | undefined;
      while (!abort.signal.aborted) {
        try {
          const after = tally.lastSequence ?? startedAfter;
          const outcomes = herald.deliveries.watchOutcomes(
            after === undefined ? {} : { start: { case: "afterSequence", value: after } },
            {
              signal: abort.signal,
              // The stream is open, and counts from here, once its
              // response headers are in.
              onHeader: (headers) => {
                const after = headers.get(AFTER_SEQUENCE);
                if (after && startedAfter === undefined) startedAfter = BigInt(after);
                setStream("live");
              },
            },
          );
          for await (const { outcome } of outcomes) {
            if (!outcome) continue;
            tally.add(outcome, Date.now());
            dirty = true;
            drawTimer ??= window.setTimeout(draw, DRAW_EVERY_MS);
            outcomesArrived();
          }
        } catch (error) {
          if (abort.signal.aborted || isCanceled(error)) return;
          if (isUnauthenticated(error)) {
            report(error);
            return;
          }
          setStream(`lost (${describe(error)}); resuming…`);
        }
        await new Promise((resolve) => setTimeout(resolve, RESUME_AFTER_MS));
      }
    })();
    return () => {
      abort.abort();
      window.clearTimeout(drawTimer);
      window.clearTimeout(backlogTimer);
    };
    // `report` is rebuilt at each render; the stream lives as long as the view.
  }, [herald, tally]);

  return (
    <section aria-labelledby="live-title">
      <h1 id="live-title">Live</h1>
      <p class="status" aria-live="polite">
        Outcome stream: <span data-stream={stream === "live" ? "live" : "down"}>{stream}</span>
      </p>
      <ErrorLine error={backlogError} />
      <div class="tiles">
        {COUNTED.map((kind) => (
          <div class={`tile kind-${kindName(kind)}`}>
            <span class="label">{kindName(kind)}</span>
            <span class="value" data-count={kindName(kind)}>
              {count(tally.total(kind))}
            </span>
            <span class="detail">
              {(CHARTED as readonly OutcomeKind[]).includes(kind)
                ? `${count(Math.round(tally.rate(kind as (typeof CHARTED)[number], drawn.at)))}/s · `
                : ""}
              since this page opened
            </span>
          </div>
        ))}
        {BACKLOG.map(({ field, label, detail }) => (
          <div class="tile">
            <span class="label">{label}</span>
            <span class="value" data-backlog={field}>
              {backlog ? count(backlog[field]) : "…"}
            </span>
            <span class="detail">{detail}</span>
          </div>
        ))}
      </div>
      <RateChart names={CHARTED.map(kindName)} data={drawn.columns} />
      <h2>Latest outcomes</h2>
      <ol class="latest">
        {tally.latest.map((outcome) => (
          <li data-delivery-id={outcome.deliveryId} data-kind={kindName(outcome.kind)} key={String(outcome.sequence)}>
            <span class={`badge kind-${kindName(outcome.kind)}`}>{kindName(outcome.kind)}</span>{" "}
            {outcome.deliveryId ? (
              <a href={href("deliveries", outcome.deliveryId)}>
                <code>{outcome.deliveryId}</code>
              </a>
            ) : (
              <code>{outcome.destination}</code>
            )}{" "}
            <span class="muted">
              {outcome.statusCode ? `HTTP ${outcome.statusCode}` : outcome.errorMessage} · {time(outcome.createTime)}
            </span>
          </li>
        ))}
      </ol>
    </section>
  );
}
