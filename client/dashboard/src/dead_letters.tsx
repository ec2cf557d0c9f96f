// Dead letters: list them by destination host; redrive the selected ones,
// or every one matching a filter, after a dry run says how many.
import { useEffect, useState } from "preact/hooks";

import { DeliveryState, NotRedrivenReason, type Delivery, type RedriveDeadLettersRequestSchema } from "@herald/client";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { DeliveryTable } from "./deliveries";
import { beforeEveryDeadLetter, localTime } from "./filters";
import { count } from "./format";
import { useReport, useSession } from "./session";
import { ErrorLine, Pager, usePages } from "./widgets";

const PAGE_SIZE = 100;

type Redrive = MessageInitShape<typeof RedriveDeadLettersRequestSchema>;

/** A redrive waiting for its confirmation, with the dry run's answer. */
interface Pending {
  request: Redrive;
  count: bigint;
  skipped: number;
  what: string;
}

export function DeadLetters() {
  const { herald } = useSession();
  const report = useReport();
  const [host, setHost] = useState("");
  const [after, setAfter] = useState("");
  const [before, setBefore] = useState("");
  const pages = usePages();
  const [page, setPage] = useState<{ deliveries: Delivery[]; next: string } | null>(null);
  const [selected, setSelected] = useState<ReadonlySet<string>>(new Set());
  const toggle = (id: string, on: boolean) => {
    const next = new Set(selected);
    if (on) next.add(id);
    else next.delete(id);
    setSelected(next);
  };
  const [pending, setPending] = useState<Pending | null>(null);
  const [message, setMessage] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [reloads, setReloads] = useState(0);

  useEffect(() => {
    let current = true;
    herald.deliveries
      .listDeliveries({
        state: DeliveryState.DEAD_LETTERED,
        destinationHost: host.trim(),
        pageSize: PAGE_SIZE,
        pageToken: pages.token,
      })
      .then((response) => current && setPage({ deliveries: response.deliveries, next: response.nextPageToken }))
      .catch((failure) => current && setError(report(failure)));
    return () => {
      current = false;
    };
    // `report` is rebuilt at each render; the listing follows its inputs.
  }, [herald, host, pages.token, reloads]);

  const dryRun = async (request: Redrive, what: string) => {
    setMessage(null);
    setError(null);
    try {
      const answer = await herald.deliveries.redriveDeadLetters({ ...request, dryRun: true });
      setPending({ request, count: answer.count, skipped: answer.notRedriven.length, what });
    } catch (failure) {
      setError(report(failure));
    }
  };

  const confirm = async () => {
    if (!pending) return;
    const { request } = pending;
    setPending(null);
    try {
      const answer = await herald.deliveries.redriveDeadLetters({ ...request, dryRun: false });
      const skipped = answer.notRedriven.map(
        (entry) => `${entry.id} (${NotRedrivenReason[entry.reason].toLowerCase().replaceAll("_", " ")})`,
      );
      setMessage(
        `Redrove ${count(answer.count)} dead letter${answer.count === 1n ? "" : "s"}.` +
          (skipped.length ? ` Not redriven: ${skipped.join(", ")}.` : ""),
      );
      setSelected(new Set());
      pages.reset();
      setReloads((n) => n + 1);
    } catch (failure) {
      setError(report(failure));
    }
  };

  const matching = (): Redrive => ({
    selection: {
      case: "filter",
      value: {
        destinationHost: host.trim(),
        deadLetteredAfterTime: localTime(after),
        deadLetteredBeforeTime: localTime(before) ?? beforeEveryDeadLetter(),
      },
    },
  });

  return (
    <section aria-labelledby="dead-letters-title">
      <h1 id="dead-letters-title">Dead letters</h1>
      <form class="filters" onSubmit={(event) => event.preventDefault()}>
        <label>
          Destination host
          <input
            value={host}
            placeholder="api.example.com"
            onChange={(event) => {
              setHost(event.currentTarget.value);
              pages.reset();
            }}
          />
        </label>
        <label>
          Dead-lettered after
          <input type="datetime-local" value={after} onChange={(event) => setAfter(event.currentTarget.value)} />
        </label>
        <label>
          Dead-lettered before
          <input type="datetime-local" value={before} onChange={(event) => setBefore(event.currentTarget.value)} />
        </label>
      </form>
      <div class="actions">
        <button
          disabled={selected.size === 0}
          onClick={() =>
            dryRun({ selection: { case: "deliveries", value: { ids: [...selected] } } }, `the ${selected.size} selected`)
          }
        >
          Redrive selected…
        </button>
        <button onClick={() => dryRun(matching(), "every dead letter matching the filters")}>Redrive all matching…</button>
      </div>
      {pending && (
        <div class="confirm" role="alertdialog" aria-label="Confirm the redrive">
          <p data-dry-run-count={String(pending.count)}>
            Redriving {pending.what} sends {count(pending.count)} dead letter{pending.count === 1n ? "" : "s"} again, each
            with a fresh attempt budget.
            {pending.skipped > 0 && ` ${pending.skipped} of those named are not dead letters and stay as they are.`}
          </p>
          <button class="primary" disabled={pending.count === 0n} onClick={confirm} autofocus>
            Redrive {count(pending.count)}
          </button>{" "}
          <button onClick={() => setPending(null)}>Cancel</button>
        </div>
      )}
      {message && (
        <p class="ok" role="status">
          {message}
        </p>
      )}
      <ErrorLine error={error} />
      {page && (
        <>
          <DeliveryTable deliveries={page.deliveries} select={{ selected, toggle }} />
          {page.deliveries.length === 0 && <p class="muted">No dead letters match.</p>}
          <Pager pages={pages} next={page.next} />
        </>
      )}
    </section>
  );
}
