// The dashboard during a demo run, in Debian's chromium driven by playwright-core: the outcome counts move without
// a reload, a leg's ledger opens from the recent legs, the pages pass basic accessibility checks, and the
// screenshots docs/OPERATING.md shows are taken at desktop and phone widths. Started by run.sh.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };
// Traffic long enough for the counts to move while the page watches; --hold keeps the service up after it.
const DEMO_SECONDS = "25";

let demo;
let dashboard;
let browser;
let dataDir;
let demoLog = "";

/// Starts the demo and answers the dashboard's URL, which it prints at start.
function startDemo() {
  dataDir = mkdtempSync(join(tmpdir(), "wrapup-browser-"));
  demo = spawn(process.env.WRAPUP_BIN, ["demo", "--quiet", "--hold", "--duration", DEMO_SECONDS, "--data-dir", dataDir], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the demo printed no dashboard URL in 90 s:\n" + demoLog)), 90_000);
    const read = (chunk) => {
      demoLog += chunk.toString();
      const found = demoLog.match(/Dashboard: (http:\/\/\S+)/);
      if (found) {
        clearTimeout(timer);
        resolve(found[1]);
      }
    };
    demo.stdout.on("data", read);
    demo.stderr.on("data", read);
    demo.on("exit", (code) => reject(new Error(`the demo exited (${code}) before serving:\n${demoLog}`)));
  });
}

async function stopDemo() {
  if (!demo || demo.exitCode !== null) return;
  const exited = new Promise((resolve) => demo.on("exit", resolve));
  demo.kill("SIGINT");
  const killer = setTimeout(() => demo.kill("SIGKILL"), 60_000);
  await exited;
  clearTimeout(killer);
}

before(async () => {
  dashboard = await startDemo();
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
  });
});

after(async () => {
  if (browser) await browser.close();
  await stopDemo();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});


async function newPage(viewport) {
  const page = await browser.newPage({ viewport });
  const problems = [];
  // The strict CSP reports what it blocked on the console: any such line is a bug in the page. Failed loads are
  // judged by their response below, where the optional routes can be told apart.
  page.on("console", (m) => m.type() === "error" && !m.text().startsWith("Failed to load resource") && problems.push(m.text()));
  page.on("pageerror", (e) => problems.push(String(e)));
  page.on("response", (r) => {
    if (r.status() >= 400) problems.push(`${r.status()} ${new URL(r.url()).pathname}`);
  });
  page.problems = problems;
  return page;
}

/// The legs the live table shows, over every connection.
async function liveLegs(page) {
  return page.$$eval('#live td[data-outcome="legs"]', (cells) => cells.reduce((n, c) => n + Number(c.textContent), 0));
}

/// Opens the review queue page (server-rendered, plain forms).
async function openReviewQueue(page) {
  await page.goto(new URL("/dashboard/review", dashboard).href);
  await page.locator("h1", { hasText: "Review queue" }).waitFor();
}


/// Basic accessibility checks on the page as rendered: a language, one h1, the landmarks, a label for every form
/// field, an accessible name for everything a user can operate, and text contrast of at least 4.5:1 (3:1 for large
/// text) against the background it is drawn on.
async function accessibilityProblems(page) {
  return page.evaluate(() => {
    const problems = [];
    const text = (el) => (el ? el.textContent.replace(/\s+/g, " ").trim() : "");
    const name = (el) =>
      el.getAttribute("aria-label") ||
      (el.getAttribute("aria-labelledby") || "").split(" ").map((id) => text(document.getElementById(id))).join(" ").trim() ||
      (el.labels && [...el.labels].map(text).join(" ").trim()) ||
      el.getAttribute("alt") ||
      el.getAttribute("title") ||
      text(el);
    const describe = (el) => el.outerHTML.slice(0, 120);
    if (!document.documentElement.lang) problems.push("the page has no lang");
    if (document.querySelectorAll("h1").length !== 1) problems.push("the page needs exactly one h1");
    for (const landmark of ["main", "nav", "header"]) {
      if (!document.querySelector(landmark)) problems.push(`no ${landmark} landmark`);
    }
    for (const field of document.querySelectorAll("input:not([type=hidden]), select, textarea")) {
      if (!(field.labels && field.labels.length) && !field.getAttribute("aria-label") && !field.getAttribute("aria-labelledby")) {
        problems.push("a field without a label: " + describe(field));
      }
    }
    const operable = "a[href], button, input, select, textarea, [tabindex], [role], img, svg[role]";
    for (const el of document.querySelectorAll(operable)) {
      if (el.closest("[aria-hidden=true]")) continue;
      if (el.matches("main") || el.getAttribute("role") === "status") continue;
      if (!name(el)) problems.push("no accessible name: " + describe(el));
    }
    const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
    const luminance = ([r, g, b]) => {
      const f = (v) => ((v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const background = (el) => {
      for (let e = el; e; e = e.parentElement) {
        const c = rgb(getComputedStyle(e).backgroundColor);
        if (c.length === 3 || (c.length === 4 && c[3] > 0.99)) return c.slice(0, 3);
      }
      return [255, 255, 255];
    };
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    const seen = new Set();
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const el = node.parentElement;
      if (!node.textContent.trim() || seen.has(el) || !el.checkVisibility()) continue;
      seen.add(el);
      const style = getComputedStyle(el);
      if (el.closest(".visually-hidden, .skip")) continue;
      const [l1, l2] = [luminance(rgb(style.color).slice(0, 3)), luminance(background(el))].sort((a, b) => b - a);
      const ratio = (l1 + 0.05) / (l2 + 0.05);
      const size = parseFloat(style.fontSize);
      const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
      if (ratio < (large ? 3 : 4.5)) problems.push(`contrast ${ratio.toFixed(2)}: ${describe(el)}`);
    }
    return problems;
  });
}

/// Keyboard: the first Tab lands on the skip link, and focus is drawn.
async function keyboardProblems(page) {
  await page.keyboard.press("Tab");
  return page.evaluate(() => {
    const el = document.activeElement;
    const problems = [];
    if (!el || !el.classList.contains("skip")) problems.push("the first Tab does not reach the skip link");
    const style = el && getComputedStyle(el);
    if (!style || style.outlineStyle === "none" || parseFloat(style.outlineWidth) < 2) problems.push("focus is not visible");
    return problems;
  });
}

let ledgerUrl;

test("the outcome counts move without a reload", async () => {
  const page = await newPage(DESKTOP);
  await page.goto(dashboard);
  await page.locator("#live[data-updates]").waitFor({ timeout: 15_000 });
  const first = await liveLegs(page);
  await page.evaluate(() => (window.stillTheSamePage = true));
  await page.waitForFunction(
    (before) => [...document.querySelectorAll('#live td[data-outcome="legs"]')].reduce((n, c) => n + Number(c.textContent), 0) > before,
    first,
    { timeout: 30_000, polling: 250 },
  );
  const later = await liveLegs(page);
  assert.ok(later > first, `legs ${first} -> ${later}`);
  assert.equal(await page.evaluate(() => window.stillTheSamePage), true, "the page was not reloaded");
  assert.match(await page.locator("#live-status").textContent(), /Live/);
  assert.deepEqual(page.problems, []);
  await page.close();
});

test("a leg's ledger opens from the recent legs as a timeline", async () => {
  const page = await newPage(DESKTOP);
  await page.goto(dashboard);
  const link = page.locator("#recent a").first();
  await link.waitFor({ timeout: 15_000 });
  await link.click();
  await page.waitForURL(/\/dashboard\/legs\/[^/]+\/[^/]+\/[^/]+$/);
  ledgerUrl = page.url();
  assert.match(await page.locator("h1").textContent(), /^Leg /);
  assert.ok((await page.locator("ol.timeline > li").count()) >= 1, "the ledger has lines");
  assert.deepEqual(page.problems, []);
  await page.close();
});

test("an operator resolves a review item with the queue's plain form, and the leg's ledger shows who did", async () => {
  const page = await newPage(DESKTOP);
  // The demo's rule "retention messages (misconfigured on purpose)" decides a code the Retention queue does not
  // have: those legs wait for a person. The overview's live counts (server-sent events) say when a leg ends in
  // review; the queue page is read then, and again at each further one.
  const deadline = Date.now() + 90_000;
  // Runs in the page: the legs in review, over every connection.
  const reviewCount = () =>
    [...document.querySelectorAll('#live td[data-outcome="review"]')].reduce((n, c) => n + Number(c.textContent), 0);
  const moreThan = (after) =>
    [...document.querySelectorAll('#live td[data-outcome="review"]')].reduce((n, c) => n + Number(c.textContent), 0) >
    after;
  let seen = 0;
  let item;
  for (;;) {
    await page.goto(dashboard);
    const timeout = Math.max(1, deadline - Date.now());
    await page.waitForFunction(moreThan, seen, { timeout }).catch(() => {
      throw new Error("no leg of the misconfigured rule waited for a person during the demo");
    });
    seen = await page.evaluate(reviewCount);
    await openReviewQueue(page);
    item = page.locator("ol.review > li", { hasText: "Escalated" }).first();
    if ((await item.count()) > 0) break;
  }
  mkdirSync(process.env.SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(process.env.SCREENSHOTS, "review-queue-desktop.png") });
  const form = item.locator('form[action$="/resolve"]');
  await form.getByLabel("Code").fill("Customer retained");
  await form.getByLabel("Note").fill("confirmed with the customer");
  await form.getByLabel("Your name").fill("Dana from operations");
  await Promise.all([
    page.waitForURL(/\/dashboard\/legs\/[^/]+\/[^/]+\/[^/]+$/),
    form.getByRole("button", { name: "Resolve" }).click(),
  ]);
  const ledger = await page.locator("ol.timeline").textContent();
  assert.match(ledger, /operator_resolved/, "the resolution is a line of the ledger");
  assert.match(ledger, /Dana from operations/, "with who resolved it");
  assert.match(ledger, /Customer retained/, "and the code");
  assert.equal(await page.locator('form[action$="/resolve"]').count(), 0, "a resolved leg offers no second resolution");
  assert.deepEqual(page.problems, []);
  await page.close();
});

test("the pages pass basic accessibility checks, with the keyboard too", async () => {
  const page = await newPage(DESKTOP);
  await page.goto(dashboard);
  await page.locator("#live[data-updates]").waitFor();
  await page.locator("#recent table").waitFor();
  assert.deepEqual(await accessibilityProblems(page), [], "overview");
  assert.deepEqual(await keyboardProblems(page), [], "overview, keyboard");
  assert.ok(ledgerUrl, "the ledger test ran first");
  await page.goto(ledgerUrl);
  assert.deepEqual(await accessibilityProblems(page), [], "ledger");
  await openReviewQueue(page);
  assert.deepEqual(await accessibilityProblems(page), [], "review queue");
  assert.deepEqual(page.problems, []);
  await page.close();
});

test("the screenshots for docs/OPERATING.md, at desktop and phone widths", async () => {
  mkdirSync(process.env.SCREENSHOTS, { recursive: true });
  const shot = (name) => join(process.env.SCREENSHOTS, name);
  const desktop = await newPage(DESKTOP);
  await desktop.goto(dashboard);
  await desktop.locator("#recent table").waitFor();
  await desktop.locator("#live[data-updates]").waitFor();
  await desktop.screenshot({ path: shot("dashboard-desktop.png") });
  await desktop.goto(ledgerUrl);
  await desktop.screenshot({ path: shot("ledger-desktop.png") });
  await desktop.close();

  const phone = await newPage(PHONE);
  await phone.goto(dashboard);
  await phone.locator("#live[data-updates]").waitFor();
  // Readable on a phone: nothing wider than the screen (tables scroll inside their own box).
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow}px wider than a 390px screen`);
  await phone.screenshot({ path: shot("dashboard-phone.png") });
  await phone.goto(ledgerUrl);
  assert.ok((await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)) <= 0, "ledger on a phone");
  await phone.close();
});
