// cverse inspector UI. One snapshot (/api/state) is the truth; one EventSource (/events/stream) brings
// numbered events and triggers a snapshot refresh; on `resync` (events lost) the snapshot is refetched.
// Every text that comes from the cluster goes into the page with textContent (or d3's .text()), never
// innerHTML: object ids are user data.
'use strict';

(function () {
  // Heatmap colours when coloured by state (also the legend's).
  const STATE_COLOURS = { owned: '#2fbf71', pinned: '#7b3fe4', releasing: '#f5a524', down: '#9aa3b5', unassigned: '#e5484d' };
  const PALETTE = ['#4c78a8', '#f58518', '#54a24b', '#b279a2', '#e45756', '#72b7b2', '#eeca3b', '#9d755d',
                   '#ff9da6', '#bab0ac', '#2f4b7c', '#a05195'];
  const HISTORY = 180; // points of the overview's history chart (one per refresh)
  const MAX_PILLS = 400; // pills drawn per node; the rest is a count
  const MAX_GRAPH_OBJECTS = 300;
  const MAX_TABLE_OBJECTS = 1000;
  const AUTO_TYPES = ['ShardMonitor', 'NodeMonitor', 'GlobalMonitor']; // the demo's auto-load types

  const S = {
    state: null,          // last /api/state
    events: [],           // newest last, bounded
    lastEventId: 0,
    view: 'overview',
    heatMode: 'owner',
    selected: -1,         // shard shown in the details panel
    stateOf: null,        // {type, id} of the object whose state is shown
    pillsKey: '',         // owners signature the pills were drawn for
    history: { labels: [], up: [], objects: [] },
    charts: {},
    graph: null,
    graphKey: '',
    sort: { 'types-table': { key: 'calls_s', asc: false }, 'methods-table': { key: 'calls_s', asc: false } },
  };
  window.__inspector = S; // for tests and the curious

  const $ = (id) => document.getElementById(id);
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function nodeColour(i) { return i < 0 ? '#d6dae2' : PALETTE[i % PALETTE.length]; }
  function fmtTime(ms) { return ms ? new Date(ms).toLocaleTimeString() : '–'; }
  function fmtRate(v) { return v === null || v === undefined ? '–' : v >= 100 ? Math.round(v) : Math.round(v * 10) / 10; }
  function fmtMs(v) { return v === null || v === undefined ? '–' : v >= 100 ? Math.round(v) : Math.round(v * 100) / 100; }
  function fmtUptime(ms) {
    if (!ms) return '–';
    const s = Math.floor(ms / 1000);
    return s >= 86400 ? Math.floor(s / 86400) + 'd ' + Math.floor((s % 86400) / 3600) + 'h'
      : s >= 3600 ? Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm'
      : s >= 60 ? Math.floor(s / 60) + 'm ' + (s % 60) + 's' : s + 's';
  }
  function fmtBytes(b) {
    return b >= 1 << 30 ? (b / (1 << 30)).toFixed(1) + ' GiB' : b >= 1 << 20 ? (b / (1 << 20)).toFixed(1) + ' MiB'
      : Math.round(b / 1024) + ' KiB';
  }
  function stats() { return S.state && S.state.stats ? S.state.stats : null; }

  // ---- data ---------------------------------------------------------------------------------------------

  let refreshTimer = null;
  let fetching = false;
  async function refresh() {
    if (fetching) return;
    fetching = true;
    try {
      const r = await fetch('api/state', { cache: 'no-store' });
      if (!r.ok) throw new Error('HTTP ' + r.status);
      const st = await r.json();
      S.state = st;
      mergeEvents(st.events || []);
      recordHistory(st);
      render();
      setStatus(S.sseLive ? 'live' : 'polling', true);
    } catch (e) {
      setStatus('inspector unreachable', false);
    } finally {
      fetching = false;
    }
  }
  function scheduleRefresh(ms) {
    if (refreshTimer) return;
    refreshTimer = setTimeout(() => { refreshTimer = null; refresh(); }, ms);
  }

  function mergeEvents(list) {
    for (const ev of list) {
      if (ev.id > S.lastEventId) {
        S.events.push(ev);
        S.lastEventId = ev.id;
      }
    }
    if (S.events.length > 2000) S.events.splice(0, S.events.length - 2000);
  }

  function connectEvents() {
    if (!window.EventSource) return;
    // ?after: the events since the snapshot just rendered; on reconnects the browser sends Last-Event-ID.
    const es = new EventSource('events/stream?after=' + S.lastEventId);
    es.onopen = () => { S.sseLive = true; setStatus('live', true); };
    es.onerror = () => { S.sseLive = false; setStatus('reconnecting…', false); };
    es.onmessage = (m) => {
      let ev;
      try { ev = JSON.parse(m.data); } catch (e) { return; }
      mergeEvents([ev]);
      if (S.view === 'events') renderEvents();
      scheduleRefresh(200);
    };
    es.addEventListener('resync', () => {
      S.events = [];
      S.lastEventId = 0;
      refresh();
    });
  }

  function setStatus(text, ok) {
    $('status-text').textContent = text;
    $('live').className = 'dot ' + (ok ? 'live' : 'down');
  }

  function recordHistory(st) {
    const h = S.history;
    h.labels.push(new Date(st.time_ms || Date.now()).toLocaleTimeString());
    h.up.push(st.nodes_up);
    h.objects.push(st.nodes.reduce((a, n) => a + (n.reachable ? n.objects : 0), 0));
    if (h.labels.length > HISTORY) { h.labels.shift(); h.up.shift(); h.objects.shift(); }
  }

  // ---- views ------------------------------------------------------------------------------------------

  function showView(v) {
    S.view = v;
    if (location.hash !== '#' + v) history.replaceState(null, '', '#' + v);
    for (const b of document.querySelectorAll('#tabs button')) b.classList.toggle('active', b.dataset.view === v);
    for (const s of document.querySelectorAll('.view')) s.classList.toggle('active', s.id === 'view-' + v);
    render();
  }

  function render() {
    if (!S.state) return;
    if (S.view === 'overview') renderOverview();
    else if (S.view === 'nodes') renderNodes();
    else if (S.view === 'shards') renderShards();
    else if (S.view === 'types') renderTypes();
    else if (S.view === 'objects') renderObjects();
    else if (S.view === 'events') renderEvents();
  }

  function nodeIndex(id) { return S.state.nodes.findIndex((n) => n.id === id); }

  function renderOverview() {
    const st = S.state;
    $('ov-nodes').textContent = st.nodes_up + ' / ' + st.nodes_total;
    $('ov-leader').textContent = st.leader || 'none';
    $('ov-term').textContent = st.term;
    $('ov-shards').textContent = st.shards;
    const owners = st.shard_map.owners || [];
    $('ov-unassigned').textContent = st.shard_map.known ? owners.filter((o) => o === null).length : '–';
    $('ov-objects').textContent = st.nodes.reduce((a, n) => a + (n.reachable ? n.objects : 0), 0);
    $('ov-gates').textContent = st.gates.length;
    const last = S.events[S.events.length - 1];
    $('ov-event').textContent = last ? '#' + last.id + ' ' + last.type : '–';
    const sx = stats();
    $('ov-calls').textContent = sx ? fmtRate(sx.calls_s) : '–';
    $('ov-errors').textContent = sx ? fmtRate(sx.errors_s) : '–';
    $('ov-lat').textContent = sx ? fmtMs(sx.p50_ms) + ' / ' + fmtMs(sx.p99_ms) : '–';
    renderTopMethods(sx);
    if (!window.Chart) return;
    if (sx) {
      const h = sx.history;
      const labels = h.time_ms.map((t) => new Date(t).toLocaleTimeString());
      chart('chart-calls', 'line', {
        labels,
        datasets: [
          { label: 'calls/s', data: h.calls_s, borderColor: PALETTE[0], pointRadius: 0 },
          { label: 'errors/s', data: h.errors_s, borderColor: PALETTE[4], pointRadius: 0 },
        ],
      }, { scales: { y: { beginAtZero: true } } });
      chart('chart-latency', 'line', {
        labels,
        datasets: [
          { label: 'p50 ms', data: h.p50_ms, borderColor: PALETTE[2], pointRadius: 0, spanGaps: true },
          { label: 'p99 ms', data: h.p99_ms, borderColor: PALETTE[1], pointRadius: 0, spanGaps: true },
        ],
      }, { scales: { y: { beginAtZero: true } } });
    }
    chart('chart-history', 'line', {
      labels: S.history.labels,
      datasets: [
        { label: 'nodes up', data: S.history.up, borderColor: PALETTE[2], yAxisID: 'y', pointRadius: 0 },
        { label: 'objects', data: S.history.objects, borderColor: PALETTE[0], yAxisID: 'y1', pointRadius: 0 },
      ],
    }, { scales: { y: { beginAtZero: true, position: 'left', ticks: { precision: 0 } },
                   y1: { beginAtZero: true, position: 'right', grid: { drawOnChartArea: false } } } });
    chart('chart-nodes', 'bar', {
      labels: st.nodes.map((n) => n.id),
      datasets: [{ label: 'objects', data: st.nodes.map((n) => n.objects),
                   backgroundColor: st.nodes.map((n, i) => nodeColour(i)) }],
    }, { plugins: { legend: { display: false } } });
    const types = {};
    for (const o of st.objects) types[o.type] = (types[o.type] || 0) + 1;
    const tk = Object.keys(types).sort();
    chart('chart-types', 'doughnut', {
      labels: tk, datasets: [{ data: tk.map((k) => types[k]), backgroundColor: tk.map((k, i) => PALETTE[i % PALETTE.length]) }],
    }, {});
  }

  // Top methods: by calls/s, then errors, then p99 (the busiest first).
  function renderTopMethods(sx) {
    const tb = $('top-methods').tBodies[0];
    clear(tb);
    const rows = sx ? sx.methods.filter((m) => m.calls > 0) : [];
    rows.sort((a, b) => b.calls_s - a.calls_s || b.errors - a.errors || (b.p99_ms || 0) - (a.p99_ms || 0));
    for (const m of rows.slice(0, 8)) {
      const tr = el('tr');
      tr.appendChild(td(m.type + '.' + m.method));
      tr.appendChild(td(fmtRate(m.calls_s), 'num'));
      tr.appendChild(td(m.errors, 'num'));
      tr.appendChild(td(fmtMs(m.p99_ms), 'num'));
      tb.appendChild(tr);
    }
    if (!rows.length) {
      const tr = el('tr');
      const c = td('no calls yet');
      c.colSpan = 4;
      tr.appendChild(c);
      tb.appendChild(tr);
    }
  }

  function chart(id, type, data, options) {
    const c = S.charts[id];
    if (c) {
      c.data.labels = data.labels;
      data.datasets.forEach((d, i) => {
        if (c.data.datasets[i]) Object.assign(c.data.datasets[i], d);
        else c.data.datasets.push(d);
      });
      c.update('none');
      return;
    }
    S.charts[id] = new window.Chart($(id), {
      type, data, options: Object.assign({ responsive: true, maintainAspectRatio: false, animation: false }, options),
    });
  }

  function td(text, cls) { return el('td', cls, text); }

  function renderNodes() {
    const st = S.state;
    const tb = $('nodes-table').tBodies[0];
    clear(tb);
    const leader = st.nodes.find((n) => n.leader);
    const now = Date.now();
    for (const n of st.nodes) {
      const tr = el('tr');
      tr.dataset.node = n.id;
      const name = td(n.id);
      if (n.leader) name.appendChild(el('span', 'badge leader', 'leader'));
      tr.appendChild(name);
      const s = el('td');
      s.appendChild(el('span', 'badge ' + (n.up ? 'up' : 'down'), n.up ? 'up' : 'down'));
      if (n.draining) s.appendChild(el('span', 'badge draining', 'draining'));
      s.title = (!n.up && n.error ? n.error + '\n' : '') + 'last seen ' + fmtTime(n.last_seen_ms);
      tr.appendChild(s);
      tr.appendChild(td(n.role || '–'));
      tr.appendChild(td(n.state || '–'));
      tr.appendChild(td(n.reachable ? n.term : '–', 'num'));
      tr.appendChild(td(n.reachable ? n.commit_index + ' / ' + n.applied_index : '–', 'num'));
      const lag = leader && n.reachable ? Math.max(0, leader.commit_index - n.applied_index) : '–';
      tr.appendChild(td(lag, 'num'));
      const lease = n.lease_expiry_ms ? Math.round((n.lease_expiry_ms - now) / 100) / 10 + ' s' : '–';
      tr.appendChild(td(lease, 'num'));
      tr.appendChild(td(n.shards, 'num'));
      tr.appendChild(td(n.reachable ? n.objects : '–', 'num'));
      const ns = stats() ? stats().nodes.find((x) => x.id === n.id) : null;
      const live = ns && ns.live;
      tr.appendChild(td(live ? fmtRate(ns.calls_s) : '–', 'num calls'));
      tr.appendChild(td(live ? (Math.round(ns.error_rate * 1000) / 10) + ' %' : '–', 'num'));
      tr.appendChild(td(live ? fmtMs(ns.p50_ms) + ' / ' + fmtMs(ns.p99_ms) : '–', 'num'));
      tr.appendChild(td(ns && n.reachable && ns.rss_bytes ? fmtBytes(ns.rss_bytes) : '–', 'num rss'));
      tr.appendChild(td(ns && n.reachable && ns.cpu_pct != null ? ns.cpu_pct.toFixed(1) + ' %' : '–', 'num cpu'));
      tr.appendChild(td(ns && n.reachable ? fmtUptime(ns.uptime_ms) : '–', 'num'));
      const why = n.reachable ? (n.ready ? 'ready' : n.ready_reason || 'not ready') : (n.error || 'unreachable');
      const rc = td(why, 'why');
      rc.title = why;
      tr.appendChild(rc);
      const act = el('td', 'admin' + (token() ? '' : ' off'));
      for (const [label, drain] of [['Drain', true], ['Undrain', false]]) {
        const b = el('button', null, label);
        b.addEventListener('click', () => action('nodes/drain', { node: n.id, drain }, 'node-result'));
        act.appendChild(b);
      }
      tr.appendChild(act);
      tb.appendChild(tr);
    }
    const gb = $('gates-table').tBodies[0];
    clear(gb);
    for (const g of st.gates) {
      const tr = el('tr');
      tr.appendChild(td(g.id));
      tr.appendChild(td(g.http_addr));
      tr.appendChild(td(g.advertise_addr));
      gb.appendChild(tr);
    }
  }

  // ---- shards: heatmap --------------------------------------------------------------------------------

  function layout(n) {
    const cols = n >= 8192 ? 128 : Math.min(128, Math.max(8, Math.ceil(Math.sqrt(n * 2))));
    const rows = Math.ceil(n / cols);
    const cell = Math.max(4, Math.min(40, Math.floor(1024 / cols)));
    return { cols, rows, cell };
  }
  S.cellCentre = function (shard) { // page coordinates of a shard's cell (for tests and deep links)
    const L = layout(S.state.shards);
    const r = $('heatmap').getBoundingClientRect();
    return { x: r.left + (shard % L.cols) * L.cell + L.cell / 2, y: r.top + Math.floor(shard / L.cols) * L.cell + L.cell / 2 };
  };

  function shardObjects(s) { return (S.state.shard_map.objects || [])[s] || 0; }
  function shardCalls(s) { const x = stats(); return x ? x.shard_calls_s[s] || 0 : 0; }

  // A shard's state as the heatmap shows it: unassigned (no owner), down (its owner is down: it waits for
  // a new one), releasing (an operator's target differs from the owner: the owner hands it over), pinned,
  // owned.
  function shardState(s) {
    const m = S.state.shard_map;
    const owner = m.known ? m.owners[s] : null;
    if (owner === null) return 'unassigned';
    const i = nodeIndex(owner);
    if (i >= 0 && !S.state.nodes[i].up) return 'down';
    const target = (m.targets || [])[s];
    if (target && target !== owner) return 'releasing';
    return (m.pinned || [])[s] ? 'pinned' : 'owned';
  }
  S.shardState = shardState;
  S.STATE_COLOURS = STATE_COLOURS;

  function cellColour(s, maxObj) {
    const m = S.state.shard_map;
    const owner = m.known ? m.owners[s] : null;
    const i = owner === null ? -1 : nodeIndex(owner);
    if (S.heatMode === 'owner') return nodeColour(i);
    if (S.heatMode === 'objects' || S.heatMode === 'calls') {
      const v = S.heatMode === 'calls' ? shardCalls(s) : shardObjects(s);
      if (!v) return '#eef1f6';
      const t = Math.min(1, Math.log(1 + v) / Math.log(1 + maxObj));
      return 'rgb(' + Math.round(230 - 190 * t) + ',' + Math.round(240 - 150 * t) + ',' + Math.round(255 - 80 * t) + ')';
    }
    return STATE_COLOURS[shardState(s)];
  }

  function renderHeatmap() {
    const st = S.state;
    const L = layout(st.shards);
    const cv = $('heatmap');
    const w = L.cols * L.cell, h = L.rows * L.cell;
    if (cv.width !== w) cv.width = w;
    if (cv.height !== h) cv.height = h;
    cv.dataset.cells = String(st.shards);
    cv.dataset.cols = String(L.cols);
    const ctx = cv.getContext('2d');
    ctx.clearRect(0, 0, w, h);
    let maxObj = 1;
    for (let s = 0; s < st.shards; s++) maxObj = Math.max(maxObj, S.heatMode === 'calls' ? shardCalls(s) : shardObjects(s));
    const gap = L.cell >= 8 ? 1 : 0;
    const pinned = st.shard_map.pinned || [];
    for (let s = 0; s < st.shards; s++) {
      const x = (s % L.cols) * L.cell, y = Math.floor(s / L.cols) * L.cell;
      ctx.fillStyle = cellColour(s, maxObj);
      ctx.fillRect(x, y, L.cell - gap, L.cell - gap);
      if (pinned[s] && S.heatMode !== 'state' && L.cell >= 8) { // a pin mark in the corner (state mode colours it)
        ctx.fillStyle = STATE_COLOURS.pinned;
        ctx.fillRect(x + L.cell - gap - Math.ceil(L.cell / 3), y, Math.ceil(L.cell / 3), Math.ceil(L.cell / 3));
      }
    }
    if (S.selected >= 0 && S.selected < st.shards) {
      ctx.strokeStyle = '#1d2330';
      ctx.lineWidth = 2;
      ctx.strokeRect((S.selected % L.cols) * L.cell + 1, Math.floor(S.selected / L.cols) * L.cell + 1, L.cell - 3, L.cell - 3);
    }
    renderLegend();
  }

  function renderLegend() {
    const lg = $('heat-legend');
    clear(lg);
    const item = (colour, text) => {
      const s = el('span');
      const i = el('i');
      i.style.background = colour;
      s.appendChild(i);
      s.appendChild(document.createTextNode(text));
      lg.appendChild(s);
    };
    if (S.heatMode === 'owner') {
      S.state.nodes.forEach((n, i) => item(nodeColour(i), n.id));
      item(nodeColour(-1), 'unassigned');
      item(STATE_COLOURS.pinned, 'pinned (corner)');
    } else if (S.heatMode === 'state') {
      item(STATE_COLOURS.owned, 'owned'); item(STATE_COLOURS.pinned, 'pinned');
      item(STATE_COLOURS.releasing, 'releasing (moving to its target)'); item(STATE_COLOURS.down, 'owner down');
      item(STATE_COLOURS.unassigned, 'unassigned');
    } else {
      item('#eef1f6', 'none'); item('rgb(40,90,175)', 'most (log scale)' + (S.heatMode === 'calls' ? ' calls/s' : ' objects'));
    }
  }

  function shardAt(ev) {
    const L = layout(S.state.shards);
    const r = $('heatmap').getBoundingClientRect();
    const c = Math.floor((ev.clientX - r.left) / L.cell), row = Math.floor((ev.clientY - r.top) / L.cell);
    if (c < 0 || c >= L.cols || row < 0) return -1;
    const s = row * L.cols + c;
    return s < S.state.shards ? s : -1;
  }

  function shardInfo(s) {
    const m = S.state.shard_map;
    return { owner: m.known ? m.owners[s] : null, epoch: m.known ? m.epochs[s] : 0, objects: shardObjects(s),
             target: m.known ? (m.targets || [])[s] || null : null, pinned: m.known ? !!(m.pinned || [])[s] : false,
             state: shardState(s), calls_s: shardCalls(s) };
  }

  function onHeatMove(ev) {
    const tip = $('tooltip');
    if (!S.state) return;
    const s = shardAt(ev);
    if (s < 0) { tip.classList.add('hidden'); return; }
    const i = shardInfo(s);
    tip.textContent = 'shard ' + s + '\nowner ' + (i.owner || 'unassigned') + '\nstate ' + i.state +
      (i.target ? '\ntarget ' + i.target : '') + '\nepoch ' + i.epoch + '\nobjects ' + i.objects +
      '\ncalls/s ' + fmtRate(i.calls_s);
    tip.dataset.shard = String(s);
    tip.dataset.owner = i.owner || '';
    const wrap = $('heatmap').parentNode.getBoundingClientRect();
    tip.style.left = (ev.clientX - wrap.left + 14) + 'px';
    tip.style.top = (ev.clientY - wrap.top + 14) + 'px';
    tip.classList.remove('hidden');
  }

  function selectShard(s) {
    S.selected = s;
    renderShardDetails();
    renderHeatmap();
  }

  function renderShardDetails() {
    const p = $('shard-details');
    const s = S.selected;
    if (s < 0 || !S.state) { p.classList.add('hidden'); return; }
    p.classList.remove('hidden');
    const i = shardInfo(s);
    $('sd-title').textContent = 'Shard ' + s;
    const dl = $('sd-list');
    clear(dl);
    const row = (k, v) => { dl.appendChild(el('dt', null, k)); dl.appendChild(el('dd', null, v)); };
    const on = i.owner ? S.state.nodes[nodeIndex(i.owner)] : null;
    row('owner', i.owner || 'unassigned');
    row('owner status', on ? (on.up ? 'up' : 'down') + (on.draining ? ', draining' : '') : '–');
    row('state', i.state);
    row('target', i.target ? i.target + (i.target === i.owner ? ' (reached)' : ' (moving)') : 'none (the leader balances it)');
    row('pinned', i.pinned ? 'yes (rebalancing keeps it on its owner)' : 'no');
    row('epoch', i.epoch);
    row('active objects', i.objects);
    row('calls/s', fmtRate(i.calls_s));
    const moves = $('sd-moves');
    clear(moves);
    const mine = S.events.filter((e) => e.type === 'shard_moved' && e.shard === s).slice(-10).reverse();
    if (!mine.length) moves.appendChild(el('li', null, 'no moves seen since the inspector started'));
    for (const e of mine)
      moves.appendChild(el('li', null, fmtTime(e.time_ms) + '  ' + (e.from || 'unassigned') + ' → ' + (e.to || 'unassigned') + '  (epoch ' + e.epoch + ')'));
    const tgt = $('sd-target');
    const keep = tgt.value;
    clear(tgt);
    for (const n of S.state.nodes) {
      const o = el('option', null, n.id + (n.up ? '' : ' (down)'));
      o.value = n.id;
      tgt.appendChild(o);
    }
    if (keep) tgt.value = keep;
    $('sd-actions').classList.toggle('hidden', !token());
  }

  // Per-node pills, redrawn only when the owners change (never on every refresh).
  function renderPills() {
    const st = S.state;
    const owners = st.shard_map.owners || [];
    const pinnedList = st.shard_map.pinned || [];
    const key = owners.join(',') + '|' + st.nodes.map((n) => n.up).join(',') + '|' + (st.shard_map.objects || []).join(',') +
      '|' + pinnedList.join(',');
    if (key === S.pillsKey) return;
    S.pillsKey = key;
    const box = $('pills');
    clear(box);
    const groups = st.nodes.map(() => []);
    const none = [];
    owners.forEach((o, s) => { const i = o === null ? -1 : nodeIndex(o); (i < 0 ? none : groups[i]).push(s); });
    const mk = (title, colour, list, up, node) => {
      const b = el('div', 'node-box');
      if (node) b.dataset.node = node; // a drop target: drag a pill here to move the shard to this node
      const h = el('h4');
      const sw = el('i');
      sw.style.background = colour;
      h.appendChild(sw);
      h.appendChild(document.createTextNode(title + ' — ' + list.length + ' shards' + (up === false ? ' (down)' : '')));
      b.appendChild(h);
      for (const s of list.slice(0, MAX_PILLS)) {
        const p = el('span', 'pill' + (pinnedList[s] ? ' pinned' : ''), '#' + s + ' (' + shardObjects(s) + ')');
        if (pinnedList[s]) p.title = 'pinned';
        p.dataset.shard = String(s);
        p.draggable = true;
        b.appendChild(p);
      }
      if (list.length > MAX_PILLS) b.appendChild(el('span', 'more', '… ' + (list.length - MAX_PILLS) + ' more (use the heatmap)'));
      box.appendChild(b);
    };
    st.nodes.forEach((n, i) => mk(n.id, nodeColour(i), groups[i], n.up, n.id));
    if (none.length) mk('unassigned', nodeColour(-1), none);
  }

  // Drag a pill to another node's box: the same move as the details' control (with the token).
  function wirePillDrag() {
    const box = $('pills');
    const target = (ev) => (ev.target && ev.target.closest ? ev.target.closest('.node-box[data-node]') : null);
    box.addEventListener('dragstart', (ev) => {
      const s = ev.target && ev.target.dataset ? ev.target.dataset.shard : undefined;
      if (s === undefined) return;
      ev.dataTransfer.setData('text/plain', s);
      ev.dataTransfer.effectAllowed = 'move';
      box.classList.add('dragging');
    });
    box.addEventListener('dragend', () => {
      box.classList.remove('dragging');
      for (const b of box.querySelectorAll('.drop')) b.classList.remove('drop');
    });
    box.addEventListener('dragover', (ev) => {
      const t = target(ev);
      if (!t) return;
      ev.preventDefault(); // allows the drop
      ev.dataTransfer.dropEffect = 'move';
      for (const b of box.querySelectorAll('.drop')) if (b !== t) b.classList.remove('drop');
      t.classList.add('drop');
    });
    box.addEventListener('drop', (ev) => {
      const t = target(ev);
      const s = ev.dataTransfer.getData('text/plain');
      if (!t || s === '') return;
      ev.preventDefault();
      t.classList.remove('drop');
      const shard = Number(s), node = t.dataset.node;
      const owner = S.state.shard_map.owners[shard];
      const res = $('pills-result');
      if (owner === node) {
        res.className = 'result';
        res.textContent = 'shard ' + shard + ' is on ' + node + ' already';
        return;
      }
      if (!token()) {
        res.className = 'result error';
        res.textContent = 'moving a shard needs the admin token (field at the top)';
        return;
      }
      res.dataset.shard = String(shard);
      action('shards/move', { shard_id: shard, target_node: node }, 'pills-result');
    });
  }

  function renderShards() {
    renderHeatmap();
    renderPills();
    if (S.selected >= 0) renderShardDetails();
  }

  // ---- actions ------------------------------------------------------------------------------------------

  function token() { return $('token').value.trim(); }

  async function action(path, body, resultId) {
    const res = $(resultId || 'sd-result');
    res.className = 'result';
    res.textContent = 'pending…';
    try {
      const r = await fetch(path, {
        method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + token() },
        body: JSON.stringify(body),
      });
      let j = {};
      try { j = await r.json(); } catch (e) { /* not JSON */ }
      if (r.ok) {
        res.className = 'result ok';
        res.textContent = 'committed' + (j.index ? ' at index ' + j.index : '') + '; waiting for the map to show it';
        scheduleRefresh(300);
      } else {
        res.className = 'result error';
        res.textContent = 'HTTP ' + r.status + ' ' + (j.code || '') + ': ' + (j.error || 'failed');
      }
    } catch (e) {
      res.className = 'result error';
      res.textContent = 'request failed: ' + e.message;
    }
  }

  // ---- types and methods -------------------------------------------------------------------------------

  function sortRows(id, rows) {
    const o = S.sort[id];
    const v = (r) => (r[o.key] === null || r[o.key] === undefined ? -1 : r[o.key]);
    rows.sort((a, b) => {
      const x = v(a), y = v(b);
      const c = typeof x === 'string' ? String(x).localeCompare(String(y)) : x - y;
      return o.asc ? c : -c;
    });
    for (const th of document.querySelectorAll('#' + id + ' th')) {
      th.classList.toggle('sorted', th.dataset.key === o.key);
      th.classList.toggle('asc', th.dataset.key === o.key && o.asc);
    }
    return rows;
  }

  function fillTable(id, rows, cols) {
    const tb = $(id).tBodies[0];
    clear(tb);
    for (const r of sortRows(id, rows)) {
      const tr = el('tr');
      tr.dataset.type = r.type;
      for (const [k, f] of cols) tr.appendChild(td(f ? f(r[k]) : r[k], f ? 'num ' + k : k));
      tb.appendChild(tr);
    }
  }

  function renderTypes() {
    const sx = stats();
    const hide = $('hide-auto').checked;
    const keep = (r) => !hide || !AUTO_TYPES.includes(r.type);
    fillTable('types-table', sx ? sx.types.filter(keep) : [], [['type'], ['active', String], ['calls_s', fmtRate],
      ['errors_s', fmtRate], ['errors', String], ['p50_ms', fmtMs], ['p99_ms', fmtMs]]);
    fillTable('methods-table', sx ? sx.methods.filter(keep) : [], [['type'], ['method'], ['calls_s', fmtRate],
      ['errors_s', fmtRate], ['calls', String], ['errors', String], ['p50_ms', fmtMs], ['p99_ms', fmtMs]]);
  }

  async function lookup(ev) {
    ev.preventDefault();
    const dl = $('lk-result');
    clear(dl);
    const row = (k, v) => { dl.appendChild(el('dt', null, k)); dl.appendChild(el('dd', null, v)); };
    const q = 'api/object?type=' + encodeURIComponent($('lk-type').value.trim()) + '&id=' + encodeURIComponent($('lk-id').value);
    try {
      const r = await fetch(q, { cache: 'no-store' });
      const j = await r.json();
      if (!r.ok) { row('error', (j.code || r.status) + ': ' + (j.error || '')); return; }
      row('shard', j.shard + (j.placement === 'hash' ? ' (FNV-1a)' : ' (' + j.placement + ')'));
      row('owner', (j.owner || 'unassigned') + (j.owner && !j.owner_up ? ' (down)' : ''));
      row('active', j.active ? 'yes, on ' + j.active_on + (j.active_type && j.active_type !== j.type ? ' as ' + j.active_type : '') : 'no');
      row('shard calls/s', fmtRate(shardCalls(j.shard)));
      if (j.target) row('target', j.target);
      if (j.pinned) row('pinned', 'yes');
      dl.dataset.shard = String(j.shard);
      dl.dataset.owner = j.owner || '';
      dl.dataset.active = String(j.active);
    } catch (e) {
      row('error', e.message);
    }
  }

  // An object's state (proto3 JSON), fetched by the inspector from the node where it is active.
  async function showState(type, id) {
    const box = $('obj-state'), dl = $('os-meta');
    S.stateOf = { type, id };
    box.classList.remove('hidden');
    delete box.dataset.loaded;
    $('os-title').textContent = type + ' ' + id;
    clear(dl);
    $('os-json').textContent = 'loading…';
    const row = (k, v) => { dl.appendChild(el('dt', null, k)); dl.appendChild(el('dd', null, v)); };
    try {
      const r = await fetch('api/object/state?type=' + encodeURIComponent(type) + '&id=' + encodeURIComponent(id), { cache: 'no-store' });
      const j = await r.json();
      if (!S.stateOf || S.stateOf.type !== type || S.stateOf.id !== id) return; // another object was clicked meanwhile
      if (!r.ok) {
        $('os-json').textContent = (j.code || r.status) + ': ' + (j.error || '');
        box.dataset.loaded = 'error';
        return;
      }
      $('os-title').textContent = type + ' ' + id + ' on ' + j.node;
      row('persist', j.persist);
      row('version', j.version + (j.saved_version !== j.version ? ' (saved ' + j.saved_version + ')' : ''));
      if (j.dirty) row('dirty', 'yes');
      if (j.saving) row('saving', 'yes');
      if (j.held) row('answers held', j.held);
      $('os-json').textContent = JSON.stringify(j.state, null, 2);
      box.dataset.node = j.node;
      box.dataset.loaded = 'ok';
    } catch (e) {
      $('os-json').textContent = e.message;
      box.dataset.loaded = 'error';
    }
  }

  // ---- objects: force graph (d3 v3) and table -----------------------------------------------------------

  function renderObjects() {
    const st = S.state;
    const f = $('obj-filter').value.trim().toLowerCase();
    const objs = st.objects.filter((o) => !f || o.type.toLowerCase().includes(f) || o.id.toLowerCase().includes(f));
    $('obj-count').textContent = objs.length + ' of ' + st.objects.length + ' objects';
    const tb = $('objects-table').tBodies[0];
    clear(tb);
    for (const o of objs.slice(0, MAX_TABLE_OBJECTS)) {
      const tr = el('tr');
      tr.dataset.type = o.type;
      tr.dataset.id = o.id;
      tr.title = 'show its state';
      tr.appendChild(td(o.type));
      tr.appendChild(td(o.id));
      tr.appendChild(td(o.shard, 'num'));
      tr.appendChild(td(o.node));
      tb.appendChild(tr);
    }
    renderGraph(objs.slice(0, MAX_GRAPH_OBJECTS));
  }

  function renderGraph(objs) {
    if (!window.d3) return;
    const st = S.state;
    const key = st.nodes.map((n) => n.id + n.up).join() + '|' + objs.map((o) => o.node + o.type + o.id).join('\u0000');
    if (key === S.graphKey) return;
    S.graphKey = key;
    const d3 = window.d3;
    const svg = d3.select('#graph');
    svg.selectAll('*').remove();
    if (S.graph) S.graph.stop();
    const W = $('graph').clientWidth || 1200, H = 460;
    svg.attr('viewBox', '0 0 ' + W + ' ' + H);
    const types = Array.from(new Set(objs.map((o) => o.type))).sort();
    const nodes = [], index = {};
    const add = (n) => { index[n.key] = nodes.length; nodes.push(n); };
    st.gates.forEach((g) => add({ key: 'g:' + g.id, label: g.id, kind: 'gate', r: 12 }));
    st.nodes.forEach((n, i) => add({ key: 'n:' + n.id, label: n.id, kind: 'node', up: n.up, colour: nodeColour(i), r: 16 }));
    // Objects are sized by calls/min. Nodes count calls per shard and method, not per object (nothing is
    // recorded per object or sent per call), so an object gets its shard's rate shared by the shard's
    // active objects.
    const perMin = (o) => (o.shard === undefined ? 0 : shardCalls(o.shard) * 60 / Math.max(1, shardObjects(o.shard)));
    objs.forEach((o) => add({ key: 'o:' + o.type + '/' + o.id, label: o.type + ' ' + o.id + ' (~' +
                              Math.round(perMin(o)) + ' calls/min)', kind: 'object',
                            colour: PALETTE[types.indexOf(o.type) % PALETTE.length],
                            r: 4 + Math.min(8, 1.2 * Math.log2(1 + perMin(o))), node: o.node }));
    const links = [];
    for (const l of (S.graphLinks || [])) {
      if (index['g:' + l.source] !== undefined && l.kind === 'gate') links.push({ source: index['g:' + l.source], target: index['n:' + l.target] });
      if (l.kind === 'peer') links.push({ source: index['n:' + l.source], target: index['n:' + l.target] });
    }
    objs.forEach((o) => {
      const t = index['n:' + o.node];
      if (t !== undefined) links.push({ source: index['o:' + o.type + '/' + o.id], target: t, obj: true });
    });
    const force = d3.layout.force().nodes(nodes).links(links).size([W, H])
      .charge((d) => (d.kind === 'object' ? -20 : -400)).linkDistance((l) => (l.obj ? 30 : 160)).gravity(0.08);
    S.graph = force;
    const link = svg.selectAll('line').data(links).enter().append('line').style('stroke-width', (l) => (l.obj ? 0.5 : 1.5));
    const g = svg.selectAll('g.n').data(nodes).enter().append('g').attr('class', 'n').call(force.drag);
    g.append('circle').attr('r', (d) => d.r)
      .style('fill', (d) => (d.kind === 'gate' ? '#1d2330' : d.kind === 'node' ? (d.up ? d.colour : '#d6dae2') : d.colour))
      .style('stroke', (d) => (d.kind === 'node' && !d.up ? '#e5484d' : '#fff')).style('stroke-width', 2);
    g.append('title').text((d) => d.label + (d.kind === 'node' ? (d.up ? ' (up)' : ' (down)') : ''));
    g.filter((d) => d.kind !== 'object').append('text').attr('dy', (d) => d.r + 12).attr('text-anchor', 'middle').text((d) => d.label);
    const clamp = (d) => {
      d.x = Math.max(d.r + 4, Math.min(W - d.r - 4, d.x));
      d.y = Math.max(d.r + 4, Math.min(H - d.r - 18, d.y));
    };
    const draw = () => {
      nodes.forEach(clamp);
      link.attr('x1', (d) => d.source.x).attr('y1', (d) => d.source.y).attr('x2', (d) => d.target.x).attr('y2', (d) => d.target.y);
      g.attr('transform', (d) => 'translate(' + d.x + ',' + d.y + ')');
    };
    force.on('tick', draw);
    force.start();
    for (let k = 0; k < 80; k++) force.tick(); // a settled first picture, then the live simulation
    draw();
  }

  async function fetchGraphLinks() {
    try {
      const r = await fetch('graph', { cache: 'no-store' });
      if (r.ok) S.graphLinks = (await r.json()).links;
    } catch (e) { /* the next refresh retries */ }
  }

  // ---- events ---------------------------------------------------------------------------------------------

  function describe(e) {
    switch (e.type) {
      case 'node_up': return e.node + ' is up';
      case 'node_down': return e.node + ' is down' + (e.reason ? ': ' + e.reason : '');
      case 'node_joined': return e.node + ' joined the catalog';
      case 'leader_changed': return 'leader ' + (e.previous || 'none') + ' → ' + (e.leader || 'none') + ' (term ' + e.term + ')';
      case 'term_changed': return 'term ' + e.term + ' (leader ' + (e.leader || 'none') + ')';
      case 'shard_moved': return 'shard ' + e.shard + ': ' + (e.from || 'unassigned') + ' → ' + (e.to || 'unassigned') + ' (epoch ' + e.epoch + ')' +
        (typeof e.duration_ms === 'number' ? ' in ' + e.duration_ms + ' ms' : '');
      case 'shard_target': return 'shard ' + e.shard + ': target ' + (e.to || 'none') + ' (was ' + (e.from || 'none') + ')';
      case 'shard_pinned': return 'shard ' + e.shard + (e.pinned ? ' pinned' : ' unpinned');
      case 'node_registered': return e.node + ' registered (incarnation ' + e.incarnation + ')';
      case 'node_expired': return e.node + ': lease expired, declared dead';
      case 'node_drain': return e.node + (e.drain ? ' draining' : ' no longer draining');
      case 'node_role': return e.node + ': role ' + ({ 1: 'voter', 2: 'standby', 3: 'spare' }[e.role] || e.role);
      case 'resync': return 'events may be missing (' + (e.reason || 'gap') + '): the view was refetched';
      case 'shards_moved': return e.count + ' shards moved (' + e.not_listed + ' not listed one by one)';
      case 'objects_changed': return e.node + ': +' + e.added + ' / −' + e.removed + ' objects (now ' + e.count + ')';
      default: return JSON.stringify(e);
    }
  }

  let eventsShown = -1;
  function renderEvents() {
    const list = $('events-list');
    if (eventsShown === S.lastEventId && list.childNodes.length) return;
    eventsShown = S.lastEventId;
    clear(list);
    for (let k = S.events.length - 1; k >= 0 && k >= S.events.length - 500; k--) {
      const e = S.events[k];
      const li = el('li');
      li.value = e.id;
      li.appendChild(el('span', 't', fmtTime(e.time_ms)));
      li.appendChild(el('span', 'k ' + e.type, e.type));
      li.appendChild(document.createTextNode(describe(e)));
      list.appendChild(li);
    }
    if (!S.events.length) list.appendChild(el('li', null, 'no events yet'));
  }

  // ---- wiring ---------------------------------------------------------------------------------------------

  function init() {
    for (const b of document.querySelectorAll('#tabs button')) b.addEventListener('click', () => showView(b.dataset.view));
    $('heat-mode').addEventListener('change', (e) => { S.heatMode = e.target.value; renderHeatmap(); });
    const cv = $('heatmap');
    cv.addEventListener('mousemove', onHeatMove);
    cv.addEventListener('mouseleave', () => $('tooltip').classList.add('hidden'));
    cv.addEventListener('click', (ev) => { const s = shardAt(ev); if (s >= 0) selectShard(s); });
    wirePillDrag();
    $('pills').addEventListener('click', (ev) => {
      const s = ev.target && ev.target.dataset ? ev.target.dataset.shard : undefined;
      if (s !== undefined) selectShard(Number(s));
    });
    const tok = $('token');
    tok.value = sessionStorage.getItem('cverse-inspector-token') || '';
    tok.addEventListener('input', () => {
      sessionStorage.setItem('cverse-inspector-token', token());
      for (const th of document.querySelectorAll('th.admin')) th.classList.toggle('off', !token());
      renderShardDetails();
      render();
    });
    for (const th of document.querySelectorAll('th.admin')) th.classList.toggle('off', !token());
    $('sd-move').addEventListener('click', () => action('shards/move', { shard_id: S.selected, target_node: $('sd-target').value }));
    $('sd-pin').addEventListener('click', () => action('shards/pin', { shard_id: S.selected, pinned: true }));
    $('sd-unpin').addEventListener('click', () => action('shards/pin', { shard_id: S.selected, pinned: false }));
    $('hide-auto').addEventListener('change', renderTypes);
    for (const id of ['types-table', 'methods-table']) {
      for (const th of document.querySelectorAll('#' + id + ' th')) {
        th.addEventListener('click', () => {
          const o = S.sort[id];
          if (o.key === th.dataset.key) o.asc = !o.asc;
          else { o.key = th.dataset.key; o.asc = th.dataset.key === 'type' || th.dataset.key === 'method'; }
          renderTypes();
        });
      }
    }
    $('lookup').addEventListener('submit', lookup);
    $('objects-table').tBodies[0].addEventListener('click', (ev) => {
      const tr = ev.target.closest('tr');
      if (tr && tr.dataset.id !== undefined) showState(tr.dataset.type, tr.dataset.id);
    });
    $('os-refresh').addEventListener('click', () => { if (S.stateOf) showState(S.stateOf.type, S.stateOf.id); });
    $('os-close').addEventListener('click', () => { $('obj-state').classList.add('hidden'); S.stateOf = null; });
    $('obj-filter').addEventListener('input', () => { S.graphKey = ''; renderObjects(); });
    const fromHash = () => {
      const hash = location.hash.replace('#', '');
      if (['overview', 'nodes', 'shards', 'types', 'objects', 'events'].includes(hash) && hash !== S.view) showView(hash);
    };
    window.addEventListener('hashchange', fromHash);
    fromHash();
    refresh().then(fetchGraphLinks).then(() => { render(); connectEvents(); });
    setInterval(() => { refresh(); fetchGraphLinks(); }, 2000);
  }

  init();
})();
