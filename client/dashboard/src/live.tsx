// Live: outcomes as WatchOutcomes streams them, counted in the page and
// drawn at most DRAWS_PER_SECOND times a second; the backlog's figures,
// read again when outcomes show that they moved.
import { useEffect, useRef, useState } from "preact/hooks";

import { OutcomeKind } from "@herald/client";
import { describe, isCanceled, isUnauthenticated, type Herald } from "./api";
import { RateChart } from "./chart";
import { beforeEveryDeadLetter } from "./filters";
import { count, kindName, time } from "./format";
import { href } from "./route";
import { useReport, useSession } from "./session";
import { CHARTED, Tally } from "./tally";
import { ErrorLine } from "./widgets";

/** How often at most the page redraws while outcomes arrive. */
const DRAW_EVERY_MS = 250;
/** How often at most the backlog's figures are read while outcomes arrive. */
const SNAPSHOT_EVERY_MS = 2000;
/** How long a lost stream waits before it resumes. */
const RESUME_AFTER_MS = 1000;

/** Kinds counted in tiles, besides the charted ones. */
const COUNTED = [...CHARTED, OutcomeKind.CANCELLED, OutcomeKind.REDRIVEN] as const;

/** What is waiting and in flight for the caller's tenant. */
interface Snapshot {
  inFlight: number;
  deadLetters: bigint;
}

/** Reads the snapshot: in flight summed over destinations, and the dead letters a redrive would take. */
async function readSnapshot(herald: Herald): Promise<Snapshot> {
  let inFlight = 0;
  let pageToken = "";
  do {
    const page = await herald.destinations.listDestinations({ pageSize: 1000, pageToken });
    for (const destination of page.destinations) inFlight += destination.inFlight;
    pageToken = page.nextPageToken;
  } while (pageToken);
  const { count: deadLetters } = await herald.deliveries.redriveDeadLetters({
    dryRun: true,
    deadLetteredBeforeTime: beforeEveryDeadLetter(),
  });
  return { inFlight, deadLetters };
}

export function Live() {
  const { herald } = useSession();
  const report = useReport();
  const tally = useRef(new Tally()).current;
  const [drawn, setDrawn] = useState(() => ({ at: Date.now(), columns: tally.columns(Date.now()) }));
  const [stream, setStream] = useState<"connecting" | "live" | string>("connecting");
  const [snapshot, setSnapshot] = useState<Snapshot | null>(null);
  const [snapshotError, setSnapshotError] = useState<string | null>(null);

  useEffect(() => {
    const abort = new AbortController();
    let dirty = false;
    let drawTimer: number | undefined;
    let snapshotTimer: number | undefined;
    let lastSnapshot = 0;
    const draw = () => {
      drawTimer = undefined;
      if (!dirty) return;
      dirty = false;
      const at = Date.now();
      setDrawn({ at, columns: tally.columns(at) });
    };
    const refresh = async () => {
      snapshotTimer = undefined;
      lastSnapshot = Date.now();
      try {
        setSnapshot(await readSnapshot(herald));
        setSnapshotError(null);
      } catch (error) {
        setSnapshotError(report(error));
      }
    };
    // The figures are read at once, then at most every SNAPSHOT_EVERY_MS
    // while outcomes arrive, and once more after the last of them.
    const outcomesArrived = () => {
      if (snapshotTimer !== undefined) return;
      const wait = Math.max(0, lastSnapshot + SNAPSHOT_EVERY_MS - Date.now());
      snapshotTimer = window.setTimeout(refresh, wait);
    };
    void refresh();
    (async () => {
      while (!abort.signal.aborted) {
        try {
          const outcomes = herald.deliveries.watchOutcomes(
            { afterSequence: tally.lastSequence },
            { signal: abort.signal },
          );
          setStream("live");
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
      window.clearTimeout(snapshotTimer);
    };
    // `report` is rebuilt at each render; the stream lives as long as the view.
  }, [herald, tally]);

  return (
    <section aria-labelledby="live-title">
      <h1 id="live-title">Live</h1>
      <p class="status" aria-live="polite">
        Outcome stream: <span data-stream={stream === "live" ? "live" : "down"}>{stream}</span>
      </p>
      <ErrorLine error={snapshotError} />
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
        <div class="tile">
          <span class="label">in flight</span>
          <span class="value" data-snapshot="in-flight">
            {snapshot ? count(snapshot.inFlight) : "…"}
          </span>
          <span class="detail">attempts under way now</span>
        </div>
        <div class="tile">
          <span class="label">dead letters</span>
          <span class="value" data-snapshot="dead-letters">
            {snapshot ? count(snapshot.deadLetters) : "…"}
          </span>
          <span class="detail">
            kept, <a href={href("dead-letters")}>redrivable</a>
          </span>
        </div>
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
