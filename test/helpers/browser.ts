/**
 * Headless Chromium for the web console tests, through playwright-core and Debian's chromium package
 * (no browser download). playwright gives each launch a fresh temporary profile and removes it on close.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { after, before } from 'node:test';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import type { CliProcess } from './processes.js';

export const CHROMIUM = process.env.CANRELAY_CHROMIUM ?? '/usr/bin/chromium';
/** Repository root (this file runs from build/test/helpers/). */
export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const ARTIFACTS = join(ROOT, 'test', 'artifacts');
/** The built page; the agent and the bridge serve it only when it exists at their start. */
export const WEB_DIST = join(ROOT, 'dist', 'web');
/** The page's compiled scripts: web/src/x.ts is dist/web/x.js (web/build.mjs; the core files it uses are in dist/web/core/). */
export const WEB_JS = WEB_DIST;

/** Installs Debian's chromium when missing (as .ci/run does), or explains why it cannot. */
export function ensureChromium(): void {
  if (existsSync(CHROMIUM)) return;
  try {
    execFileSync('bash', [join(ROOT, '.ci', 'ensure-debs.sh'), 'chromium'], { stdio: 'inherit' });
  } catch (err) {
    throw new Error(`chromium is needed for the web tests and is not installed at ${CHROMIUM}: ${(err as Error).message}`);
  }
  if (!existsSync(CHROMIUM)) throw new Error(`chromium is still missing at ${CHROMIUM}`);
}

export function ensureWebBuilt(): void {
  if (!existsSync(join(WEB_DIST, 'index.html')) || !existsSync(join(WEB_JS, 'main.js'))) {
    throw new Error('dist/web is not built: run `node web/build.mjs` (part of `make build`) first');
  }
}

export interface TestBrowser {
  browser: Browser;
  /** A new context + page with the given viewport; closed with the browser. */
  page(opts?: { width?: number; height?: number; downloads?: boolean; dark?: boolean }): Promise<Page>;
  /** Uncaught errors of every page so far ("<url>: <message>"). */
  readonly errors: string[];
  /** Closes everything, then rejects if any page threw: every browser test fails on a page error. */
  close(): Promise<void>;
}

export async function launchBrowser(): Promise<TestBrowser> {
  ensureChromium();
  ensureWebBuilt();
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--headless',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      // The page must keep drawing in a background-like headless run: no timer throttling.
      '--disable-background-timer-throttling',
      '--disable-renderer-backgrounding',
    ],
    timeout: 30_000,
  });
  const contexts: BrowserContext[] = [];
  const errors: string[] = [];
  return {
    browser,
    errors,
    async page(opts = {}) {
      const ctx = await browser.newContext({
        viewport: { width: opts.width ?? 1280, height: opts.height ?? 800 },
        acceptDownloads: opts.downloads ?? true,
        colorScheme: opts.dark ? 'dark' : 'light',
      });
      contexts.push(ctx);
      const page = await ctx.newPage();
      page.setDefaultTimeout(15_000);
      // A thrown error in the page is a bug: shown at once, and close() (the file's after hook) fails on it.
      page.on('pageerror', (err) => {
        errors.push(`${page.url()}: ${err.stack ?? err.message}`);
        process.stderr.write(`[page error] ${err.message}\n`);
      });
      return page;
    },
    async close() {
      for (const c of contexts) await c.close().catch(() => {});
      await browser.close().catch(() => {});
      if (errors.length > 0) throw new Error(`uncaught page error(s):\n${errors.join('\n')}`);
    },
  };
}

/**
 * The set-up every browser test file shares, registered once per file: one Chromium launched before the
 * tests, and after them the processes stopped (newest first) and the browser closed last — closing fails
 * the file on an uncaught page error, once the processes are gone. `browser` is usable inside tests (it
 * delegates to the one launched). Temporary folders: tempDir() (processes.ts) removes them at exit.
 */
export function browserSuite(): { browser: TestBrowser; procs: CliProcess[] } {
  let launched: TestBrowser | undefined;
  const need = (): TestBrowser => {
    if (!launched) throw new Error('the browser is not launched yet: use it inside a test, not at load time');
    return launched;
  };
  const browser: TestBrowser = {
    get browser() {
      return need().browser;
    },
    get errors() {
      return need().errors;
    },
    page: (opts) => need().page(opts),
    close: async () => launched?.close(),
  };
  const procs: CliProcess[] = [];
  before(async () => {
    launched = await launchBrowser();
  });
  after(async () => {
    for (const p of [...procs].reverse()) await p.stop('SIGKILL');
    await launched?.close();
  });
  return { browser, procs };
}

/** Saves a full-page screenshot under test/artifacts/ (git-ignored) and returns its path. */
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path, fullPage: false });
  return path;
}

/** Collects uncaught page errors so a test can assert there were none. */
export function pageErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('pageerror', (err) => errors.push(err.message));
  return errors;
}
