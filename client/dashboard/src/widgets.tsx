// Small pieces the views share.
import { useState } from "preact/hooks";

/** Page tokens walked so far: the last is the page shown. */
export function usePages() {
  const [tokens, setTokens] = useState<string[]>([""]);
  return {
    token: tokens[tokens.length - 1],
    number: tokens.length,
    /** Back to the first page (the filters changed). */
    reset: () => setTokens([""]),
    older: (next: string) => setTokens([...tokens, next]),
    newer: () => setTokens(tokens.slice(0, -1)),
  };
}

/** Newer and older buttons under a listing. */
export function Pager({ pages, next }: { pages: ReturnType<typeof usePages>; next: string }) {
  return (
    <nav class="pager" aria-label="Pages">
      <button disabled={pages.number === 1} onClick={pages.newer}>
        Newer
      </button>
      <span>Page {pages.number}</span>
      <button disabled={!next} onClick={() => pages.older(next)}>
        Older
      </button>
    </nav>
  );
}

/** A failed call's message, announced to screen readers. */
export function ErrorLine({ error }: { error: string | null }) {
  return error ? (
    <p class="error" role="alert">
      {error}
    </p>
  ) : null;
}
