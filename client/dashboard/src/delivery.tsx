// One delivery: its request (secret-looking header values never shown),
// every attempt, and a cancel for a pending one.
import { useEffect, useState } from "preact/hooks";

import { AttemptError, DeliveryState, HttpMethod, type Delivery } from "@herald/client";
import { bodyText, duration, isSecretHeader, stateName, time } from "./format";
import { href } from "./route";
import { useReport, useSession } from "./session";
import { ErrorLine } from "./widgets";

export function DeliveryPage({ id }: { id: string }) {
  const { herald } = useSession();
  const report = useReport();
  const [delivery, setDelivery] = useState<Delivery | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [confirming, setConfirming] = useState(false);

  useEffect(() => {
    let current = true;
    setDelivery(null);
    setError(null);
    herald.deliveries
      .getDelivery({ id })
      .then((response) => current && setDelivery(response.delivery ?? null))
      .catch((failure) => current && setError(report(failure)));
    return () => {
      current = false;
    };
    // `report` is rebuilt at each render; the page follows its id.
  }, [herald, id]);

  const cancel = async () => {
    setConfirming(false);
    try {
      const response = await herald.deliveries.cancelDelivery({ id });
      setDelivery(response.delivery ?? null);
    } catch (failure) {
      setError(report(failure));
    }
  };

  return (
    <section aria-labelledby="delivery-title">
      <p>
        <a href={href("deliveries")}>← Deliveries</a>
      </p>
      <h1 id="delivery-title">
        Delivery <code>{id}</code>
      </h1>
      <ErrorLine error={error} />
      {delivery && (
        <>
          <dl class="facts">
            <dt>State</dt>
            <dd>
              <span class={`badge state-${stateName(delivery.state)}`} data-state={stateName(delivery.state)}>
                {stateName(delivery.state)}
              </span>
            </dd>
            <dt>Request</dt>
            <dd class="url">
              {HttpMethod[delivery.method]} {delivery.url}
            </dd>
            <dt>Attempts</dt>
            <dd>
              {delivery.attemptCount} of at most {delivery.maxAttempts}
            </dd>
            <dt>Idempotency key</dt>
            <dd>{delivery.idempotencyKey || "—"}</dd>
            <dt>Created</dt>
            <dd>{time(delivery.createTime)}</dd>
            <dt>Next attempt</dt>
            <dd>{time(delivery.nextAttemptTime)}</dd>
            <dt>Deadline</dt>
            <dd>{time(delivery.deadlineTime)}</dd>
            <dt>Finished</dt>
            <dd>{time(delivery.finishTime)}</dd>
          </dl>
          {delivery.state === DeliveryState.PENDING &&
            (confirming ? (
              <p class="confirm" role="alertdialog" aria-label="Cancel this delivery?">
                No further attempt will start. Cancel this delivery?{" "}
                <button class="danger" onClick={cancel} autofocus>
                  Cancel delivery
                </button>{" "}
                <button onClick={() => setConfirming(false)}>Keep it</button>
              </p>
            ) : (
              <button class="danger" onClick={() => setConfirming(true)}>
                Cancel…
              </button>
            ))}
          <h2>Headers</h2>
          <div class="table-wrap">
            <table>
              <tbody>
                {delivery.contentType && (
                  <tr>
                    <th scope="row">content-type</th>
                    <td>{delivery.contentType}</td>
                  </tr>
                )}
                {delivery.headers.map((header) => (
                  <tr>
                    <th scope="row">{header.name}</th>
                    <td>{isSecretHeader(header.name) ? <span class="muted">hidden</span> : header.value}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <h2>Body</h2>
          <pre class="body">{bodyText(delivery.body)}</pre>
          <h2>Attempts</h2>
          <div class="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">#</th>
                  <th scope="col">Started</th>
                  <th scope="col">Duration</th>
                  <th scope="col">Result</th>
                  <th scope="col">Error</th>
                  <th scope="col">Response</th>
                </tr>
              </thead>
              <tbody>
                {delivery.attempts.map((attempt) => (
                  <tr data-attempt={attempt.number}>
                    <td>{attempt.number}</td>
                    <td>{time(attempt.startTime)}</td>
                    <td>{duration(attempt.duration)}</td>
                    <td>
                      {attempt.statusCode
                        ? `HTTP ${attempt.statusCode}`
                        : attempt.error === undefined
                          ? "in flight"
                          : (AttemptError[attempt.error] ?? String(attempt.error)).toLowerCase().replaceAll("_", " ")}
                    </td>
                    <td>{attempt.errorMessage || "—"}</td>
                    <td>
                      <pre class="excerpt">{attempt.responseExcerpt.length ? bodyText(attempt.responseExcerpt) : "—"}</pre>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          {delivery.attempts.length === 0 && <p class="muted">No attempt yet.</p>}
        </>
      )}
    </section>
  );
}
