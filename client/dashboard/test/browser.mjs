// The browser the dashboard's tests drive: Debian's chromium through
// playwright-core, which downloads no browser of its own.
import { chromium } from "playwright-core";

/** Where Debian's chromium package puts the browser; CHROMIUM overrides it. */
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

/** Launches headless chromium; close it when done. */
export function launch() {
  // The sandbox needs user namespaces, which CI's containers (running as
  // root) do not give; the pages loaded are the test's own.
  return chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
}

/**
 * A fresh tab (its own sessionStorage) at `url`, failing the test on any
 * error the page throws.
 */
export async function openPage(browser, url, viewport = { width: 1280, height: 900 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (error) => errors.push(error));
  await page.goto(url);
  return { page, errors, close: () => context.close() };
}
