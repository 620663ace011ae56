// The kv dashboard: polls GET /cluster/stats on the node that served the page (which
// gathers every member's numbers) and draws the cluster map, rates and latencies, the
// per-operation table and an event feed. Plain DOM (text only, never HTML from data) and
// uPlot for the two charts. See docs/ui.md.
import { SampleHistory, diffEvents, digest, mergeDeltas, summarize } from './dashboard-math.js';

/** Poll period: within the brief's 1-2 s, and a dead node (gossip needs ~6 s) shows within one poll. */
const POLL_MS = 2000;
/** Samples kept (browser time): the charts show the last five minutes. */
const KEEP_MS = 5 * 60_000;
/** Window of the charts' rates and p99 (smooths one poll's noise) and of the operations table. */
const CHART_WINDOW_MS = 10_000;
const TABLE_WINDOW_MS = 60_000;
/** Event feed length; older lines drop off. */
const MAX_EVENTS = 200;
/** One slow answer must not stack polls: the request is abandoned after this. */
const FETCH_TIMEOUT_MS = 8000;
const TOKEN_KEY = 'kv.token';
const COLORS = ['#2f5bd3', '#1a7f37', '#c62828', '#b25e00', '#7b3fc4', '#00838f', '#ad1457', '#5d6b00', '#455a64', '#d84315'];
const CLIENT_OPS = ['get', 'put', 'delete'];

const $ = (id) => document.getElementById(id);
/** A member's counters over the last `ms`; none for a member that did not answer this time. */
const windowOf = (n, ms) => (n.ok ? samples.window(n.id, ms) : null);

/** An element with attributes and children (strings become text nodes, never markup). */
function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'style') e.style.cssText = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) e.append(typeof c === 'string' || typeof c === 'number' ? String(c) : c);
  return e;
}

// ---- formatting ----
const fmtInt = (n) => (n === null || n === undefined ? '—' : Math.round(n).toLocaleString('en-US'));
const fmtRate = (r) => (r === null || r === undefined ? '—' : r >= 100 ? Math.round(r).toLocaleString('en-US') : r.toFixed(1));
const fmtMs = (s) => (s === null || s === undefined ? '—' : s * 1000 >= 100 ? `${Math.round(s * 1000)} ms` : `${(s * 1000).toFixed(1)} ms`);
function fmtBytes(b) {
  if (b === null || b === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
  return `${i === 0 ? b : b.toFixed(1)} ${units[i]}`;
}
function fmtAge(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return 'never';
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 90) return `${s} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}
const clock = (t) => new Date(t).toLocaleTimeString('en-GB', { hour12: false });

// ---- token: from the URL fragment (never sent to the server) or typed in; kept for this tab ----
function takeTokenFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get('token');
  if (token === null) return;
  if (token !== '') sessionStorage.setItem(TOKEN_KEY, token);
  params.delete('token');
  const rest = params.toString();
  // Drop it from the address bar and history, so it is not shared along with the URL.
  history.replaceState(null, '', location.pathname + location.search + (rest ? `#${rest}` : ''));
}

function askForToken(why) {
  $('login-why').textContent = why;
  $('login').hidden = false;
  $('token-input').focus();
}

$('login').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const token = $('token-input').value.trim();
  if (token === '') return;
  sessionStorage.setItem(TOKEN_KEY, token);
  $('token-input').value = '';
  $('login').hidden = true;
  schedule(0);
});

// ---- state ----
const samples = new SampleHistory(KEEP_MS);
let prevDigest = null;
const events = [];
const chartTimes = [];
const chartRate = new Map();
const chartP99 = new Map();
let charts = null;
let timer = null;
let lastOkAt = 0;

function schedule(ms) {
  clearTimeout(timer);
  timer = setTimeout(poll, ms);
}

function setStatus(state, text) {
  const s = $('status');
  s.dataset.state = state;
  s.textContent = text;
}

function banner(text) {
  const b = $('banner');
  b.hidden = text === null;
  b.textContent = text ?? '';
}

async function poll() {
  const headers = { accept: 'application/json' };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.authorization = `Bearer ${token}`;
  let res;
  try {
    res = await fetch('cluster/stats', { headers, cache: 'no-store', signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
  } catch (err) {
    setStatus('error', lastOkAt ? `no answer since ${clock(lastOkAt)}` : 'no answer');
    banner(`This node does not answer (${err.name === 'TimeoutError' ? 'timed out' : 'connection failed'}); retrying.`);
    schedule(POLL_MS);
    return;
  }
  if (res.status === 401 || res.status === 403) {
    const body = await res.json().catch(() => null);
    sessionStorage.removeItem(TOKEN_KEY);
    setStatus('error', res.status === 401 ? 'token needed' : 'token refused');
    askForToken(res.status === 401
      ? (token ? 'That token was not accepted.' : 'This cluster needs a token.')
      : `That token may not read the cluster (${body?.error?.code ?? 'KV_FORBIDDEN'}).`);
    return; // polling resumes when a token is given
  }
  if (!res.ok) {
    const body = await res.json().catch(() => null);
    setStatus('error', `HTTP ${res.status}`);
    banner(`GET /cluster/stats answered ${res.status} ${body?.error?.code ?? ''}: ${body?.error?.message ?? ''}`);
    schedule(POLL_MS);
    return;
  }
  let answer;
  try {
    answer = await res.json();
  } catch {
    banner('GET /cluster/stats answered something that is not JSON.');
    schedule(POLL_MS);
    return;
  }
  lastOkAt = Date.now();
  banner(null);
  setStatus('live', `live via ${answer.via} · ${clock(lastOkAt)}`);
  update(answer, lastOkAt);
  schedule(POLL_MS);
}

// ---- one answer ----
function update(answer, t) {
  const ids = new Set();
  for (const n of answer.nodes) {
    ids.add(n.id);
    if (n.ok) samples.add(t, n.id, n.stats);
  }
  for (const id of [...samples.byNode.keys()]) if (!ids.has(id)) samples.forget(id);

  const d = digest(answer);
  for (const e of diffEvents(prevDigest, d)) events.unshift({ t, ...e });
  events.length = Math.min(events.length, MAX_EVENTS);
  prevDigest = d;

  renderSummary(answer);
  renderMap(answer);
  renderOps(answer);
  renderEvents();
  updateCharts(answer, t);
}

function renderSummary(answer) {
  const c = answer.cluster;
  const live = answer.nodes.filter((n) => n.ok).map((n) => n.stats);
  const checks = new Set(live.map((s) => `${s.epoch}/${s.ringChecksum}`));
  const counts = {};
  for (const m of c.members) counts[m.state] = (counts[m.state] ?? 0) + 1;
  const alive = c.members.filter((m) => m.liveness === 'alive').length;
  const item = (k, v, attrs = {}) => h('div', attrs, h('dt', {}, k), h('dd', {}, v));
  $('summary').replaceChildren(
    item('cluster', (c.clusterId ?? '').slice(0, 8) || 'not created'),
    item('epoch', String(c.epoch), { 'data-epoch': c.epoch }),
    item('leader', c.raft.leader ?? 'none', { 'data-leader': c.raft.leader ?? '' }),
    item('term', String(c.raft.term)),
    item('members', Object.entries(counts).map(([s, n]) => `${n} ${s}`).join(', ') || '0'),
    item('alive', `${alive} of ${c.members.length}`),
    item('N / Q', `${c.n} / ${c.partitions}`),
    item('ring', checks.size <= 1 ? 'agreed' : `${checks.size} versions`, { class: checks.size <= 1 ? '' : 'epoch-behind' }),
  );
}

function renderMap(answer) {
  const c = answer.cluster;
  const maxEpoch = Math.max(c.epoch, ...answer.nodes.filter((n) => n.ok).map((n) => n.stats.epoch));
  const voters = new Set(c.raft.voters ?? []);
  const cards = answer.nodes.map((n) => {
    const leader = c.raft.leader === n.id;
    const head = h('h3', {}, n.id,
      leader ? h('span', { class: 'badge leader', title: 'Raft leader' }, 'leader') : null,
      h('span', { class: `badge ${n.state}` }, n.state),
      h('span', { class: `badge ${n.liveness}`, 'data-role': 'liveness' }, n.liveness));
    const card = h('article', {
      class: 'card', 'data-node': n.id, 'data-liveness': n.liveness, 'data-reachable': n.ok ? 'true' : 'false',
      'data-state': n.state, 'aria-label': `node ${n.id}`,
    }, head, h('div', { class: 'addr' }, n.addr));
    if (!n.ok) {
      card.append(h('p', { class: 'error' }, `no answer: ${n.error.code} ${n.error.message}`));
      const heard = c.members.find((m) => m.id === n.id)?.lastHeardMs;
      if (typeof heard === 'number') card.append(h('p', { class: 'addr' }, `${answer.via} last heard from it ${fmtAge(answer.atMs - heard)} ago`));
      return card;
    }
    const s = n.stats;
    const w10 = summarize(windowOf(n, CHART_WINDOW_MS), (op) => CLIENT_OPS.includes(op));
    const clientTotal = s.http.series.filter((x) => x.route === 'kv').reduce((a, x) => a + x.count, 0);
    card.dataset.requests = String(clientTotal);
    const ae = s.antiEntropy;
    const pct = ae.partitionsTotal > 0 ? Math.round((100 * ae.partitionsDone) / ae.partitionsTotal) : 0;
    const own = s.ownership.partitions > 0 ? (100 * s.ownership.primary) / s.ownership.partitions : 0;
    const role = `${s.raft.role}${voters.has(n.id) ? ' (voter)' : (c.raft.learners ?? []).includes(n.id) ? ' (learner)' : ''}`;
    const row = (k, v, attrs = {}) => [h('dt', {}, k), h('dd', attrs, v)];
    card.append(h('dl', {},
      row('raft', `${role}, term ${s.raft.term}`),
      row('epoch', String(s.epoch), { class: s.epoch < maxEpoch ? 'epoch-behind' : null }),
      row('owns', `${own.toFixed(1)} % primary · ${fmtInt(s.ownership.replicated)} of ${fmtInt(s.ownership.partitions)} partitions`),
      row('records', `${fmtInt(s.storage.records)} · ${fmtBytes(s.storage.diskBytes)} on disk`),
      row('client req/s', fmtRate(w10.rate), { 'data-role': 'rate' }),
      row('latency', `p50 ${fmtMs(w10.p50)} · p99 ${fmtMs(w10.p99)}`),
      row('requests', fmtInt(clientTotal), { 'data-role': 'requests' }),
      row('hints', s.hints.enabled ? `${fmtInt(s.hints.pending)} pending · ${fmtInt(s.hints.delivered)} delivered` : 'off'),
      row('anti-entropy', [
        `walk ${ae.walk} `, h('span', { class: 'progress', title: `${ae.partitionsDone} of ${ae.partitionsTotal} partitions` }, h('span', { style: `width:${pct}%` })),
        ` ${pct} %`,
      ]),
      row('last repair', ae.lastWalkDoneMs === null ? 'no walk completed yet' : `walk done ${fmtAge(s.nowMs - ae.lastWalkDoneMs)} ago · ${fmtInt(ae.keysRepaired)} keys repaired`),
      row('event loop', `p99 ${s.eventLoopLagMs.toFixed(1)} ms`),
      row('process', `up ${fmtAge(s.nowMs - s.startedAtMs)} · rss ${fmtBytes(s.process.rssBytes)}`),
    ));
    return card;
  });
  $('map').replaceChildren(...cards);
}

function renderOps(answer) {
  const ops = CLIENT_OPS;
  $('ops').tHead.replaceChildren(
    h('tr', {}, h('th', { rowspan: 2 }, 'node'), ...ops.map((op) => h('th', { colspan: 4 }, op.toUpperCase())), h('th', { colspan: 3 }, 'all client')),
    h('tr', {}, ...ops.flatMap(() => [h('th', {}, 'req/s'), h('th', {}, 'p50'), h('th', {}, 'p99'), h('th', {}, '5xx/s')]),
      h('th', {}, 'req/s'), h('th', {}, 'p50'), h('th', {}, 'p99')),
  );
  const td = (v) => h('td', { class: v === '—' ? 'none' : null }, v);
  const cells = (d) => [
    ...ops.flatMap((op) => {
      const s = summarize(d, (x) => x === op);
      return [td(fmtRate(s.rate)), td(fmtMs(s.p50)), td(fmtMs(s.p99)), td(fmtRate(s.errorRate))];
    }),
    ...(() => { const s = summarize(d, (x) => ops.includes(x)); return [td(fmtRate(s.rate)), td(fmtMs(s.p50)), td(fmtMs(s.p99))]; })(),
  ];
  const windows = answer.nodes.map((n) => windowOf(n, TABLE_WINDOW_MS));
  const rows = answer.nodes.map((n, i) => h('tr', { 'data-node': n.id }, h('td', {}, n.id), ...cells(windows[i] ?? null)));
  rows.push(h('tr', { class: 'total' }, h('td', {}, 'cluster'), ...cells(mergeDeltas(windows))));
  $('ops').tBodies[0].replaceChildren(...rows);
}

function renderEvents() {
  $('events').replaceChildren(...events.map((e) => h('li', { class: e.kind }, h('time', {}, clock(e.t)), e.text)));
}

// ---- charts (uPlot) ----
function updateCharts(answer, t) {
  chartTimes.push(t / 1000);
  const byId = new Map(answer.nodes.map((n) => [n.id, n]));
  const ids = [...byId.keys()];
  for (const id of ids) {
    if (!chartRate.has(id)) { chartRate.set(id, chartTimes.slice(0, -1).map(() => null)); chartP99.set(id, chartTimes.slice(0, -1).map(() => null)); }
  }
  for (const [id, list] of chartRate) {
    const n = byId.get(id);
    const s = n ? summarize(windowOf(n, CHART_WINDOW_MS), (op) => CLIENT_OPS.includes(op)) : { rate: null, p99: null };
    list.push(s.rate);
    chartP99.get(id).push(s.p99 === null ? null : s.p99 * 1000);
  }
  const keep = Math.ceil(KEEP_MS / POLL_MS);
  if (chartTimes.length > keep) {
    chartTimes.splice(0, chartTimes.length - keep);
    for (const m of [chartRate, chartP99]) for (const list of m.values()) list.splice(0, list.length - keep);
  }
  if (typeof globalThis.uPlot !== 'function') return; // the chart library did not load: the rest still works
  const series = [...chartRate.keys()];
  if (!charts || charts.ids.join() !== series.join()) {
    charts?.rate.destroy();
    charts?.p99.destroy();
    charts = { ids: series, rate: makeChart($('chart-rate'), series, fmtRate), p99: makeChart($('chart-p99'), series, (v) => `${v.toFixed(1)} ms`) };
  }
  charts.rate.setData([chartTimes, ...series.map((id) => chartRate.get(id))]);
  charts.p99.setData([chartTimes, ...series.map((id) => chartP99.get(id))]);
}

function makeChart(el, ids, fmt) {
  el.replaceChildren();
  return new globalThis.uPlot({
    width: Math.max(300, el.clientWidth - 4), height: 220,
    scales: { x: { time: true }, y: { range: (_u, min, max) => [0, Math.max(1, max * 1.1)] } },
    series: [{}, ...ids.map((id, i) => ({ label: id, stroke: COLORS[i % COLORS.length], width: 2, value: (_u, v) => (v === null ? '—' : fmt(v)) }))],
    axes: [{}, { size: 56 }],
  }, [[], ...ids.map(() => [])], el);
}

window.addEventListener('resize', () => {
  if (!charts) return;
  for (const [key, id] of [['rate', 'chart-rate'], ['p99', 'chart-p99']]) charts[key].setSize({ width: Math.max(300, $(id).clientWidth - 4), height: 220 });
});

takeTokenFromFragment();
schedule(0);
