// The flowgate dashboard: connect with a pasted token, run and watch swarms, and (with the
// permissions for them) manage tenants, keys and read the audit log.

import { FlowgateClient } from '/sdk/flowgate.js';
import { h, $, say, replace, clock, shortId } from './dom.js';
import { describe } from './format.js';
import { Admin } from './admin.js';

const TOKEN_KEY = 'flowgate.token';
const TRANSPORT_KEY = 'flowgate.transport';
const MAX_EVENTS = 1000; // kept per task; the oldest are dropped beyond it
const LIVE = new Set(['pending', 'running']);

const wsUrl = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';

/** @type {FlowgateClient|null} */
let client = null;
let token = '';
/** taskId → view model */
const tasks = new Map();
let selected = null;
let listed = []; // the last tasks() answer
let lastIdentity = '';

const admin = new Admin({ token: () => token, onUnauthorized: () => say($('connect-msg'), 'The token was refused by the admin API.', 'error') });

// ---- connection -------------------------------------------------------------------------

function stateText(s) {
  switch (s.state) {
    case 'open': return s.resumed ? 'Connected (resumed)' : 'Connected';
    case 'connecting': return 'Connecting…';
    case 'reconnecting': return `Reconnecting (attempt ${s.attempt})…`;
    case 'closed': return 'Disconnected';
    default: return 'Disconnected';
  }
}

function setConnected(on) {
  $('connect-btn').disabled = on;
  $('disconnect-btn').disabled = !on;
  $('start-btn').disabled = !on || !client || !client.can('swarm:execute');
  $('tasks-refresh').disabled = !on;
  $('token').disabled = on;
  $('transport').disabled = on;
  for (const t of tasks.values()) renderTaskRow(t);
  if (selected) renderDetail();
}

async function connect() {
  const msg = $('connect-msg');
  say(msg, '');
  token = $('token').value.trim();
  if (!token) {
    say(msg, 'Paste a token first.', 'error');
    $('token').focus();
    return;
  }
  const transport = $('transport').value;
  try {
    sessionStorage.setItem(TOKEN_KEY, token);
    sessionStorage.setItem(TRANSPORT_KEY, transport);
  } catch { /* storage may be disabled; the token then lives in memory only */ }
  if (client) client.disconnect();
  // A pasted token cannot be refreshed: when it expires the gateway closes the session and the
  // dashboard asks for a new one (no reauth loop with the same token).
  const c = new FlowgateClient({ url: wsUrl, token, tokenTransport: transport });
  client = c;
  c.on('state', (s) => {
    if (client !== c) return;
    const pill = $('conn-state');
    pill.textContent = stateText(s);
    pill.dataset.state = s.state;
    setConnected(s.state === 'open');
    if (s.state === 'open' && s.resumed) refreshTasks();
    if (s.state === 'closed' && s.code === 1008) {
      say(msg, s.reason === 'token_expired' ? 'The token expired: paste a new one and connect again.' : 'The gateway closed the connection: ' + (s.reason || 'policy') + '.', 'error');
    }
  });
  try {
    const welcome = await c.connect();
    const identity = welcome.tenant + '/' + welcome.user;
    if (identity !== lastIdentity) clearTasks();
    lastIdentity = identity;
    const who = $('who');
    who.textContent = `${welcome.user} @ ${welcome.tenant}`;
    who.title = 'permissions: ' + (welcome.permissions || []).join(', ');
    who.hidden = false;
    if (!c.can('swarm:execute')) say($('swarm-msg'), 'This token may not start swarms (no swarm:execute).', 'info');
    admin.setIdentity(welcome, (p) => c.can(p));
    showTabs();
    refreshTasks();
  } catch (e) {
    if (client === c) client = null;
    say(msg, 'Could not connect: ' + (e && e.message ? e.message : 'error') + '. Check the token and that it has not expired.', 'error');
  }
}

/** Forgets the tasks shown: they belong to the identity that is going away. */
function clearTasks() {
  tasks.clear();
  listed = [];
  selected = null;
  replace($('task-list'));
  $('tasks-empty').hidden = false;
  renderDetail();
}

function disconnect() {
  if (client) client.disconnect();
  client = null;
  clearTasks();
  $('who').hidden = true;
  admin.setIdentity(null, () => false);
  showTabs();
  setConnected(false);
}

function forget() {
  disconnect();
  token = '';
  $('token').value = '';
  try {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(TRANSPORT_KEY);
  } catch { /* ignore */ }
  say($('connect-msg'), 'Token forgotten.', 'info');
}

// ---- tabs -------------------------------------------------------------------------------

const TABS = ['swarms', 'tenants', 'keys', 'audit'];

function showTabs() {
  const visible = { swarms: true, tenants: admin.canTenants(), keys: admin.canKeys(), audit: admin.canAudit() };
  let current = TABS.find((t) => $('tab-' + t).getAttribute('aria-selected') === 'true') || 'swarms';
  for (const t of TABS) $('tab-' + t).hidden = !visible[t];
  if (!visible[current]) current = 'swarms';
  selectTab(current, false);
}

function selectTab(name, focus = true) {
  for (const t of TABS) {
    const tab = $('tab-' + t);
    const on = t === name;
    tab.setAttribute('aria-selected', String(on));
    tab.tabIndex = on ? 0 : -1;
    $('view-' + t).hidden = !on;
  }
  if (focus) $('tab-' + name).focus();
  if (name !== 'swarms') admin.show(name);
}

function tabKeys(ev) {
  const visible = TABS.filter((t) => !$('tab-' + t).hidden);
  const cur = visible.findIndex((t) => $('tab-' + t) === document.activeElement);
  if (cur < 0) return;
  let next = -1;
  if (ev.key === 'ArrowRight') next = (cur + 1) % visible.length;
  else if (ev.key === 'ArrowLeft') next = (cur - 1 + visible.length) % visible.length;
  else if (ev.key === 'Home') next = 0;
  else if (ev.key === 'End') next = visible.length - 1;
  if (next >= 0) {
    ev.preventDefault();
    selectTab(visible[next]);
  }
}

// ---- tasks ------------------------------------------------------------------------------

function model(taskId, init = {}) {
  let t = tasks.get(taskId);
  if (!t) {
    t = { taskId, objective: '', status: 'pending', progress: 0, progressMsg: '', agents: new Map(), events: [], result: '', error: '', following: false, row: null, ...init };
    tasks.set(taskId, t);
  }
  return t;
}

function onEvent(t, e) {
  if (e.type === 'task_created') {
    t.objective = e.objective ?? t.objective;
  } else if (e.type === 'agent_spawn') {
    t.agents.set(String(e.agentId ?? t.agents.size + 1), { id: String(e.agentId ?? ''), type: String(e.agentType ?? ''), name: String(e.name ?? ''), status: String(e.status ?? 'active') });
    if (t.status === 'pending') t.status = 'running';
  } else if (e.type === 'task_progress') {
    const p = Number(e.progress);
    if (Number.isFinite(p)) t.progress = Math.max(0, Math.min(100, p));
    t.progressMsg = String(e.message ?? '');
  } else if (e.type === 'task_complete') {
    t.status = String(e.status);
    t.result = String(e.result ?? '');
    t.error = String(e.error ?? '');
    if (t.status === 'success') t.progress = 100;
    t.following = false;
    for (const a of t.agents.values()) a.status = 'done';
  } else if (typeof e.seq === 'number' && t.status === 'pending') {
    t.status = 'running';
  }
  if (e.type !== 'task_created' || t.events.length === 0) {
    t.events.push(e);
    if (t.events.length > MAX_EVENTS) t.events.splice(0, t.events.length - MAX_EVENTS);
  }
  renderTaskRow(t);
  if (selected === t.taskId) renderDetail(e);
}

async function startSwarm(ev) {
  ev.preventDefault();
  const msg = $('swarm-msg');
  say(msg, '');
  if (!client || !client.connected) { say(msg, 'Not connected.', 'error'); return; }
  const objective = $('objective').value.trim();
  if (!objective) { say(msg, 'Write an objective.', 'error'); $('objective').focus(); return; }
  const options = {
    agents: Number.parseInt($('agents').value, 10),
    strategy: $('strategy').value,
    mode: $('mode').value,
    timeout: Number.parseInt($('timeout').value, 10),
  };
  for (const k of ['agents', 'timeout']) {
    if (!Number.isInteger(options[k])) { say(msg, `${k} must be a whole number.`, 'error'); $(k).focus(); return; }
  }
  let t = null;
  const run = client.executeSwarm(objective, options, (e) => {
    if (!t) {
      t = model(e.taskId, { objective, following: true });
      select(t.taskId);
    }
    onEvent(t, e);
  });
  run.then(() => refreshTasks(), (e) => {
    if (t) {
      if (e.task) refreshTasks();
      else say(msg, 'Task ' + shortId(t.taskId) + ': ' + e.message, 'error');
      return;
    }
    const fields = e.fields ? ' ' + Object.entries(e.fields).map(([k, v]) => `${k}: ${v}`).join('; ') : '';
    const retry = e.retryAfterMs ? ` Retry in ${Math.ceil(e.retryAfterMs / 1000)} s.` : '';
    say(msg, 'Refused: ' + e.message + ' (' + e.code + ').' + fields + retry, 'error');
  });
}

async function cancelTask(taskId) {
  if (!client || !client.connected) return;
  const msg = $('swarm-msg');
  try {
    await client.cancel(taskId);
    say(msg, 'Cancel requested for task ' + shortId(taskId) + '.', 'info');
  } catch (e) {
    say(msg, 'Cancel failed: ' + e.message, 'error');
  }
}

async function follow(taskId) {
  if (!client || !client.connected) return;
  const t = model(taskId);
  select(taskId);
  // A live task is followed; a finished one whose events are not here yet is replayed.
  if (t.following || (t.events.length > 0 && !LIVE.has(t.status))) return;
  t.following = true;
  t.events = [];
  t.agents.clear();
  try {
    await client.subscribe(taskId, { afterSeq: 0, onEvent: (e) => onEvent(t, e) });
  } catch (e) {
    t.following = false;
    say($('swarm-msg'), 'Cannot follow task ' + shortId(taskId) + ': ' + e.message, 'error');
  }
  refreshTasks();
}

async function refreshTasks() {
  if (!client || !client.connected) return;
  try {
    listed = await client.tasks();
  } catch {
    return;
  }
  for (const s of listed) {
    const t = model(s.taskId);
    t.objective = t.objective || s.objective;
    if (!t.following || !LIVE.has(s.status)) t.status = s.status;
    t.createdAt = s.createdAt;
  }
  renderTaskList();
}

function renderTaskList() {
  const ul = $('task-list');
  const order = [...listed.map((s) => s.taskId)];
  for (const id of tasks.keys()) if (!order.includes(id)) order.unshift(id);
  const rows = order.map((id) => renderTaskRow(tasks.get(id))).filter(Boolean);
  replace(ul, rows);
  $('tasks-empty').hidden = rows.length > 0;
}

function renderTaskRow(t) {
  if (!t) return null;
  const connected = !!(client && client.connected);
  const live = LIVE.has(t.status);
  const li = t.row || h('li', { class: 'task' });
  t.row = li;
  li.dataset.taskId = t.taskId;
  li.classList.toggle('selected', selected === t.taskId);
  replace(li,
    h('button', { type: 'button', class: 'link task-open', 'aria-label': 'Show task ' + shortId(t.taskId), on: { click: () => follow(t.taskId) } },
      h('span', { class: 'task-obj', text: t.objective || '(objective not shown)' })),
    h('span', { class: 'badge', 'data-status': t.status, text: t.status }),
    h('code', { class: 'small', text: shortId(t.taskId) }),
    live ? h('button', { type: 'button', class: 'danger small-btn', disabled: !connected, 'aria-label': 'Cancel task ' + shortId(t.taskId), on: { click: () => cancelTask(t.taskId) } }, 'Cancel') : null,
  );
  if (!li.isConnected) {
    const ul = $('task-list');
    ul.prepend(li);
    $('tasks-empty').hidden = true;
  }
  return li;
}

function select(taskId) {
  selected = taskId;
  for (const t of tasks.values()) if (t.row) t.row.classList.toggle('selected', t.taskId === taskId);
  renderDetail();
}

function eventRow(e) {
  return h('li', { class: 'ev', 'data-type': e.type },
    h('span', { class: 'ev-seq', text: typeof e.seq === 'number' ? '#' + e.seq : '' }),
    h('time', { class: 'ev-time', datetime: e.serverTime || e.createdAt || '', text: clock(e.serverTime || e.createdAt) }),
    h('span', { class: 'ev-type', text: e.type }),
    h('span', { class: 'ev-text', text: describe(e) }),
  );
}

/** Redraws the selected task; with `added`, only appends that event to the log. */
function renderDetail(added) {
  const t = selected && tasks.get(selected);
  $('detail-empty').hidden = !!t;
  $('detail-body').hidden = !t;
  const badge = $('detail-status');
  const cancel = $('detail-cancel');
  if (!t) { badge.hidden = true; cancel.hidden = true; return; }
  badge.hidden = false;
  badge.textContent = t.status;
  badge.dataset.status = t.status;
  cancel.hidden = !LIVE.has(t.status);
  cancel.disabled = !(client && client.connected);
  $('detail-objective').textContent = t.objective;
  $('detail-id').textContent = t.taskId;
  $('detail-progress').value = t.progress;
  $('detail-progress-text').textContent = Math.round(t.progress) + '%';
  $('detail-progress-msg').textContent = t.progressMsg;
  replace($('agent-list'), [...t.agents.values()].map((a) =>
    h('li', { class: 'agent', 'data-status': a.status },
      h('strong', { text: a.id }), ' ', h('span', { text: a.type }), a.name ? h('span', { class: 'muted small', text: ' ' + a.name }) : null)));
  $('agents-count').textContent = String(t.agents.size);
  const res = $('detail-result');
  if (t.result || t.error) {
    res.hidden = false;
    res.textContent = t.error ? 'Error: ' + t.error : t.result;
    res.dataset.kind = t.error ? 'error' : 'ok';
  } else {
    res.hidden = true;
  }
  const log = $('events');
  const last = t.events[t.events.length - 1];
  if (added && last === added && log.dataset.taskId === t.taskId && log.childElementCount === t.events.length - 1) {
    const stick = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
    log.append(eventRow(added));
    if (stick) log.scrollTop = log.scrollHeight;
  } else {
    log.dataset.taskId = t.taskId;
    replace(log, t.events.map(eventRow));
    log.scrollTop = log.scrollHeight;
  }
  $('events-count').textContent = String(t.events.length);
}

// ---- start ------------------------------------------------------------------------------

function init() {
  $('connect-form').addEventListener('submit', (ev) => { ev.preventDefault(); connect(); });
  $('disconnect-btn').addEventListener('click', disconnect);
  $('forget-btn').addEventListener('click', forget);
  $('swarm-form').addEventListener('submit', startSwarm);
  $('tasks-refresh').addEventListener('click', refreshTasks);
  $('detail-cancel').addEventListener('click', () => selected && cancelTask(selected));
  $('tablist').addEventListener('keydown', tabKeys);
  for (const t of TABS) $('tab-' + t).addEventListener('click', () => selectTab(t, false));
  admin.bind();
  let saved = '';
  try {
    saved = sessionStorage.getItem(TOKEN_KEY) || '';
    const tr = sessionStorage.getItem(TRANSPORT_KEY);
    if (tr === 'ticket' || tr === 'subprotocol') $('transport').value = tr;
  } catch { /* ignore */ }
  if (saved) {
    $('token').value = saved;
    connect();
  }
}

init();
