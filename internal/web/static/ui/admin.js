// Admin views of the dashboard: tenants, engine keys and the audit log, plus the tenant-wide
// task list of the Swarms view, over the gateway's HTTP admin API (DESIGN §9) with the pasted
// token as a bearer token. A view is shown only when the token's permissions allow it; the
// API checks again anyway. Every time shown is UTC, ISO 8601 (DESIGN §19).

import { h, $, say, replace, utc, utcTime, labelCells, shortId } from './dom.js';

const TENANT_ID = /^[a-z0-9][a-z0-9-]{1,62}$/;

/** An answer of the admin API that was not 2xx (a problem+json body when there is one). */
class ApiError extends Error {
  constructor(status, problem) {
    const detail = problem && (problem.detail || problem.title);
    super((detail || 'HTTP ' + status) + (problem && problem.code ? ' (' + problem.code + ')' : ''));
    this.status = status;
    this.code = problem && problem.code;
    this.fields = problem && problem.fields;
  }
}

/** Reads a field whatever its JSON spelling (camelCase or Go's default PascalCase). */
function pick(o, name) {
  if (!o || typeof o !== 'object') return undefined;
  if (name in o) return o[name];
  const pascal = name[0].toUpperCase() + name.slice(1);
  return o[pascal];
}

/** The list in a list answer: the body itself, or its first array-valued field. */
function listOf(body, ...names) {
  if (Array.isArray(body)) return body;
  for (const n of names) if (Array.isArray(pick(body, n))) return pick(body, n);
  if (body && typeof body === 'object') for (const v of Object.values(body)) if (Array.isArray(v)) return v;
  return [];
}

/** A token fingerprint ("sha256:…") that a narrow column may break after its algorithm only. */
function fingerprint(fp) {
  const at = fp.indexOf(':') + 1;
  return at > 0 ? h('code', { class: 'fp' }, fp.slice(0, at), h('wbr'), fp.slice(at)) : h('code', { class: 'fp', text: fp });
}

function fieldsText(fields) {
  return fields ? ' ' + Object.entries(fields).map(([k, v]) => `${k}: ${v}`).join('; ') : '';
}

export class Admin {
  /** @param {{token: () => string, onUnauthorized?: () => void, openTask?: (task: {id: string, owner: string, status: string, objective: string}) => void}} opts */
  constructor(opts) {
    this.token = opts.token;
    this.onUnauthorized = opts.onUnauthorized || (() => {});
    this.openTask = opts.openTask || (() => {});
    this.allTasks = [];
    this.allTasksNext = '';
    this.busy = {};
    this.welcome = null;
    this.can = () => false;
    this.tenants = [];
    this.tenantsNext = '';
    this.cursors = [''];
    this.page = 0;
    this.nextCursor = '';
  }

  setIdentity(welcome, can) {
    this.welcome = welcome;
    this.can = can;
    this.tenants = [];
    this.tenantsNext = '';
    this.cursors = [''];
    this.page = 0;
    replace($('tenants-table').tBodies[0]);
    replace($('audit-table').tBodies[0]);
    replace($('all-tasks-table').tBodies[0]);
    this.allTasks = [];
    this.allTasksNext = '';
    $('all-tasks-card').hidden = !(welcome && can('task:admin'));
    this.expandAllTasks(false);
    replace($('key-meta'));
    for (const id of ['tenants-msg', 'key-msg', 'budget-msg', 'tokens-msg', 'sessions-msg', 'audit-msg', 'audit-verify-result', 'all-tasks-msg']) say($(id), '');
    $('token-issued').hidden = true;
    $('token-value').value = '';
    $('audit-tenant-field').hidden = !can('platform:admin');
    // A platform admin reviews the whole platform: every chain unless it narrows the scope.
    $('audit-tenant').value = can('platform:admin') ? '@all' : '';
    $('audit-page').textContent = '';
  }

  canTenants() { return !!this.welcome && this.can('platform:admin'); }
  canKeys() { return !!this.welcome && (this.can('tenant:admin') || this.can('platform:admin')); }
  canAudit() { return !!this.welcome && (this.can('audit:read') || this.can('platform:admin')); }

  bind() {
    $('tenants-refresh').addEventListener('click', () => this.loadTenants());
    $('tenants-more').addEventListener('click', () => this.loadTenants(true));
    $('tenant-form').addEventListener('submit', (ev) => { ev.preventDefault(); this.createTenant(); });
    $('key-load').addEventListener('click', () => this.loadKey());
    $('key-tenant').addEventListener('change', () => { this.loadKey(); this.loadUsage(); this.loadTokens(); this.loadSessions(); });
    $('key-form').addEventListener('submit', (ev) => { ev.preventDefault(); this.setKey(); });
    $('key-delete').addEventListener('click', () => this.deleteKey());
    $('budget-form').addEventListener('submit', (ev) => { ev.preventDefault(); this.setBudget(); });
    $('token-form').addEventListener('submit', (ev) => { ev.preventDefault(); this.issueToken(); });
    $('sessions-refresh').addEventListener('click', () => this.loadSessions());
    $('audit-form').addEventListener('submit', (ev) => { ev.preventDefault(); this.cursors = ['']; this.page = 0; this.loadAudit(); });
    $('audit-next').addEventListener('click', () => { if (this.nextCursor) { this.cursors[this.page + 1] = this.nextCursor; this.page++; this.loadAudit(); } });
    $('audit-prev').addEventListener('click', () => { if (this.page > 0) { this.page--; this.loadAudit(); } });
    $('audit-first').addEventListener('click', () => { this.page = 0; this.loadAudit(); });
    $('audit-export').addEventListener('click', () => this.exportAudit());
    $('audit-verify').addEventListener('click', () => this.verifyAudit());
    $('all-tasks-toggle').addEventListener('click', () => {
      const open = $('all-tasks-toggle').getAttribute('aria-expanded') !== 'true';
      this.expandAllTasks(open);
      if (open) this.loadAllTasks();
    });
    $('all-tasks-form').addEventListener('submit', (ev) => { ev.preventDefault(); this.loadAllTasks(); });
    $('all-tasks-more').addEventListener('click', () => this.loadAllTasks(true));
  }

  /** Called when a view's tab is selected. */
  show(name) {
    if (name === 'tenants') this.loading(name, this.loadTenants());
    if (name === 'keys') this.loading(name, this.prepareKeys());
    if (name === 'audit' && $('audit-table').tBodies[0].rows.length === 0) this.loading(name, this.loadAudit());
  }

  /** Marks a view aria-busy until its data is in (assistive technology waits for it). */
  async loading(name, work) {
    const view = $('view-' + name);
    this.busy[name] = (this.busy[name] || 0) + 1;
    view.setAttribute('aria-busy', 'true');
    try {
      await work;
    } finally {
      if (--this.busy[name] === 0) view.removeAttribute('aria-busy');
    }
  }

  async api(method, path, body, { raw = false } = {}) {
    const headers = { Authorization: 'Bearer ' + this.token(), Accept: raw ? 'application/x-ndjson, application/json' : 'application/json' };
    const init = { method, headers, credentials: 'omit', cache: 'no-store', redirect: 'error' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    if (!res.ok) {
      let problem = null;
      try { problem = await res.json(); } catch { /* not JSON */ }
      if (res.status === 401) this.onUnauthorized();
      throw new ApiError(res.status, problem);
    }
    if (raw) return res;
    if (res.status === 204) return null;
    const text = await res.text();
    return text ? JSON.parse(text) : null;
  }

  // ---- tenant-wide tasks (task:admin) -------------------------------------------------

  expandAllTasks(open) {
    const btn = $('all-tasks-toggle');
    btn.setAttribute('aria-expanded', String(open));
    btn.textContent = open ? "Hide all users' tasks" : "Show all users' tasks";
    $('all-tasks-body').hidden = !open;
  }

  /** One page of the tenant's tasks, every owner (GET /v1/admin/tasks); `more` continues it. */
  async loadAllTasks(more = false) {
    const msg = $('all-tasks-msg');
    say(msg, '');
    const q = new URLSearchParams({ limit: '50' });
    const status = $('all-tasks-status').value;
    const owner = $('all-tasks-owner').value.trim();
    if (status) q.set('status', status);
    if (owner) q.set('owner', owner);
    if (more && this.allTasksNext) q.set('before', this.allTasksNext);
    const seq = (this.allTasksSeq = (this.allTasksSeq || 0) + 1);
    let body;
    try {
      body = await this.api('GET', '/v1/admin/tasks?' + q);
    } catch (e) {
      if (seq === this.allTasksSeq) say(msg, "Could not list the tenant's tasks: " + e.message + fieldsText(e.fields), 'error');
      return;
    }
    if (seq !== this.allTasksSeq) return; // a newer listing was asked for meanwhile
    const list = listOf(body, 'tasks');
    this.allTasks = more ? this.allTasks.concat(list) : list;
    this.allTasksNext = String(pick(body, 'next') || '');
    $('all-tasks-more').hidden = !this.allTasksNext;
    this.renderAllTasks();
  }

  renderAllTasks() {
    const rows = this.allTasks.map((t) => {
      const task = {
        id: String(pick(t, 'id') ?? ''), owner: String(pick(t, 'owner') ?? ''),
        status: String(pick(t, 'status') ?? ''), objective: String(pick(t, 'objective') ?? ''),
      };
      return h('tr', { 'data-task-id': task.id },
        h('td', {}, utcTime(pick(t, 'createdAt'))),
        h('td', { text: task.owner }),
        h('td', {}, h('span', { class: 'badge', 'data-status': task.status, text: task.status })),
        h('td', {}, h('span', { class: 'objective-cell', text: task.objective })),
        h('td', {}, h('button', { type: 'button', class: 'small-btn', title: 'Show this task in the Task pane', on: { click: () => this.openTask(task) } },
          'Show ', h('code', { text: shortId(task.id) }))));
    });
    replace($('all-tasks-table').tBodies[0], rows.length ? rows : h('tr', {}, h('td', { colspan: '5', class: 'muted', text: 'No task matches.' })));
    labelCells($('all-tasks-table'));
  }

  // ---- tenants ------------------------------------------------------------------------

  /** One page of tenants (the API allows up to 200 a page); `after` continues a listing. */
  async fetchTenants(after = '') {
    const q = new URLSearchParams({ limit: '200' });
    if (after) q.set('after', after);
    const body = await this.api('GET', '/v1/admin/tenants?' + q);
    const list = listOf(body, 'tenants', 'items');
    this.tenants = after ? this.tenants.concat(list) : list;
    this.tenantsNext = String(pick(body, 'next') || pick(body, 'nextCursor') || '');
    return body;
  }

  async loadTenants(more = false) {
    const msg = $('tenants-msg');
    say(msg, '');
    try {
      await this.fetchTenants(more ? this.tenantsNext : '');
      $('tenants-more').hidden = !this.tenantsNext;
      this.renderTenants();
    } catch (e) {
      say(msg, 'Could not list tenants: ' + e.message, 'error');
    }
  }

  renderTenants() {
    const rows = this.tenants.map((t) => {
      const id = String(pick(t, 'id') ?? '');
      const status = String(pick(t, 'status') ?? '');
      const next = status === 'suspended' ? 'active' : 'suspended';
      const label = status === 'suspended' ? 'Resume' : 'Suspend';
      return h('tr', { 'data-tenant': id },
        h('td', {}, h('code', { text: id })),
        h('td', { text: pick(t, 'name') ?? '' }),
        h('td', {}, h('span', { class: 'badge', 'data-status': status, text: status })),
        h('td', {}, utcTime(pick(t, 'createdAt'))),
        h('td', {}, h('button', {
          type: 'button', class: status === 'suspended' ? '' : 'danger', 'aria-label': `${label} tenant ${id}`,
          on: { click: () => this.setTenantStatus(id, next) },
        }, label)));
    });
    replace($('tenants-table').tBodies[0], rows.length ? rows : h('tr', {}, h('td', { colspan: '5', class: 'muted', text: 'No tenants.' })));
    labelCells($('tenants-table'));
  }

  async createTenant() {
    const msg = $('tenants-msg');
    const id = $('tenant-id').value.trim();
    const name = $('tenant-name').value.trim();
    if (!TENANT_ID.test(id)) {
      say(msg, 'The tenant id must be 2–63 lower-case letters, digits or dashes, starting with a letter or digit.', 'error');
      $('tenant-id').focus();
      return;
    }
    try {
      await this.api('POST', '/v1/admin/tenants', name ? { id, name } : { id });
      $('tenant-id').value = '';
      $('tenant-name').value = '';
      await this.loadTenants();
      say(msg, 'Tenant ' + id + ' created.', 'ok');
    } catch (e) {
      say(msg, 'Could not create the tenant: ' + e.message + fieldsText(e.fields), 'error');
    }
  }

  async setTenantStatus(id, status) {
    const msg = $('tenants-msg');
    if (status === 'suspended' && !window.confirm(`Suspend tenant ${id}? Its sessions are closed and it can start nothing until resumed.`)) return;
    try {
      await this.api('PATCH', '/v1/admin/tenants/' + encodeURIComponent(id), { status });
      await this.loadTenants();
      say(msg, `Tenant ${id} is now ${status}.`, 'ok');
    } catch (e) {
      say(msg, 'Could not update the tenant: ' + e.message, 'error');
    }
  }

  // ---- keys ---------------------------------------------------------------------------

  async prepareKeys() {
    const sel = $('key-tenant');
    const own = this.welcome ? String(this.welcome.tenant) : '';
    let ids = [own];
    if (this.can('platform:admin')) {
      try {
        await this.fetchTenants();
        ids = this.tenants.map((t) => String(pick(t, 'id') ?? '')).filter(Boolean);
        if (!ids.includes(own)) ids.unshift(own);
      } catch { /* fall back to the own tenant */ }
    }
    const prev = sel.value || own;
    replace(sel, ids.map((id) => h('option', { value: id, text: id })));
    sel.value = ids.includes(prev) ? prev : own;
    sel.disabled = ids.length < 2;
    await this.loadKey();
    await this.loadUsage();
    await this.loadTokens();
    await this.loadSessions();
  }

  // ---- tokens -------------------------------------------------------------------------

  tokensPath() {
    return '/v1/admin/tenants/' + encodeURIComponent($('key-tenant').value) + '/tokens';
  }

  /** The tokens issued for the selected tenant (GET …/tokens), each with a Revoke button. */
  async loadTokens() {
    const body = $('tokens-table').tBodies[0];
    let l;
    try {
      l = await this.api('GET', this.tokensPath() + '?limit=50');
    } catch (e) {
      replace(body);
      say($('tokens-msg'), 'Could not list the tokens: ' + e.message, 'error');
      return;
    }
    const rows = listOf(l, 'tokens').map((t) => {
      const jti = String(pick(t, 'jti') ?? '');
      const state = pick(t, 'revoked') ? 'revoked' : pick(t, 'expired') ? 'expired' : 'valid';
      return h('tr', {},
        h('td', { text: String(pick(t, 'sub') ?? '') }),
        h('td', { text: (pick(t, 'permissions') || []).join(', ') }),
        h('td', {}, utcTime(pick(t, 'issuedAt'))),
        h('td', {}, utcTime(pick(t, 'expiresAt'))),
        h('td', { text: state }),
        h('td', {}, h('code', { text: jti })),
        h('td', {}, state === 'valid' ? h('button', {
          type: 'button', class: 'danger', 'aria-label': 'Revoke token ' + jti,
          on: { click: () => this.revokeToken(jti) },
        }, 'Revoke') : ''));
    });
    replace(body, rows.length ? rows : h('tr', {}, h('td', { colspan: '7', class: 'muted', text: 'No token issued yet.' })));
    labelCells($('tokens-table'));
  }

  /** The selected tenant's live sessions on every replica, each with an End button. */
  async loadSessions(keepMessage = false) {
    const body = $('sessions-table').tBodies[0];
    const msg = $('sessions-msg');
    let l;
    if (!keepMessage) say(msg, '');
    try {
      l = await this.api('GET', '/v1/admin/tenants/' + encodeURIComponent($('key-tenant').value) + '/sessions?limit=200');
    } catch (e) {
      replace(body);
      say(msg, 'Could not list the sessions: ' + e.message, 'error');
      return;
    }
    if (pick(l, 'complete') === false) say(msg, 'A replica did not answer in time: its sessions are missing from the list.', 'error');
    const own = this.welcome ? String(pick(this.welcome, 'sessionId') ?? '') : '';
    const rows = listOf(l, 'sessions').map((x) => {
      const sid = String(pick(x, 'sessionId') ?? '');
      return h('tr', {},
        h('td', { text: String(pick(x, 'sub') ?? '') + (sid === own ? ' (this page)' : '') }),
        h('td', {}, utcTime(pick(x, 'connectedAt'))),
        h('td', { text: String(pick(x, 'ip') ?? '') }),
        h('td', { text: String(pick(x, 'origin') ?? '') }),
        h('td', { text: String(pick(x, 'subscriptions') ?? 0) }),
        h('td', { text: String(pick(x, 'node') ?? '') }),
        h('td', {}, h('code', { text: sid })),
        h('td', {}, sid === own ? '' : h('button', {
          type: 'button', class: 'danger', 'aria-label': 'End session ' + sid,
          on: { click: () => this.endSession(sid) },
        }, 'End')));
    });
    replace(body, rows.length ? rows : h('tr', {}, h('td', { colspan: '8', class: 'muted', text: 'No live session.' })));
    labelCells($('sessions-table'));
  }

  async endSession(sid) {
    const msg = $('sessions-msg');
    const tenant = $('key-tenant').value;
    if (!window.confirm(`End session ${sid}? The client is disconnected (it may reconnect while its token is valid).`)) return;
    try {
      await this.api('DELETE', '/v1/admin/tenants/' + encodeURIComponent(tenant) + '/sessions/' + encodeURIComponent(sid));
      say(msg, 'Session ' + sid + ' ended.', 'ok');
    } catch (e) {
      say(msg, 'Could not end the session: ' + e.message, 'error');
    }
    await this.loadSessions(true);
  }

  async issueToken() {
    const msg = $('tokens-msg');
    const sub = $('token-sub').value.trim();
    if (!sub) { say(msg, 'Enter the user the token is for.', 'error'); $('token-sub').focus(); return; }
    try {
      const t = await this.api('POST', this.tokensPath(), { sub, permissions: [$('token-perm').value], ttl: $('token-ttl').value });
      $('token-value').value = String(pick(t, 'token') ?? '');
      $('token-issued').hidden = false;
      $('token-sub').value = '';
      await this.loadTokens();
      say(msg, 'Token ' + String(pick(t, 'jti') ?? '') + ' issued for ' + sub + '.', 'ok');
    } catch (e) {
      say(msg, 'Could not issue the token: ' + e.message + fieldsText(e.fields), 'error');
    }
  }

  async revokeToken(jti) {
    const msg = $('tokens-msg');
    if (!window.confirm(`Revoke token ${jti}? Its sessions are closed and it is refused from now on.`)) return;
    try {
      await this.api('POST', '/v1/admin/tokens/revoke', { jti });
      await this.loadTokens();
      say(msg, 'Token ' + jti + ' revoked.', 'ok');
    } catch (e) {
      say(msg, 'Could not revoke the token: ' + e.message, 'error');
    }
  }

  /** The selected tenant's usage per day (GET /v1/admin/usage) and its daily budget. */
  async loadUsage() {
    const tenant = $('key-tenant').value;
    const body = $('usage-table').tBodies[0];
    const seq = (this.usageSeq = (this.usageSeq || 0) + 1);
    say($('usage-msg'), '');
    replace(body);
    replace($('usage-budget'));
    // The usage and the budget are asked for together and shown together (never the rows of
    // one answer with the budget of an older one, when the tenant changes meanwhile).
    const settle = (p) => p.then((v) => ({ v }), (e) => ({ e }));
    const [usage, ten] = await Promise.all([
      settle(this.api('GET', '/v1/admin/usage?groupBy=day&tenant=' + encodeURIComponent(tenant))),
      settle(this.api('GET', '/v1/admin/tenants/' + encodeURIComponent(tenant))),
    ]);
    if (seq !== this.usageSeq) return;
    if (ten.v) {
      const lim = pick(ten.v, 'limits') || {};
      const usd = Number(pick(lim, 'budgetUsdPerDay')) || 0;
      const tok = Number(pick(lim, 'tokensPerDay')) || 0;
      const parts = [];
      if (usd > 0) parts.push('$' + usd.toFixed(2) + ' a day');
      if (tok > 0) parts.push(tok.toLocaleString('en-US') + ' tokens a day');
      say($('usage-budget'), parts.length ? 'Daily budget (UTC): ' + parts.join(', ') + '.' : 'No daily budget.');
      // Limits are the platform's to set (DESIGN §9); a tenant admin sees them only.
      $('budget-form').hidden = !this.can('platform:admin');
      $('budget-help').hidden = $('budget-form').hidden;
      $('budget-usd').value = usd > 0 ? String(usd) : '';
      $('budget-tokens').value = tok > 0 ? String(tok) : '';
    }
    if (usage.e) {
      say($('usage-msg'), 'Could not read the usage: ' + usage.e.message, 'error');
      return;
    }
    const rows = listOf(usage.v, 'rows');
    const costs = rows.map((r) => Number(pick(r, 'costUsd')) || 0);
    const busiest = Math.max(0, ...costs);
    replace(body, rows.map((r, i) => {
      const tokens = ['inputTokens', 'outputTokens', 'cacheReadInputTokens', 'cacheCreationInputTokens']
        .reduce((n, k) => n + (Number(pick(r, k)) || 0), 0);
      return h('tr', {},
        h('td', { text: String(pick(r, 'key') ?? '') }),
        h('td', { text: String(pick(r, 'tasks') ?? 0) }),
        h('td', { text: tokens.toLocaleString('en-US') }),
        h('td', { text: costs[i].toFixed(4) }),
        h('td', {}, h('meter', { min: '0', max: String(busiest || 1), value: String(costs[i]),
          'aria-label': 'cost of ' + String(pick(r, 'key') ?? '') + ' against the busiest day' })));
    }));
    if (rows.length === 0) replace(body, h('tr', {}, h('td', { colspan: '5', text: 'No task ended in the last 30 days.' })));
    labelCells($('usage-table'));
  }

  /** Sets the selected tenant's daily budget (PATCH limits; empty or 0 lifts a cap). */
  async setBudget() {
    const msg = $('budget-msg');
    const tenant = $('key-tenant').value;
    const read = (id, integer) => {
      const raw = $(id).value.trim();
      if (raw === '') return 0;
      const n = Number(raw);
      if (!Number.isFinite(n) || n < 0 || (integer && !Number.isInteger(n))) return null;
      return n;
    };
    const usd = read('budget-usd', false);
    const tokens = read('budget-tokens', true);
    if (usd === null) { say(msg, 'The dollar budget must be a number of at least 0.', 'error'); $('budget-usd').focus(); return; }
    if (tokens === null) { say(msg, 'The token budget must be a whole number of at least 0.', 'error'); $('budget-tokens').focus(); return; }
    try {
      await this.api('PATCH', '/v1/admin/tenants/' + encodeURIComponent(tenant), { limits: { budgetUsdPerDay: usd, tokensPerDay: tokens } });
      await this.loadUsage();
      say(msg, 'Budget saved for ' + tenant + '.', 'ok');
    } catch (e) {
      say(msg, 'Could not save the budget: ' + e.message + fieldsText(e.fields), 'error');
    }
  }

  keyPath() {
    return '/v1/admin/tenants/' + encodeURIComponent($('key-tenant').value) + '/key';
  }

  async loadKey() {
    const msg = $('key-msg');
    const meta = $('key-meta');
    say(msg, '');
    replace(meta);
    let m = null;
    try {
      m = await this.api('GET', this.keyPath());
    } catch (e) {
      if (e.status !== 404) { say(msg, 'Could not read the key metadata: ' + e.message, 'error'); return; }
    }
    const fp = m && pick(m, 'fingerprint');
    $('key-set').textContent = fp ? 'Rotate key' : 'Set key';
    $('key-delete').disabled = !fp;
    if (!fp) {
      replace(meta, h('dt', { text: 'Key' }), h('dd', { text: 'none set' }));
      return;
    }
    const rows = [['Fingerprint', fp], ['Provider', pick(m, 'provider')], ['Version', pick(m, 'version')], ['Updated (UTC)', utc(pick(m, 'updatedAt'))], ['Secret id', pick(m, 'secretId')]];
    replace(meta, rows.filter(([, v]) => v).flatMap(([k, v]) => [h('dt', { text: k }), h('dd', {}, k === 'Fingerprint' ? h('code', { class: 'fingerprint', text: v }) : String(v))]));
  }

  async setKey() {
    const msg = $('key-msg');
    const input = $('key-value');
    const apiKey = input.value;
    // The key leaves the page once: the field is cleared whatever happens next.
    input.value = '';
    if (!apiKey.trim()) { say(msg, 'Enter the key.', 'error'); input.focus(); return; }
    const tenant = $('key-tenant').value;
    try {
      await this.api('PUT', this.keyPath(), { apiKey });
      await this.loadKey();
      say(msg, 'Key stored for ' + tenant + '.', 'ok');
    } catch (e) {
      say(msg, 'Could not store the key: ' + e.message + fieldsText(e.fields), 'error');
    }
  }

  async deleteKey() {
    const msg = $('key-msg');
    const tenant = $('key-tenant').value;
    if (!window.confirm(`Delete the engine key of ${tenant}? Its swarms fail until a new key is set.`)) return;
    try {
      await this.api('DELETE', this.keyPath());
      await this.loadKey();
      say(msg, 'Key deleted for ' + tenant + '.', 'ok');
    } catch (e) {
      say(msg, 'Could not delete the key: ' + e.message, 'error');
    }
  }

  // ---- audit --------------------------------------------------------------------------

  auditQuery(withPage) {
    const q = new URLSearchParams();
    const add = (k, v) => { if (v) q.set(k, v); };
    if (this.can('platform:admin')) add('tenant', $('audit-tenant').value.trim());
    add('actor', $('audit-actor').value.trim());
    add('action', $('audit-action').value.trim());
    add('outcome', $('audit-outcome').value);
    for (const k of ['since', 'until']) {
      const v = $('audit-' + k).value;
      if (v) {
        const t = new Date(v + 'Z'); // the fields are labelled UTC, like every time shown
        if (!Number.isNaN(t.getTime())) add(k, t.toISOString());
      }
    }
    if (withPage) {
      add('limit', $('audit-limit').value);
      add('cursor', this.cursors[this.page]);
    }
    return q;
  }

  async loadAudit() {
    const msg = $('audit-msg');
    say(msg, '');
    let body;
    try {
      body = await this.api('GET', '/v1/admin/audit?' + this.auditQuery(true));
    } catch (e) {
      say(msg, 'Could not read the audit log: ' + e.message, 'error');
      return;
    }
    const records = listOf(body, 'records', 'items');
    this.nextCursor = String(pick(body, 'nextCursor') || pick(body, 'next') || pick(body, 'cursor') || '');
    const rows = records.map((r) => {
      const actor = pick(r, 'actor') || {};
      const target = pick(r, 'target') || {};
      const source = pick(r, 'source') || {};
      const details = pick(r, 'details');
      const outcome = String(pick(r, 'outcome') ?? '');
      const tgt = [pick(target, 'type'), pick(target, 'id')].filter(Boolean).join(' ');
      const fp = String(pick(actor, 'tokenFp') ?? '');
      const [ip, origin, ua] = ['ip', 'origin', 'userAgent'].map((k) => String(pick(source, k) ?? ''));
      return h('tr', { 'data-record-id': String(pick(r, 'id') ?? '') },
        h('td', {}, utcTime(pick(r, 'time'))),
        h('td', { text: pick(r, 'tenant') || 'platform' }),
        h('td', {}, h('code', { text: pick(r, 'action') ?? '' })),
        h('td', {}, h('span', { class: 'badge', 'data-status': outcome, text: outcome })),
        h('td', { text: pick(actor, 'sub') ?? '' }),
        h('td', {}, fp ? fingerprint(fp) : ''),
        h('td', {}, ip || origin || ua ? h('span', { class: 'source' },
          ip ? h('span', { text: ip }) : null,
          origin ? h('span', { text: origin }) : null,
          ua ? h('span', { class: 'ua small muted', title: ua, text: ua }) : null) : ''),
        h('td', { class: 'target', text: tgt }),
        h('td', { text: pick(r, 'reason') ?? '' }),
        h('td', {}, details && Object.keys(details).length
          ? h('details', {}, h('summary', { text: 'details' }), h('pre', { tabindex: '0', text: JSON.stringify(details, null, 2) }))
          : ''));
    });
    replace($('audit-table').tBodies[0], rows.length ? rows : h('tr', {}, h('td', { colspan: '10', class: 'muted', text: 'No records match.' })));
    labelCells($('audit-table'));
    $('audit-prev').disabled = this.page === 0;
    $('audit-first').disabled = this.page === 0;
    $('audit-next').disabled = !this.nextCursor;
    $('audit-page').textContent = `Page ${this.page + 1} · ${records.length} record${records.length === 1 ? '' : 's'}`;
  }

  async exportAudit() {
    const msg = $('audit-msg');
    say(msg, '');
    try {
      const res = await this.api('GET', '/v1/admin/audit/export?' + this.auditQuery(false), undefined, { raw: true });
      const blob = await res.blob();
      const url = URL.createObjectURL(new Blob([blob], { type: 'application/x-ndjson' }));
      const a = h('a', { href: url, download: 'flowgate-audit-' + new Date().toISOString().replace(/[:.]/g, '-') + '.ndjson', hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
      say(msg, `Exported ${blob.size} bytes.`, 'ok');
    } catch (e) {
      say(msg, 'Export failed: ' + e.message, 'error');
    }
  }

  async verifyAudit() {
    const out = $('audit-verify-result');
    say(out, 'Verifying…', 'info');
    const q = new URLSearchParams();
    if (this.can('platform:admin') && $('audit-tenant').value.trim()) q.set('tenant', $('audit-tenant').value.trim());
    try {
      const rep = await this.api('GET', '/v1/admin/audit/verify' + (q.size ? '?' + q : ''));
      const chains = listOf(rep, 'chains');
      const records = chains.reduce((n, c) => n + Number(pick(c, 'records') || 0), 0);
      if (pick(rep, 'ok')) {
        say(out, `Verified: ${chains.length} chain${chains.length === 1 ? '' : 's'}, ${records} records, no problem found.`, 'ok');
      } else {
        const p = pick(rep, 'firstProblem') || {};
        say(out, `Verification FAILED: chain ${pick(p, 'tenant') || 'platform'} record ${pick(p, 'seq')}: ${pick(p, 'kind') || ''} ${pick(p, 'detail') || ''}`.trim(), 'error');
      }
    } catch (e) {
      say(out, 'Could not verify: ' + e.message, 'error');
    }
  }
}
