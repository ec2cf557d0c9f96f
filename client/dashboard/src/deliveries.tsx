// Deliveries: find one by id or idempotency key, or list them by state,
// destination host and creation time, a page at a time.
import { useEffect, useState } from "preact/hooks";

import { DeliveryState, type Delivery } from "@herald/client";
import { localTime } from "./filters";
import { stateName, time } from "./format";
import { href } from "./route";
import { useReport, useSession } from "./session";
import { ErrorLine, Pager, usePages } from "./widgets";

const PAGE_SIZE = 50;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

interface Filters {
  state: DeliveryState;
  host: string;
  after: string;
  before: string;
}

/** What a table with a checkbox per row is told and tells. */
interface Selection {
  selected: ReadonlySet<string>;
  toggle: (id: string, on: boolean) => void;
}

/** A table of deliveries, each linking to its page, with checkboxes if `select` is given. */
export function DeliveryTable({ deliveries, select }: { deliveries: Delivery[]; select?: Selection }) {
  return (
    <div class="table-wrap">
      <table>
        <thead>
          <tr>
            {select && <th scope="col">Select</th>}
            <th scope="col">Delivery</th>
            <th scope="col">State</th>
            <th scope="col">URL</th>
            <th scope="col">Attempts</th>
            <th scope="col">Last result</th>
            <th scope="col">Created</th>
          </tr>
        </thead>
        <tbody>
          {deliveries.map((delivery) => (
            <tr data-delivery-id={delivery.id} key={delivery.id}>
              {select && (
                <td>
                  <input
                    type="checkbox"
                    aria-label={`Select ${delivery.id}`}
                    checked={select.selected.has(delivery.id)}
                    onChange={(event) => select.toggle(delivery.id, event.currentTarget.checked)}
                  />
                </td>
              )}
              <td>
                <a href={href("deliveries", delivery.id)}>
                  <code>{delivery.id}</code>
                </a>
              </td>
              <td>
                <span class={`badge state-${stateName(delivery.state)}`}>{stateName(delivery.state)}</span>
              </td>
              <td class="url">{delivery.url}</td>
              <td>
                {delivery.attemptCount}/{delivery.maxAttempts}
              </td>
              <td>{delivery.lastStatusCode ? `HTTP ${delivery.lastStatusCode}` : delivery.lastError || "—"}</td>
              <td>{time(delivery.createTime)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function Deliveries() {
  const { herald } = useSession();
  const report = useReport();
  const [filters, setFilters] = useState<Filters>({ state: DeliveryState.UNSPECIFIED, host: "", after: "", before: "" });
  const pages = usePages();
  const [page, setPage] = useState<{ deliveries: Delivery[]; next: string } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [search, setSearch] = useState("");
  const [found, setFound] = useState<{ key: string; deliveries: Delivery[] } | null>(null);

  useEffect(() => {
    let current = true;
    setError(null);
    herald.deliveries
      .listDeliveries({
        state: filters.state,
        destinationHost: filters.host.trim(),
        createdAfterTime: localTime(filters.after),
        createdBeforeTime: localTime(filters.before),
        pageSize: PAGE_SIZE,
        pageToken: pages.token,
      })
      .then((response) => current && setPage({ deliveries: response.deliveries, next: response.nextPageToken }))
      .catch((failure) => current && setError(report(failure)));
    return () => {
      current = false;
    };
    // `report` is rebuilt at each render; the listing follows its inputs.
  }, [herald, filters, pages.token]);

  const change = (patch: Partial<Filters>) => {
    setFilters({ ...filters, ...patch });
    pages.reset();
  };

  const find = async (event: Event) => {
    event.preventDefault();
    const text = search.trim();
    setFound(null);
    setError(null);
    if (!text) return;
    if (UUID.test(text)) {
      window.location.hash = href("deliveries", text.toLowerCase());
      return;
    }
    try {
      // A key names at most one delivery of the tenant.
      const response = await herald.deliveries.listDeliveries({ idempotencyKey: text, pageSize: 1 });
      setFound({ key: text, deliveries: response.deliveries });
    } catch (failure) {
      setError(report(failure));
    }
  };

  return (
    <section aria-labelledby="deliveries-title">
      <h1 id="deliveries-title">Deliveries</h1>
      <form class="search" onSubmit={find} role="search">
        <label for="delivery-search">Delivery id or idempotency key</label>
        <input id="delivery-search" value={search} onInput={(event) => setSearch(event.currentTarget.value)} />
        <button type="submit">Find</button>
      </form>
      {found && (
        <div class="found" aria-live="polite">
          <p>
            {found.deliveries.length === 0
              ? `No delivery with idempotency key “${found.key}”.`
              : `Idempotency key “${found.key}”:`}
          </p>
          {found.deliveries.length > 0 && <DeliveryTable deliveries={found.deliveries} />}
        </div>
      )}
      <form class="filters" onSubmit={(event) => event.preventDefault()}>
        <label>
          State
          <select
            value={filters.state}
            onChange={(event) => change({ state: Number(event.currentTarget.value) as DeliveryState })}
          >
            <option value={DeliveryState.UNSPECIFIED}>any</option>
            {[DeliveryState.PENDING, DeliveryState.SUCCEEDED, DeliveryState.DEAD_LETTERED, DeliveryState.CANCELLED].map(
              (state) => (
                <option value={state}>{stateName(state)}</option>
              ),
            )}
          </select>
        </label>
        <label>
          Destination host
          <input
            value={filters.host}
            placeholder="api.example.com"
            onChange={(event) => change({ host: event.currentTarget.value })}
          />
        </label>
        <label>
          Created after
          <input type="datetime-local" value={filters.after} onChange={(event) => change({ after: event.currentTarget.value })} />
        </label>
        <label>
          Created before
          <input
            type="datetime-local"
            value={filters.before}
            onChange={(event) => change({ before: event.currentTarget.value })}
          />
        </label>
      </form>
      <ErrorLine error={error} />
      {page && (
        <>
          <DeliveryTable deliveries={page.deliveries} />
          {page.deliveries.length === 0 && <p class="muted">No deliveries match.</p>}
          <Pager pages={pages} next={page.next} />
        </>
      )}
    </section>
  );
}
