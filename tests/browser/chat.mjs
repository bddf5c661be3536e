// Browser test of the chat demo (docs/push.md) in Debian's chromium, driven by playwright-core.
// Run by tests/integration/test_push.c (suite pushbrowser), which starts 3 nodes and a gate and passes:
//   GATE     http://127.0.0.1:PORT of the gate (its /chat page, event stream and calls)
//   OUT_DIR  where the screenshot goes
// Two pages join one room; a post on one (text that looks like HTML) appears on the other, as text.
// Exits 0 when every check passed; otherwise prints the failure and exits 1.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const GATE = process.env.GATE;
const OUT = process.env.OUT_DIR || '.';
const ROOM = 'room-' + Date.now();
const TEXT = '<img src=x onerror=window.__xss=1> hello from ann';

function check(cond, msg) {
  if (!cond) throw new Error('check failed: ' + msg);
  console.log('ok - ' + msg);
}

async function poll(fn, ms, what) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('timed out after ' + ms + ' ms waiting for: ' + what + (last instanceof Error ? ' (' + last.message + ')' : ''));
}

async function open(ctx, user, errors) {
  const page = await ctx.newPage();
  page.on('pageerror', (e) => errors.push(user + ': page error: ' + e.message));
  await page.goto(`${GATE}/chat?room=${ROOM}&user=${user}`);
  await poll(async () => (await page.textContent('#status')).startsWith('in ' + ROOM), 15000, user + ' joined');
  return page;
}

async function main() {
  check(!!GATE, 'the test passes a gate');
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cverse-chromium-'));
  const ctx = await chromium.launchPersistentContext(userDataDir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    viewport: { width: 900, height: 600 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
           '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  const errors = [];
  try {
    const ann = await open(ctx, 'ann', errors);
    const bob = await open(ctx, 'bob', errors);
    check(true, 'two pages joined ' + ROOM);
    await ann.fill('#post input[name=text]', TEXT);
    await ann.click('#post button');
    const got = await poll(async () => {
      const t = await bob.$$eval('#log .msg', (ms) => ms.map((m) => [m.querySelector('.user').textContent,
                                                                    m.querySelector('.text').textContent]));
      return t.find(([u, x]) => u === 'ann' && x === TEXT);
    }, 10000, "ann's post on bob's page");
    check(got, "ann's post appears on bob's page");
    await poll(async () => (await ann.$$('#log .msg')).length === 1, 5000, "ann's own page shows it once");
    check(true, "ann's page shows her post once");
    check(await bob.evaluate(() => document.querySelector('#log img') === null && !window.__xss),
          'the text stayed text (no element, no script)');
    await bob.fill('#post input[name=text]', 'hi ann');
    await bob.click('#post button');
    await poll(async () => (await ann.textContent('#log')).includes('hi ann'), 10000, "bob's reply on ann's page");
    check(true, "bob's reply appears on ann's page");
    const file = path.join(OUT, 'chat.png');
    await bob.bringToFront(); // a background page does not render: its screenshot would wait
    await bob.screenshot({ path: file });
    console.log('screenshot ' + file);
    check(errors.length === 0, 'no page errors' + (errors.length ? ': ' + errors.join('; ') : ''));
  } finally {
    await ctx.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (e) => {
  console.error('not ok - ' + e.message);
  process.exit(1);
});
