// Browser test of the inspector's web UI in Debian's chromium, driven by playwright-core.
// Run by tests/browser/test_inspector_browser.c, which starts the cluster (3 nodes + gate + inspector),
// creates an object whose id is hostile HTML, and passes:
//   INSPECTOR_URL  http://127.0.0.1:PORT/
//   NODES          JSON [{"id","http","pid"}] of the running nodes (pid: for the kill -9 step)
//   OUT_DIR        where the screenshots go
//   SHARDS         the cluster's shard count
// Exits 0 when every check passed; otherwise prints the failure and exits 1.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const URL_ = process.env.INSPECTOR_URL;
const NODES = JSON.parse(process.env.NODES || '[]');
const OUT = process.env.OUT_DIR || '.';
const SHARDS = Number(process.env.SHARDS || 64);
const XSS_ID = '<img src=x onerror=window.__xss=1>';

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
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error('timed out after ' + ms + ' ms waiting for: ' + what + (last instanceof Error ? ' (' + last.message + ')' : ''));
}

async function json(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(url + ': HTTP ' + r.status);
  return r.json();
}

async function shot(page, name) {
  const file = path.join(OUT, 'inspector-' + name + '.png');
  await page.screenshot({ path: file });
  console.log('screenshot ' + file);
}

async function view(page, name) {
  await page.click('#tabs button[data-view="' + name + '"]');
  await page.waitForSelector('#view-' + name + '.active');
}

async function main() {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cverse-chromium-'));
  const ctx = await chromium.launchPersistentContext(userDataDir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1280, height: 800 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
           '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  const errors = [];
  try {
    const page = ctx.pages()[0] || (await ctx.newPage());
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    page.on('pageerror', (e) => errors.push('page error: ' + e.message));
    await page.goto(URL_);

    // Overview.
    await poll(async () => (await page.textContent('#ov-nodes')) === NODES.length + ' / ' + NODES.length, 15000,
               'overview shows every node up');
    check(await page.evaluate(() => !!window.Chart && !!window.d3), 'Chart.js and d3 loaded from /vendor');
    await poll(() => page.evaluate(() => window.__inspector.sseLive === true), 10000, 'events stream open');
    check(true, 'overview: ' + (await page.textContent('#ov-nodes')) + ' nodes up, leader ' + (await page.textContent('#ov-leader')));
    await page.waitForTimeout(1500); // a couple of chart points
    await shot(page, 'overview');

    // Nodes.
    await view(page, 'nodes');
    const rows = await page.$$eval('#nodes-table tbody tr', (trs) => trs.length);
    check(rows === NODES.length, 'nodes table has ' + NODES.length + ' rows');
    await shot(page, 'nodes');

    // Shards: one cell per shard, the hovered cell's owner equals the nodes' /v1/shards.
    await view(page, 'shards');
    const cells = await page.getAttribute('#heatmap', 'data-cells');
    check(Number(cells) === SHARDS, 'heatmap has one cell per shard (' + cells + ')');
    for (const s of [0, 5, Math.floor(SHARDS / 2), SHARDS - 1]) {
      await poll(async () => {
        const owners = (await json(NODES[0].http + '/v1/shards')).owners;
        const c = await page.evaluate((k) => window.__inspector.cellCentre(k), s);
        await page.mouse.move(c.x, c.y);
        const tip = await page.getAttribute('#tooltip', 'data-owner');
        const shard = await page.getAttribute('#tooltip', 'data-shard');
        return shard === String(s) && tip === owners[s];
      }, 10000, 'hovered shard ' + s + ' shows the owner of /v1/shards');
      check(true, 'shard ' + s + ': tooltip owner equals /v1/shards');
    }
    const c5 = await page.evaluate(() => window.__inspector.cellCentre(5));
    await page.mouse.click(c5.x, c5.y);
    await page.waitForSelector('#shard-details:not(.hidden)');
    check((await page.textContent('#sd-title')) === 'Shard 5', 'clicking a cell opens its details');
    await page.mouse.move(c5.x, c5.y);
    await shot(page, 'shards');

    // Objects: the hostile id is shown as text and never runs.
    await view(page, 'objects');
    await page.fill('#obj-filter', 'onerror');
    await poll(async () => {
      const ids = await page.$$eval('#objects-table tbody td:nth-child(2)', (tds) => tds.map((t) => t.textContent));
      return ids.includes(XSS_ID);
    }, 15000, 'the object with the hostile id is listed');
    check(true, 'object id shown verbatim as text');
    check(await page.evaluate(() => window.__xss === undefined), 'the id did not execute (window.__xss unset)');
    check((await page.$$('img')).length === 0, 'no <img> element was created from the id');
    await page.fill('#obj-filter', '');
    await page.waitForTimeout(800);
    await shot(page, 'objects');

    // Events.
    await view(page, 'events');
    const evs = await page.$$eval('#events-list li', (lis) => lis.length);
    check(evs > 0, 'events timeline lists ' + evs + ' events');
    await shot(page, 'events');

    // kill -9 a node that is not the leader: it turns down, its shards get other owners.
    const state = await json(URL_ + 'api/state');
    const victim = NODES.find((n) => n.id !== state.leader);
    process.kill(victim.pid, 'SIGKILL');
    console.log('killed ' + victim.id + ' (pid ' + victim.pid + ')');
    await view(page, 'nodes');
    await poll(() => page.$eval('#nodes-table tbody tr[data-node="' + victim.id + '"] .badge', (b) => b.textContent === 'down'),
               10000, victim.id + ' shown down');
    check(true, victim.id + ' shown down in the nodes table');
    await shot(page, 'nodes-after-kill');
    await view(page, 'shards');
    await poll(() => page.evaluate((id) => {
      const m = window.__inspector.state.shard_map;
      return m.known && m.owners.every((o) => o !== null && o !== id);
    }, victim.id), 30000, 'the shards of ' + victim.id + ' re-owned');
    check(true, 'the shards of ' + victim.id + ' re-owned in the UI');
    await shot(page, 'shards-after-kill');

    // 1920x1080 looks.
    await page.setViewportSize({ width: 1920, height: 1080 });
    await view(page, 'overview');
    await page.waitForTimeout(500);
    await shot(page, 'overview-1920');

    check(errors.length === 0, 'no console errors' + (errors.length ? ': ' + errors.join(' | ') : ''));
  } finally {
    await ctx.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
