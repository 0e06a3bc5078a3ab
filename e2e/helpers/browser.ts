/** Real Chromium through playwright-core: one browser per test file, a fresh context per device. */
import { mkdirSync } from 'node:fs';
import type { Browser, BrowserContext, BrowserContextOptions, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, inject } from 'vitest';
import { launchChromium } from '../../scripts/chromium.js';

export const demoUrl = inject('demoUrl');
const executablePath = inject('chromium');
/** False when Chromium is missing outside CI: the suite is skipped (global-setup said why). */
export const haveBrowser = executablePath !== null;

let browser: Browser | null = null;
const contexts: BrowserContext[] = [];

export function useBrowser(): void {
  beforeAll(async () => {
    if (executablePath) browser = await launchChromium(executablePath);
  });
  afterEach(async () => {
    await Promise.all(contexts.splice(0).map((context) => context.close()));
  });
  afterAll(async () => {
    await browser?.close();
  });
}

/** A new browser profile (its own OPFS and IndexedDB): one device. */
export async function newDevice(options: BrowserContextOptions = {}): Promise<BrowserContext> {
  if (!browser) throw new Error('useBrowser() was not called, or Chromium is missing');
  const context = await browser.newContext(options);
  contexts.push(context);
  return context;
}

/** Collects console errors and uncaught exceptions of a page, for assertions. */
export function pageErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(error.message));
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(message.text());
  });
  return errors;
}

const artifacts = new URL('../artifacts/', import.meta.url);

export async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: new URL(`${name}.png`, artifacts).pathname, fullPage: true });
}
