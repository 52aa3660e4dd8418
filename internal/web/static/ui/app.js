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
// How a task's end reads in the detail pane. A cancellation is what someone asked for: neutral,
// never an error; an interruption (the server stopped under the task) warns.
// `repeats` matches the start of a reason that only says the status again.
const ENDS = {
  cancelled: { label: 'Cancelled', kind: 'neutral', repeats: /^cancell?ed\b[:\s-]*/i },
  interrupted: { label: 'Interrupted', kind: 'warn', repeats: /^interrupted\b[:\s-]*/i },
  timeout: { label: 'Timed out', kind: 'error', repeats: /^timed out\b[:\s-]*/i },
  failed: { label: 'Failed', kind: 'error', repeats: /^failed\b[:\s-]*/i },
};
const REASONS = { tenant_suspended: 'the tenant was suspended', token_revoked: 'the token was revoked' };

const wsUrl = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';

/** @type {FlowgateClient|null} */
let client = null;
let token = '';
/** taskId → view model */
const tasks = new Map();
let selected = null;
let listed = []; // the last tasks() answer
let lastIdentity = '';

const admin = new Admin({
  token: () => token,
  onUnauthorized: () => say($('connect-msg'), 'The token was refused by the admin API.', 'error'),
  openTask: (row) => openOtherTask(row),
});

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
    say(msg, refusalText(e), 'error');
  }
}

/** What a refused connection means to the person at the keyboard (the SDK asked the gateway why). */
function refusalText(e) {
  switch (e && e.code) {
    case 'token_expired': return 'Could not connect: the token has expired (token_expired). Paste a new one.';
    case 'unauthorized': return 'Could not connect: the gateway does not accept this token (unauthorized' + (e.reason ? ': ' + e.reason : '') + ').';
    case 'forbidden_origin': return 'Could not connect: this page\'s origin is not allowed to connect (forbidden_origin): add it to server.allowed_origins.';
    case 'tenant_suspended': return 'Could not connect: the tenant is suspended (tenant_suspended).';
    default: return 'Could not connect: ' + (e && e.message ? e.message : 'error') + (e && e.code ? ' (' + e.code + ')' : '') + '.';
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
    t.foreign = false;
    // A final status in the list wins over what a follow last saw (after a server restart the
    // task ended "interrupted" without this page being told): the task is no longer live.
    if (!t.following || !LIVE.has(s.status)) t.status = s.status;
    if (!LIVE.has(t.status)) t.following = false;
    t.createdAt = s.createdAt;
  }
  renderTaskList();
  if (selected) renderDetail();
}

/**
 * Opens a task of the tenant-wide list (another user's, for a task:admin token) in the detail
 * pane, without adding it to the token's own task list.
 */
function openOtherTask(row) {
  if (!client || !client.connected) return;
  const own = client.welcome && row.owner === client.welcome.user;
  if (!tasks.has(row.id)) model(row.id, { objective: row.objective, status: row.status, foreign: !own });
  const t = tasks.get(row.id);
  if (!LIVE.has(row.status)) t.status = row.status;
  follow(row.id);
}

function renderTaskList() {
  const ul = $('task-list');
  const order = [...listed.map((s) => s.taskId)];
  for (const [id, t] of tasks) if (!order.includes(id) && !t.foreign) order.unshift(id);
  const rows = order.map((id) => renderTaskRow(tasks.get(id))).filter(Boolean);
  replace(ul, rows);
  $('tasks-empty').hidden = rows.length > 0;
}

function renderTaskRow(t) {
  if (!t || t.foreign) return null;
  const connected = !!(client && client.connected);
  const live = LIVE.has(t.status);
  const li = t.row || h('li', { class: 'task' });
  t.row = li;
  li.dataset.taskId = t.taskId;
  li.classList.toggle('selected', selected === t.taskId);
  replace(li,
    h('button', { type: 'button', class: 'link task-open', title: 'Show task ' + shortId(t.taskId), on: { click: () => follow(t.taskId) } },
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
  return h('li', { class: 'ev', 'data-type': e.type, 'data-status': e.type === 'task_complete' ? e.status : undefined },
    h('span', { class: 'ev-seq', text: typeof e.seq === 'number' ? '#' + e.seq : '' }),
    h('time', { class: 'ev-time', datetime: e.serverTime || e.createdAt || '', text: clock(e.serverTime || e.createdAt) }),
    h('span', { class: 'ev-type', text: e.type }),
    h('span', { class: 'ev-text', text: describe(e) }),
  );
}

/** The end of a task as the detail pane shows it ({text, kind}), or null while it runs. */
function outcome(t) {
  if (t.status === 'success') return t.result ? { text: t.result, kind: 'ok' } : null;
  const end = ENDS[t.status];
  if (!end) return t.error ? { text: 'Error: ' + t.error, kind: 'error' } : null;
  // The reason without the status word it may repeat ("cancelled", "interrupted: …").
  const raw = String(t.error || '').trim();
  const reason = REASONS[raw] || raw.replace(end.repeats, '');
  return { text: reason ? end.label + ': ' + reason : end.label, kind: end.kind };
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
  const end = outcome(t);
  res.hidden = !end;
  if (end) {
    res.textContent = end.text;
    res.dataset.kind = end.kind;
  }
  const log = $('events');
  const box = $('events-log'); // the scrolling box around the list
  const last = t.events[t.events.length - 1];
  if (added && last === added && log.dataset.taskId === t.taskId && log.childElementCount === t.events.length - 1) {
    const stick = box.scrollTop + box.clientHeight >= box.scrollHeight - 8;
    log.append(eventRow(added));
    if (stick) box.scrollTop = box.scrollHeight;
  } else if (log.dataset.taskId !== t.taskId || log.childElementCount !== t.events.length) {
    // Redrawn only when it shows something else: a status change alone (a task list answer)
    // leaves the log, and where the reader scrolled it, as it is.
    log.dataset.taskId = t.taskId;
    replace(log, t.events.map(eventRow));
    box.scrollTop = box.scrollHeight;
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
