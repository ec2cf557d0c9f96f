// The dashboard's shell: sign-in, navigation and the views.
import { render } from "preact";
import { useCallback, useEffect, useState } from "preact/hooks";

import { connect, describe, isUnauthenticated, probe, storedKey, storeKey, type Herald } from "./api";
import { DeadLetters } from "./dead_letters";
import { Deliveries } from "./deliveries";
import { DeliveryPage } from "./delivery";
import { Destinations } from "./destinations";
import { Live } from "./live";
import { href, useRoute } from "./route";
import { SessionContext } from "./session";
import "./style.css";

/** Where the page stands with the server. */
type Access =
  | { kind: "checking" }
  | { kind: "signed-in"; herald: Herald; keyed: boolean }
  | { kind: "sign-in"; message: string | null }
  | { kind: "unreachable"; message: string };

const VIEWS = [
  { route: "live", title: "Live" },
  { route: "deliveries", title: "Deliveries" },
  { route: "dead-letters", title: "Dead letters" },
  { route: "destinations", title: "Destinations" },
] as const;

function App() {
  const [access, setAccess] = useState<Access>({ kind: "checking" });
  const check = useCallback(async (key: string | null) => {
    const herald = connect(key);
    try {
      await probe(herald);
      storeKey(key);
      setAccess({ kind: "signed-in", herald, keyed: key !== null });
    } catch (error) {
      if (!isUnauthenticated(error)) {
        setAccess({ kind: "unreachable", message: describe(error) });
        return;
      }
      storeKey(null);
      setAccess({
        kind: "sign-in",
        message: key === null ? null : "That API key was not accepted: it is wrong, or it was revoked.",
      });
    }
  }, []);
  useEffect(() => {
    void check(storedKey());
  }, [check]);
  const signOut = useCallback((message: string | null) => {
    storeKey(null);
    setAccess({ kind: "sign-in", message });
  }, []);

  switch (access.kind) {
    case "checking":
      return <p class="notice">Connecting to Herald…</p>;
    case "unreachable":
      return (
        <main class="notice">
          <p role="alert">Herald did not answer: {access.message}</p>
          <button onClick={() => void check(storedKey())}>Try again</button>
        </main>
      );
    case "sign-in":
      return <SignIn message={access.message} onKey={(key) => check(key)} />;
    case "signed-in":
      return (
        <SessionContext.Provider value={{ herald: access.herald, signOut }}>
          <Shell keyed={access.keyed} onSignOut={() => signOut(null)} />
        </SessionContext.Provider>
      );
  }
}

function SignIn({ message, onKey }: { message: string | null; onKey: (key: string) => Promise<void> }) {
  const [key, setKey] = useState("");
  const [busy, setBusy] = useState(false);
  return (
    <main class="sign-in">
      <h1>Herald</h1>
      <form
        onSubmit={async (event) => {
          event.preventDefault();
          setBusy(true);
          await onKey(key.trim());
          setBusy(false);
        }}
      >
        <label for="api-key">API key</label>
        <input
          id="api-key"
          type="password"
          autocomplete="off"
          required
          value={key}
          onInput={(event) => setKey(event.currentTarget.value)}
          autofocus
        />
        <p class="hint">Kept in this browser tab only, until it closes.</p>
        {message && (
          <p class="error" role="alert">
            {message}
          </p>
        )}
        <button type="submit" disabled={busy}>
          Sign in
        </button>
      </form>
    </main>
  );
}

function Shell({ keyed, onSignOut }: { keyed: boolean; onSignOut: () => void }) {
  const [view = "live", id] = useRoute();
  return (
    <>
      <header>
        <a class="brand" href={href("live")}>
          Herald
        </a>
        <nav aria-label="Views">
          {VIEWS.map(({ route, title }) => (
            <a href={href(route)} aria-current={view === route ? "page" : undefined}>
              {title}
            </a>
          ))}
        </nav>
        {keyed && (
          <button class="link" onClick={onSignOut}>
            Sign out
          </button>
        )}
      </header>
      <main>
        {view === "live" && <Live />}
        {view === "deliveries" && (id ? <DeliveryPage id={id} /> : <Deliveries />)}
        {view === "dead-letters" && <DeadLetters />}
        {view === "destinations" && <Destinations />}
      </main>
    </>
  );
}

render(<App />, document.getElementById("app")!);
