// Hash routes (#/live, #/deliveries/ID, ...): the page is one file served
// at `/`, so every view has an address without the server knowing views.
import { useEffect, useState } from "preact/hooks";

/** The current route's segments, e.g. ["deliveries", "0190..."]. */
export function useRoute(): string[] {
  const [hash, setHash] = useState(window.location.hash);
  useEffect(() => {
    const changed = () => setHash(window.location.hash);
    window.addEventListener("hashchange", changed);
    return () => window.removeEventListener("hashchange", changed);
  }, []);
  return hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
}

/** The address of a route. */
export function href(...segments: string[]): string {
  return `#/${segments.map(encodeURIComponent).join("/")}`;
}
