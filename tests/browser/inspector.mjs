// Browser test of the inspector's web UI in Debian's chromium, driven by playwright-core.
// Run by tests/browser/test_inspector_browser.c, which starts the cluster (3 nodes + gate + inspector),
// creates an object whose id is hostile HTML, and passes:
//   INSPECTOR_URL  http://127.0.0.1:PORT/
//   NODES          JSON [{"id","http","pid"}] of the running nodes (pid: for the kill -9 step)
//   OUT_DIR        where the screenshots go
//   SHARDS         the cluster's shard count
//   TOKEN          the inspector's admin token (entered in the UI's token field for the move)
//   GATE           http://127.0.0.1:PORT of a gate (the test sends calls through it: traffic for the stats)
// Exits 0 when every check passed; otherwise prints the failure and exits 1.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const URL_ = process.env.INSPECTOR_URL;
const NODES = JSON.parse(process.env.NODES || '[]');
const OUT = process.env.OUT_DIR || '.';
const SHARDS = Number(process.env.SHARDS || 64);
const TOKEN = process.env.TOKEN || '';
const GATE = process.env.GATE || '';
const TRAFFIC_ID = 'traffic-counter';

// Calls through the gate, one after the other, until stopped: the nodes count them, the inspector shows
// the rates.
function startTraffic() {
  let on = true, sent = 0;
  (async () => {
    const post = (p, body) => fetch(GATE + p, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
    await post('/api/v1/objects/create/SimpleCounter/' + TRAFFIC_ID, '');
    while (on) {
      try {
        await post('/api/v1/objects/call/SimpleCounter/' + TRAFFIC_ID + '/Increment', '{"request":{}}');
        sent++;
      } catch (e) { /* a node being killed: the next call goes on */ }
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return { stop: () => { on = false; return sent; } };
}
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
    check(GATE !== '', 'the test passes a gate for traffic');
    const traffic = startTraffic();
    await page.goto(URL_);

    // Overview.
    await poll(async () => (await page.textContent('#ov-nodes')) === NODES.length + ' / ' + NODES.length, 15000,
               'overview shows every node up');
    check(await page.evaluate(() => !!window.Chart && !!window.d3), 'Chart.js and d3 loaded from /vendor');
    await poll(() => page.evaluate(() => window.__inspector.sseLive === true), 10000, 'events stream open');
    check(true, 'overview: ' + (await page.textContent('#ov-nodes')) + ' nodes up, leader ' + (await page.textContent('#ov-leader')));
    // With calls flowing through the gate: calls/s > 0 on the overview, the top methods list the method.
    await poll(async () => Number(await page.textContent('#ov-calls')) > 0, 15000, 'overview calls/s > 0');
    check(true, 'overview: ' + (await page.textContent('#ov-calls')) + ' calls/s, p50/p99 ' + (await page.textContent('#ov-lat')) + ' ms');
    await poll(async () => (await page.textContent('#top-methods')).includes('SimpleCounter.Increment'), 10000,
               'top methods list SimpleCounter.Increment');
    check(true, 'top methods list SimpleCounter.Increment');
    await page.waitForTimeout(1500); // not a synchronisation: a couple more chart points for the screenshot
    await shot(page, 'overview');

    // Nodes.
    await view(page, 'nodes');
    const rows = await page.$$eval('#nodes-table tbody tr', (trs) => trs.length);
    check(rows === NODES.length, 'nodes table has ' + NODES.length + ' rows');
    await poll(() => page.$$eval('#nodes-table tbody td.calls', (tds) => tds.some((t) => Number(t.textContent) > 0)), 10000,
               'a node shows calls/s > 0');
    check(true, 'the nodes table shows calls/s > 0 on the node that owns the traffic');
    await poll(() => page.$$eval('#nodes-table tbody td.rss', (tds) => tds.length > 0 && tds.every((t) => / (K|M|G)iB$/.test(t.textContent))),
               10000, 'every node shows its RSS');
    await poll(() => page.$$eval('#nodes-table tbody td.cpu', (tds) => tds.length > 0 && tds.every((t) => / %$/.test(t.textContent))),
               10000, 'every node shows its CPU %');
    check(true, 'nodes table: RSS ' + (await page.$$eval('#nodes-table tbody td.rss', (tds) => tds.map((t) => t.textContent).join(', '))) +
          ', CPU ' + (await page.$$eval('#nodes-table tbody td.cpu', (tds) => tds.map((t) => t.textContent).join(', '))));
    await shot(page, 'nodes');

    // Types & methods: SimpleCounter's calls/s > 0; the auto-load types hide with the toggle.
    await view(page, 'types');
    await poll(() => page.$eval('#types-table tbody tr[data-type="SimpleCounter"] td.calls_s', (t) => Number(t.textContent) > 0),
               10000, 'SimpleCounter calls/s > 0 in the types table');
    check(true, 'types table: SimpleCounter calls/s > 0');
    const autoRows = () => page.$$eval('#types-table tbody tr', (trs) => trs.filter((t) => ['ShardMonitor', 'NodeMonitor', 'GlobalMonitor'].includes(t.dataset.type)).length);
    check((await autoRows()) > 0, 'the auto-load types are listed');
    await page.check('#hide-auto');
    check((await autoRows()) === 0, 'the toggle hides the auto-load types');
    await page.click('#types-table th[data-key="type"]');
    const names = await page.$$eval('#types-table tbody tr', (trs) => trs.map((t) => t.dataset.type));
    check(names.join() === [...names].sort((a, b) => a.localeCompare(b)).join(), 'sorted by type on a header click');
    await shot(page, 'types');
    await page.uncheck('#hide-auto');

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

    // Move shard 5 through the UI: the token in the header's field, the details' move control; the cell
    // then shows the new owner, equal to every node's /v1/shards.
    check(TOKEN !== '', 'the test passes the inspector token');
    check(await page.isHidden('#sd-actions'), 'no move control without a token');
    await page.fill('#token', TOKEN);
    await page.waitForSelector('#sd-actions:not(.hidden)');
    const before = (await json(NODES[0].http + '/v1/shards')).owners[5];
    const target = NODES.find((n) => n.id !== before).id;
    await page.selectOption('#sd-target', target);
    await page.click('#sd-move');
    await poll(async () => (await page.getAttribute('#sd-result', 'class')).includes('ok'), 15000,
               'the move answered ok (' + (await page.textContent('#sd-result')) + ')');
    check(true, 'move of shard 5 ' + before + ' → ' + target + ' committed: ' + (await page.textContent('#sd-result')));
    await poll(async () => {
      for (const n of NODES) if ((await json(n.http + '/v1/shards')).owners[5] !== target) return false;
      return true;
    }, 20000, 'every node\'s /v1/shards owns shard 5 on ' + target);
    await poll(async () => {
      const c = await page.evaluate(() => window.__inspector.cellCentre(5));
      await page.mouse.move(c.x, c.y);
      return (await page.getAttribute('#tooltip', 'data-owner')) === target;
    }, 10000, 'the heatmap cell of shard 5 shows owner ' + target);
    const owners = (await json(NODES[0].http + '/v1/shards')).owners;
    check(owners[5] === target, 'cell 5 changed owner ' + before + ' → ' + target + ', equal to /v1/shards');
    const sdText = await page.textContent('#sd-list');
    check(sdText.includes(target + ' (reached)'), 'the details show the target (' + sdText.replace(/\s+/g, ' ') + ')');

    // Pin it through the UI: every node's map says pinned; coloured by state the cell is the pinned colour.
    await page.click('#sd-pin');
    await poll(async () => {
      for (const n of NODES) if ((await json(n.http + '/v1/shards')).pinned[5] !== true) return false;
      return true;
    }, 15000, 'every node\'s /v1/shards pins shard 5');
    await page.selectOption('#heat-mode', 'state');
    await poll(() => page.evaluate(() => {
      const I = window.__inspector;
      if (I.shardState(5) !== 'pinned') return false;
      const cv = document.getElementById('heatmap');
      const cell = cv.width / Number(cv.dataset.cols);
      const px = cv.getContext('2d').getImageData((5 % Number(cv.dataset.cols)) * cell + 2, Math.floor(5 / Number(cv.dataset.cols)) * cell + 2, 1, 1).data;
      const hex = '#' + [px[0], px[1], px[2]].map((v) => v.toString(16).padStart(2, '0')).join('');
      return hex === I.STATE_COLOURS.pinned;
    }), 10000, 'shard 5 drawn in the pinned colour when coloured by state');
    check(true, 'a pinned shard is drawn distinctly (colour by state)');
    await shot(page, 'shards-state');
    await page.click('#sd-unpin');
    await poll(async () => (await json(NODES[0].http + '/v1/shards')).pinned[5] === false, 15000, 'shard 5 unpinned');
    await page.selectOption('#heat-mode', 'owner');

    // Drag a pill (HTML5 drag and drop) to another node's box: the shard moves there, the cell follows.
    const dragShard = 9;
    const dragFrom = (await json(NODES[0].http + '/v1/shards')).owners[dragShard];
    const dragTo = NODES.find((n) => n.id !== dragFrom).id;
    await poll(() => page.isVisible('#pills .pill[data-shard="' + dragShard + '"]'), 10000, 'pill of shard ' + dragShard + ' drawn');
    await page.dragAndDrop('#pills .pill[data-shard="' + dragShard + '"]', '#pills .node-box[data-node="' + dragTo + '"]');
    await poll(async () => (await page.getAttribute('#pills-result', 'class')).includes('ok'), 15000,
               'the drag\'s move answered ok (' + (await page.textContent('#pills-result')) + ')');
    await poll(async () => {
      for (const n of NODES) if ((await json(n.http + '/v1/shards')).owners[dragShard] !== dragTo) return false;
      return true;
    }, 20000, 'every node\'s /v1/shards owns shard ' + dragShard + ' on ' + dragTo + ' after the drag');
    await poll(async () => {
      const c = await page.evaluate((k) => window.__inspector.cellCentre(k), dragShard);
      await page.mouse.move(c.x, c.y);
      return (await page.getAttribute('#tooltip', 'data-owner')) === dragTo;
    }, 10000, 'the heatmap cell of shard ' + dragShard + ' shows owner ' + dragTo + ' after the drag');
    await poll(() => page.isVisible('#pills .node-box[data-node="' + dragTo + '"] .pill[data-shard="' + dragShard + '"]'), 10000,
               'the pill of shard ' + dragShard + ' is in ' + dragTo + '\'s box');
    check(true, 'dragged the pill of shard ' + dragShard + ' ' + dragFrom + ' → ' + dragTo + ': cell and /v1/shards changed owner');

    // Objects: the lookup finds the traffic counter's shard (FNV-1a, as the nodes), its owner as
    // /v1/shards says; that shard's heatmap cell is coloured when coloured by calls/s.
    await view(page, 'objects');
    await page.fill('#lk-type', 'SimpleCounter');
    await page.fill('#lk-id', TRAFFIC_ID);
    await page.click('#lookup button');
    await page.waitForSelector('#lk-result[data-shard]');
    const lkShard = Number(await page.getAttribute('#lk-result', 'data-shard'));
    const lkOwner = await page.getAttribute('#lk-result', 'data-owner');
    check((await json(NODES[0].http + '/v1/shards')).owners[lkShard] === lkOwner,
          'lookup: ' + TRAFFIC_ID + ' is on shard ' + lkShard + ', owner ' + lkOwner + ' as /v1/shards says');
    // Active as the inspector's last poll saw it (up to a second behind, e.g. right after its shard moved).
    await poll(async () => {
      await page.click('#lookup button');
      await page.waitForSelector('#lk-result[data-shard]');
      return (await page.getAttribute('#lk-result', 'data-active')) === 'true';
    }, 10000, 'lookup: the counter is active');
    check(true, 'lookup: the counter is active');
    await shot(page, 'objects-lookup');

    // Objects: clicking the counter's row shows its state (proto3 JSON), fetched by the inspector from the
    // node where it is active; the value lies between what that node answered before and after the click
    // (the traffic keeps incrementing it).
    await page.fill('#obj-filter', TRAFFIC_ID);
    const rowSel = '#objects-table tbody tr[data-id="' + TRAFFIC_ID + '"]';
    await poll(() => page.isVisible(rowSel), 10000, 'the counter\'s row is listed');
    const stateUrl = (n) => n.http + '/v1/objects/SimpleCounter/' + encodeURIComponent(TRAFFIC_ID);
    await poll(async () => {
      const ownerId = (await json(NODES[0].http + '/v1/shards')).owners[lkShard];
      const owner = NODES.find((n) => n.id === ownerId);
      const before = Number((await json(stateUrl(owner))).state.value);
      await page.click(rowSel);
      await poll(() => page.getAttribute('#obj-state', 'data-loaded'), 10000, 'the state panel loaded');
      if ((await page.getAttribute('#obj-state', 'data-loaded')) !== 'ok') return false;
      const shown = JSON.parse(await page.textContent('#os-json'));
      const node = await page.getAttribute('#obj-state', 'data-node');
      const after = Number((await json(stateUrl(owner))).state.value);
      const v = Number(shown.value);
      check(node === ownerId, 'the state comes from the counter\'s owner ' + ownerId);
      check(v >= 1 && before <= v && v <= after, 'the state panel shows value ' + v + ' (the owner said ' + before +
            ' before, ' + after + ' after)');
      return true;
    }, 15000, 'the state panel shows the counter\'s value');
    check((await page.textContent('#os-title')).includes(TRAFFIC_ID), 'the panel names the object');
    await shot(page, 'objects-state');
    await page.click('#os-close');
    check(await page.isHidden('#obj-state'), 'the state panel closes');
    await page.fill('#obj-filter', '');
    await view(page, 'shards');
    await page.selectOption('#heat-mode', 'calls');
    await poll(() => page.evaluate((k) => {
      const cv = document.getElementById('heatmap');
      const cols = Number(cv.dataset.cols), cell = cv.width / cols;
      const px = cv.getContext('2d').getImageData((k % cols) * cell + 2, Math.floor(k / cols) * cell + 2, 1, 1).data;
      return window.__inspector.state.stats.shard_calls_s[k] > 0 && !(px[0] === 0xee && px[1] === 0xf1 && px[2] === 0xf6);
    }, lkShard), 10000, 'shard ' + lkShard + ' coloured by its calls/s');
    check(true, 'heatmap by calls/s: shard ' + lkShard + ' coloured');
    await shot(page, 'shards-calls');
    await page.selectOption('#heat-mode', 'owner');

    // Objects: the hostile id is shown as text and never runs.
    await view(page, 'objects');
    await page.fill('#obj-filter', 'onerror');
    // The view lists active objects; the moves above may have made the leader move the object's shard too
    // (rebalancing), which deactivates it: a call through the gate activates it again wherever it is now.
    const activate = () => fetch(GATE + '/api/v1/objects/call/SimpleCounter/' + encodeURIComponent(XSS_ID) + '/GetValue',
      { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"request":{}}' }).catch(() => {});
    await poll(async () => {
      await activate();
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
    await poll(() => page.$$eval('#events-list li', (lis, k) => lis.some((li) => li.textContent.includes('shard ' + k.s + ': ' + k.from + ' → ' + k.to) &&
                                                                  / in \d+ ms$/.test(li.textContent)), { s: dragShard, from: dragFrom, to: dragTo }),
               10000, 'the timeline shows the dragged move of shard ' + dragShard + ' with its duration (from the change feed)');
    check(true, 'events: the move of shard ' + dragShard + ' with its duration');
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
    for (const v of ['overview', 'nodes', 'shards', 'types', 'objects', 'events']) {
      await view(page, v);
      await page.waitForTimeout(v === 'objects' ? 1500 : 500);
      const wide = await page.evaluate(() => document.documentElement.scrollWidth);
      check(wide <= 1920, v + ' at 1920x1080 fits the width (' + wide + ' px)');
      await shot(page, v + '-1920');
    }

    check(traffic.stop() > 0, 'calls were sent through the gate');
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
