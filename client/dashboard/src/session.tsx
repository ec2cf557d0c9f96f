// The signed-in session every view works in: the clients, and a way out
// when the server stops accepting the key.
import { createContext } from "preact";
import { useContext } from "preact/hooks";

import { describe, isUnauthenticated, type Herald } from "./api";

/** What a view needs from the session. */
export interface Session {
  /** Clients calling with the tab's key. */
  herald: Herald;
  /** Forgets the key and shows the sign-in form with `message`. */
  signOut: (message: string | null) => void;
}

export const SessionContext = createContext<Session | null>(null);

/** The session of the view; only views under the signed-in shell call it. */
export function useSession(): Session {
  const session = useContext(SessionContext);
  if (!session) throw new Error("useSession outside the signed-in shell");
  return session;
}

/** Turns a failed call into a message; a refused key signs out instead. */
export function useReport(): (error: unknown) => string {
  const { signOut } = useSession();
  return (error) => {
    if (isUnauthenticated(error)) {
      signOut("The API key stopped being accepted: it was revoked, or its tenant removed.");
    }
    return describe(error);
  };
}
