// Destinations: each receiver's state, circuit, load and recent health,
// with pause, resume and enable.
import { useEffect, useState } from "preact/hooks";

import { CircuitState, DestinationState, type Destination } from "@herald/client";
import { duration, time } from "./format";
import { useReport, useSession } from "./session";
import { ErrorLine } from "./widgets";

const name = (value: string | undefined) => (value ?? "unknown").toLowerCase().replaceAll("_", "-");

export function Destinations() {
  const { herald } = useSession();
  const report = useReport();
  const [destinations, setDestinations] = useState<Destination[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [reloads, setReloads] = useState(0);

  useEffect(() => {
    let current = true;
    (async () => {
      const all: Destination[] = [];
      let pageToken = "";
      do {
        const page = await herald.destinations.listDestinations({ pageSize: 1000, pageToken });
        all.push(...page.destinations);
        pageToken = page.nextPageToken;
      } while (pageToken);
      if (current) setDestinations(all);
    })().catch((failure) => current && setError(report(failure)));
    return () => {
      current = false;
    };
    // `report` is rebuilt at each render; the listing reloads on demand.
  }, [herald, reloads]);

  const act = async (action: () => Promise<unknown>) => {
    setError(null);
    try {
      await action();
      setReloads((n) => n + 1);
    } catch (failure) {
      setError(report(failure));
    }
  };

  return (
    <section aria-labelledby="destinations-title">
      <h1 id="destinations-title">Destinations</h1>
      <p>
        <button onClick={() => setReloads((n) => n + 1)}>Refresh</button>{" "}
        <span class="muted">Figures cover the last 5 minutes and lag a few seconds.</span>
      </p>
      <ErrorLine error={error} />
      {destinations && destinations.length === 0 && <p class="muted">No destination yet: they appear once sent to.</p>}
      {destinations && destinations.length > 0 && (
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Destination</th>
                <th scope="col">State</th>
                <th scope="col">Circuit</th>
                <th scope="col">In flight</th>
                <th scope="col">Attempts</th>
                <th scope="col">Success</th>
                <th scope="col">Mean latency</th>
                <th scope="col">Action</th>
              </tr>
            </thead>
            <tbody>
              {destinations.map((destination) => {
                const target = { destination: destination.destination };
                const ratio = destination.recent?.successRatio;
                return (
                  <tr data-destination={destination.destination} key={destination.destination}>
                    <td class="url">{destination.destination}</td>
                    <td>
                      <span class={`badge destination-${name(DestinationState[destination.state])}`}>
                        {name(DestinationState[destination.state])}
                      </span>
                      {destination.stateReason && <div class="muted">{destination.stateReason}</div>}
                    </td>
                    <td>
                      {name(CircuitState[destination.circuit])}
                      {destination.circuit === CircuitState.OPEN && (
                        <div class="muted">probe at {time(destination.nextProbeTime)}</div>
                      )}
                    </td>
                    <td>
                      {destination.inFlight}/{destination.policy?.maxInFlight ?? "—"}
                    </td>
                    <td>{String(destination.recent?.attempts ?? 0n)}</td>
                    <td>{ratio === undefined ? "—" : `${(ratio * 100).toFixed(1)} %`}</td>
                    <td>{duration(destination.recent?.meanLatency)}</td>
                    <td>
                      {destination.state === DestinationState.ACTIVE && (
                        <button onClick={() => act(() => herald.destinations.pauseDestination({ ...target, reason: "paused from the dashboard" }))}>
                          Pause
                        </button>
                      )}
                      {destination.state === DestinationState.PAUSED && (
                        <button onClick={() => act(() => herald.destinations.resumeDestination(target))}>Resume</button>
                      )}
                      {destination.state === DestinationState.DISABLED && (
                        <button onClick={() => act(() => herald.destinations.enableDestination(target))}>Enable</button>
                      )}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
