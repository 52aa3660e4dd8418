// The dashboard (/ui/) in headless Chromium (Debian's chromium package) driven by
// playwright-core, against a live `flowgate serve --dev`:
//
//   cd internal/web/browsertest && npm ci && node --experimental-websocket --test
//
// Environment: CHROMIUM (default /usr/bin/chromium), FLOWGATE_BIN (prebuilt binary),
// FLOWGATE_ARTIFACTS (screenshots; default <repo>/test-artifacts/browser).
//
// axe-core (pinned in package.json) checks every view (Swarms, Tenants, Keys, Audit log, with
// data) at desktop (1400×900) and phone (390×844) width, with no horizontal overflow, and
// writes <view>-desktop.png and <view>-phone.png. The page's CSP forbids inline scripts, so
// axe is not added as a script tag: its source is evaluated through the DevTools protocol
// (page.evaluate), which the CSP does not govern, in the same page the CSP tests watch.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { chromium } from 'playwright-core';
import { startGateway, startProxy, repoRoot, flowgateBinary } from '../sdktest/gateway.mjs';
import { FlowgateClient } from '../npm/flowgate.mjs';

const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const VIEWPORTS = { desktop: { width: 1400, height: 900 }, phone: { width: 390, height: 844 } };
const VIEWS = ['swarms', 'tenants', 'keys', 'audit'];
const UTC_ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = process.env.FLOWGATE_ARTIFACTS || join(repoRoot, 'test-artifacts', 'browser');
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
const SLOW = 90_000; // a shared, slow machine: generous waits, never fixed sleeps

if (!existsSync(CHROMIUM)) {
  throw new Error(`no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM)`);
}
mkdirSync(ARTIFACTS, { recursive: true });

let gw, proxy, browser, context, page;
const problems = []; // console errors, page errors, CSP violations

before(async () => {
  gw = await startGateway();
  // The browser talks to the gateway through a TCP proxy so a test can cut its connection.
  proxy = await startProxy(gw.url);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run'],
  });
  context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  page = await context.newPage();
  page.setDefaultTimeout(SLOW);
  page.on('console', (m) => {
    const url = (m.location() && m.location().url) || '';
    // A tenant without a key answers its key GET with 404: the browser logs that load, and the
    // dashboard shows "none set". Every other error counts.
    if (/Failed to load resource: .* 404/.test(m.text()) && /\/v1\/admin\/tenants\/[a-z0-9-]+\/key$/.test(url)) return;
    if (m.type() === 'error' || /Content Security Policy/i.test(m.text())) problems.push('console: ' + m.text() + (url ? ' at ' + url : ''));
  });
  page.on('pageerror', (e) => problems.push('pageerror: ' + e.message));
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      (window.__csp ||= []).push(`${e.violatedDirective} ${e.blockedURI}`);
    });
  });
});

after(async () => {
  if (browser) await browser.close();
  if (proxy) await proxy.close();
  if (gw) await gw.stop();
});

const base = () => 'http://' + new URL(proxy.url).host;

async function shot(name) {
  await page.screenshot({ path: join(ARTIFACTS, name + '.png'), fullPage: true });
}

async function assertClean(where) {
  const csp = await page.evaluate(() => window.__csp || []);
  assert.deepEqual(csp, [], `CSP violations ${where}`);
  assert.deepEqual(problems, [], `console or page errors ${where}`);
}

async function connectWith(token) {
  await page.fill('#token', token);
  await page.click('#connect-btn');
  await page.waitForSelector('#conn-state[data-state="open"]');
}

async function startSwarm(objective, { agents = '3', strategy = 'auto', mode = 'centralized', timeout = '120' } = {}) {
  await page.fill('#objective', objective);
  await page.fill('#agents', agents);
  await page.selectOption('#strategy', strategy);
  await page.selectOption('#mode', mode);
  await page.fill('#timeout', timeout);
  await page.click('#start-btn');
}

/** The seq numbers shown in the event log, in order. */
function shownSeqs() {
  return page.$$eval('#events .ev-seq', (els) => els.map((e) => e.textContent).filter(Boolean).map((s) => Number(s.slice(1))));
}

/**
 * Fails the test unless the admin API route is served to the admin token: 200, or a 404 from
 * the handler itself (a tenant without a key), never the router's "no such route".
 */
async function assertAPI(path, token) {
  const res = await fetch(gw.http + path, { headers: { Authorization: 'Bearer ' + token } });
  const body = await res.text();
  assert.ok(res.status === 200 || (res.status === 404 && !/no such route/.test(body)), `GET ${path}: ${res.status} ${body}`);
}

/** axe-core's violations on the page as it is now, in the page's own context (CSP and all). */
async function axeViolations(p = page) {
  if (!(await p.evaluate(() => typeof window.axe === 'object'))) await p.evaluate(AXE_SOURCE + '\n;true');
  return p.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    if (r.passes.length === 0) throw new Error('axe-core checked nothing');
    return r.violations.map((v) => ({
      id: v.id, impact: v.impact, help: v.help,
      nodes: v.nodes.map((n) => ({ target: n.target.join(' '), summary: n.failureSummary })),
    }));
  });
}

function formatViolations(vs) {
  return vs.map((v) => `  ${v.id} (${v.impact}): ${v.help}\n` +
    v.nodes.map((n) => `    at ${n.target}\n      ${String(n.summary || '').replace(/\n/g, '\n      ')}`).join('\n')).join('\n');
}

/**
 * Layout problems of the view shown: the page wider than the window, a table wider than its
 * box (it would have to be scrolled sideways), a control cut by the window or by a scrolling
 * ancestor, an id or action broken into a letter per line.
 */
function layoutProblems(view) {
  return page.evaluate((view) => {
    const out = [];
    const W = window.innerWidth;
    const name = (e) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') +
      (e.getAttribute('aria-label') ? `[${e.getAttribute('aria-label')}]` : '') + (e.textContent ? ` "${e.textContent.trim().slice(0, 30)}"` : '');
    const shown = (e) => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden';
    if (document.documentElement.scrollWidth > W) {
      const wide = [...document.querySelectorAll('body *')].filter((e) => shown(e) && e.getBoundingClientRect().right > W + 0.5).slice(-5);
      out.push(`page is ${document.documentElement.scrollWidth}px wide in a ${W}px window: ${wide.map(name).join(', ')}`);
    }
    const scope = [document.querySelector('header'), document.querySelector('nav'), document.getElementById('view-' + view)];
    for (const root of scope) {
      for (const el of root.querySelectorAll('button, input, select, textarea, [role="tab"]')) {
        if (!shown(el)) continue;
        const r = el.getBoundingClientRect();
        if (r.left < -0.5 || r.right > W + 0.5) { out.push(`${name(el)} is cut by the window (${Math.round(r.left)}…${Math.round(r.right)} of ${W})`); continue; }
        for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
          const cs = getComputedStyle(a);
          if (cs.overflowX === 'visible' && cs.overflowY === 'visible') continue;
          const b = a.getBoundingClientRect();
          if (r.left < b.left - 0.5 || r.right > b.right + 0.5) { out.push(`${name(el)} is cut by ${name(a).slice(0, 60)}`); break; }
        }
      }
      for (const el of root.querySelectorAll('.table-wrap')) {
        if (shown(el) && el.scrollWidth > el.clientWidth + 1) out.push(`${name(el).slice(0, 60)}: its table is ${el.scrollWidth}px wide in ${el.clientWidth}px`);
      }
      for (const el of root.querySelectorAll('code')) {
        if (!shown(el)) continue;
        const lines = el.getClientRects().length;
        if (lines > 3) out.push(`${name(el)} wraps over ${lines} lines`);
      }
    }
    return out;
  }, view);
}

/** Waits until the view shows its data (the admin views set aria-busy while they load). */
async function openView(view) {
  await page.click('#tab-' + view);
  await page.waitForSelector(`#view-${view}:not([hidden]):not([aria-busy="true"])`);
  const ready = {
    swarms: ['#detail-status[data-status="success"]', '#events .ev[data-type="task_complete"]', '#all-tasks-table tbody tr[data-task-id]'],
    tenants: ['#tenants-table tr[data-tenant="demo"]'],
    keys: ['#key-meta dt', '#usage-table tbody tr', '#tokens-table tbody tr'],
    audit: ['#audit-table tbody tr td code'],
  }[view];
  for (const sel of ready) await page.waitForSelector(sel);
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
}

test('the dashboard is served with a strict CSP and no inline code', async () => {
  const res = await fetch(gw.dashboard);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-security-policy'), CSP);
  assert.match(res.headers.get('content-type'), /^text\/html/);
  const html = await res.text();
  assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/i, 'inline script');
  assert.doesNotMatch(html, /<style|\sstyle=/i, 'inline style');
  for (const p of ['/ui/app.js', '/sdk/flowgate.js', '/ui/style.css']) {
    const r = await fetch(gw.http + p);
    assert.equal(r.status, 200, p);
    assert.equal(r.headers.get('content-security-policy'), CSP, p);
  }
});

test('a user pastes a token, runs a swarm to success and cancels another', async (t) => {
  const resp = await page.goto(base() + '/ui/');
  assert.equal(resp.headers()['content-security-policy'], CSP);
  await page.waitForSelector('#conn-state');
  await shot('01-loaded');

  // A token the gateway refuses: the page says why (the SDK asked /v1/whoami), not "1006".
  await page.fill('#token', 'not-a-jwt');
  await page.click('#connect-btn');
  await page.waitForFunction(() => /\(unauthorized/.test(document.getElementById('connect-msg').textContent));
  // Chromium logs the refused handshake and the 401 of the diagnosis: expected here, and only here.
  const expected = (m) => /WebSocket connection to .* failed: HTTP Authentication failed/.test(m) || /status of 401 .* at .*\/v1\/whoami$/.test(m);
  for (let i = problems.length - 1; i >= 0; i--) if (expected(problems[i])) problems.splice(i, 1);

  await connectWith(gw.userToken);
  assert.equal(await page.textContent('#conn-state'), 'Connected');
  assert.ok(!page.url().includes(gw.userToken), 'the token is in the URL');
  assert.equal(await page.evaluate(() => sessionStorage.getItem('flowgate.token')), gw.userToken);
  assert.match(await page.textContent('#who'), /demo-user @ demo/);
  for (const tab of ['tenants', 'keys', 'audit']) {
    assert.equal(await page.isHidden('#tab-' + tab), true, tab + ' tab shown to a plain user');
  }
  assert.equal(await page.isHidden('#all-tasks-card'), true, 'the tenant-wide task view shown without task:admin');

  await t.test('swarm to success, with engine text that looks like markup', async () => {
    const objective = 'browser success <img src=x onerror="window.__xss=1"> sim:events=12 sim:pace=30ms';
    await startSwarm(objective, { agents: '3', strategy: 'parallel', mode: 'distributed' });
    await page.waitForSelector('#detail-status[data-status="success"]');
    assert.equal(await page.textContent('#detail-objective'), objective);
    assert.equal(await page.$$eval('#agent-list li', (l) => l.length), 3);
    assert.equal(await page.$eval('#detail-progress', (p) => p.value), 100);
    const seqs = await shownSeqs();
    assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => i + 1));
    assert.ok(seqs.length >= 12);
    assert.match(await page.textContent('#detail-result'), /Simulated swarm completed: browser success <img/);
    assert.equal(await page.$$eval('main img', (l) => l.length), 0, 'engine text became markup');
    assert.equal(await page.evaluate(() => window.__xss), undefined);
    await shot('02-swarm-success');
  });

  await t.test('cancel a running swarm', async () => {
    await startSwarm('browser cancel me sim:hang', { agents: '2' });
    await page.waitForSelector('#detail-status[data-status="running"]');
    await page.waitForSelector('#events .ev[data-type="system"]');
    await shot('03-running');
    await page.click('#detail-cancel');
    await page.waitForSelector('#detail-status[data-status="cancelled"]');
    await page.waitForSelector('#events .ev[data-type="task_complete"]');
    assert.match(await page.textContent('#swarm-msg'), /Cancel requested/);
    // Cancelled is an outcome the user asked for: shown neutral, not as an error.
    assert.equal(await page.textContent('#detail-result'), 'Cancelled');
    assert.equal(await page.getAttribute('#detail-result', 'data-kind'), 'neutral');
    assert.equal(await page.textContent('#detail-status'), 'cancelled');
    assert.equal(await page.isHidden('#detail-cancel'), true, 'a cancelled task still offers Cancel');
    const colors = await page.evaluate(() => {
      const c = (id) => getComputedStyle(document.getElementById(id)).color;
      const probe = document.createElement('span');
      probe.className = 'badge';
      probe.dataset.status = 'failed';
      document.body.append(probe);
      const failed = getComputedStyle(probe).color;
      probe.remove();
      return { badge: c('detail-status'), failed, border: getComputedStyle(document.getElementById('detail-result')).borderLeftColor };
    });
    assert.notEqual(colors.badge, colors.failed, 'the cancelled badge is coloured like a failure');
    assert.notEqual(colors.border, colors.failed, 'the cancelled result is marked like a failure');
    await page.click('#tasks-refresh');
    await page.waitForFunction(() => document.querySelectorAll('#task-list li').length >= 2);
    const statuses = await page.$$eval('#task-list li .badge', (l) => l.map((b) => b.textContent));
    assert.ok(statuses.includes('success') && statuses.includes('cancelled'), statuses.join(','));
    await shot('04-cancelled');
  });

  await t.test('a cut connection shows reconnecting, resumes, and loses or repeats no event', async () => {
    await page.evaluate(() => {
      window.__states = [];
      new MutationObserver(() => window.__states.push(document.getElementById('conn-state').dataset.state))
        .observe(document.getElementById('conn-state'), { attributes: true, attributeFilter: ['data-state'] });
    });
    await startSwarm('browser resume sim:events=30 sim:pace=60ms', { agents: '2' });
    await page.waitForFunction(() => document.querySelectorAll('#events .ev').length >= 6);
    assert.ok(proxy.cut() >= 1);
    await page.waitForSelector('#detail-status[data-status="success"]');
    const states = await page.evaluate(() => window.__states);
    assert.ok(states.includes('reconnecting'), states.join(','));
    assert.equal(await page.getAttribute('#conn-state', 'data-state'), 'open');
    assert.match(await page.textContent('#conn-state'), /Connected/);
    const seqs = await shownSeqs();
    assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => i + 1), 'a gap or a duplicate after the reconnect');
    await shot('05-resumed');
  });

  await t.test('after a reload the session resumes and a finished task is replayed from the list', async () => {
    await page.reload();
    await page.waitForSelector('#conn-state[data-state="open"]');
    await page.waitForFunction(() => document.querySelectorAll('#task-list li').length >= 3);
    assert.equal(await page.isHidden('#detail-body'), true);
    await page.click('#task-list li:last-child .task-open');
    await page.waitForFunction(() => /browser success/.test(document.getElementById('detail-objective').textContent));
    await page.waitForSelector('#events .ev[data-type="task_complete"]');
    const seqs = await shownSeqs();
    assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => i + 1));
    assert.equal(await page.getAttribute('#detail-status', 'data-status'), 'success');
  });

  await t.test('a refused request is explained', async () => {
    await startSwarm('-starts with a dash', {});
    await page.waitForSelector('#swarm-msg:not([hidden])');
    assert.match(await page.textContent('#swarm-msg'), /validation_failed/);
  });

  await assertClean('in the user session');
});

test('an admin sees the admin views: tenants, keys and the audit log', async (t) => {
  await page.click('#disconnect-btn');
  await page.waitForSelector('#conn-state[data-state="closed"]');
  assert.equal(await page.$$eval('#task-list li', (l) => l.length), 0, 'the previous user\'s tasks are still shown');
  await page.selectOption('#transport', 'ticket'); // POST /v1/ws-ticket, then ?ticket=
  await connectWith(gw.adminToken);
  assert.match(await page.textContent('#who'), /demo-admin @ demo/);
  for (const tab of ['tenants', 'keys', 'audit']) {
    assert.equal(await page.isVisible('#tab-' + tab), true, tab + ' tab hidden from an admin');
  }
  await shot('06-admin-connected');

  await t.test("all users' tasks: the tenant-wide task view of a task:admin token", async () => {
    await assertAPI('/v1/admin/tasks', gw.adminToken);
    assert.equal(await page.isVisible('#all-tasks-card'), true, 'no tenant-wide task view for task:admin');
    assert.equal(await page.isHidden('#all-tasks-body'), true, 'the tenant-wide list is open before it was asked for');
    assert.equal(await page.$$eval('#task-list li', (l) => l.length), 0, 'the admin started no task of its own');
    await page.click('#all-tasks-toggle');
    assert.equal(await page.getAttribute('#all-tasks-toggle', 'aria-expanded'), 'true');
    await page.waitForSelector('#all-tasks-table tbody tr[data-task-id]');
    const rows = await page.$$eval('#all-tasks-table tbody tr[data-task-id]', (rs) => rs.map((r) => ({
      id: r.dataset.taskId, created: r.cells[0].textContent, owner: r.cells[1].textContent,
      status: r.cells[2].textContent, objective: r.cells[3].textContent,
    })));
    // The page lists what the API answers, in its order (newest first).
    const api = await (await fetch(gw.http + '/v1/admin/tasks', { headers: { Authorization: 'Bearer ' + gw.adminToken } })).json();
    assert.deepEqual(rows.map((r) => r.id), api.tasks.map((x) => x.id));
    for (const [i, r] of rows.entries()) {
      assert.equal(r.owner, api.tasks[i].owner);
      assert.equal(r.status, api.tasks[i].status);
      assert.match(r.created, UTC_ISO);
      assert.equal(Date.parse(r.created), Math.floor(Date.parse(api.tasks[i].createdAt) / 1000) * 1000);
    }
    // The other user's tasks of the first test: a success and a cancellation.
    assert.ok(rows.some((r) => r.owner === 'demo-user' && r.status === 'success' && /browser success/.test(r.objective)), JSON.stringify(rows));
    assert.ok(rows.some((r) => r.owner === 'demo-user' && r.status === 'cancelled'), JSON.stringify(rows));

    // Filtered by status, then one opened in the detail pane (a task admin may follow it).
    await page.selectOption('#all-tasks-status', 'cancelled');
    await page.click('#all-tasks-refresh');
    await page.waitForFunction(() => {
      const b = [...document.querySelectorAll('#all-tasks-table tbody tr[data-task-id] .badge')];
      return b.length > 0 && b.every((e) => e.textContent === 'cancelled');
    });
    await page.click('#all-tasks-table tbody tr[data-task-id] button');
    await page.waitForSelector('#detail-status[data-status="cancelled"]');
    await page.waitForSelector('#events .ev[data-type="task_complete"]');
    assert.match(await page.textContent('#detail-objective'), /browser cancel me/);
    assert.equal(await page.textContent('#detail-result'), 'Cancelled');
    assert.equal(await page.isHidden('#detail-cancel'), true);
    assert.equal(await page.$$eval('#task-list li', (l) => l.length), 0, "another user's task joined the admin's own list");
    await page.selectOption('#all-tasks-status', '');
    await page.click('#all-tasks-refresh');
    await page.waitForFunction(() => document.querySelectorAll('#all-tasks-table tbody tr[data-task-id]').length >= 3);
    await shot('06b-all-tasks');
  });

  await t.test('tenants: list, create, suspend, resume', async (t) => {
    await assertAPI('/v1/admin/tenants', gw.adminToken);
    await page.click('#tab-tenants');
    await page.waitForSelector('#tenants-table tr[data-tenant="demo"]');
    await page.fill('#tenant-id', 'browser-co');
    await page.fill('#tenant-name', 'Browser & <Co>');
    await page.click('#tenant-form button[type="submit"]');
    await page.waitForSelector('#tenants-table tr[data-tenant="browser-co"]');
    assert.equal(await page.textContent('#tenants-table tr[data-tenant="browser-co"] td:nth-child(2)'), 'Browser & <Co>');
    page.once('dialog', (d) => d.accept());
    await page.click('#tenants-table tr[data-tenant="browser-co"] button');
    await page.waitForSelector('#tenants-table tr[data-tenant="browser-co"] .badge[data-status="suspended"]');
    await shot('07-tenant-suspended');
    await page.click('#tenants-table tr[data-tenant="browser-co"] button');
    await page.waitForSelector('#tenants-table tr[data-tenant="browser-co"] .badge[data-status="active"]');
  });

  await t.test('keys: set, rotate, delete; the key is never shown back', async (t) => {
    await assertAPI('/v1/admin/tenants/demo/key', gw.adminToken);
    await page.click('#tab-keys');
    await page.waitForSelector('#key-tenant option[value="browser-co"]', { state: 'attached', timeout: 10_000 }).catch(() => {});
    const target = (await page.$('#key-tenant option[value="browser-co"]')) ? 'browser-co' : 'demo';
    if ((await page.inputValue('#key-tenant')) !== target) await page.selectOption('#key-tenant', target);
    await page.waitForSelector('#key-meta dt');
    const secret = 'sk-ant-api03-browsertest-' + 'x'.repeat(40);
    assert.equal(await page.getAttribute('#key-value', 'type'), 'password');
    await page.fill('#key-value', secret);
    await page.click('#key-set');
    await page.waitForSelector('#key-meta .fingerprint');
    const fp1 = await page.textContent('#key-meta .fingerprint');
    assert.match(fp1, /^sha256:[0-9a-f]{12}$/);
    assert.equal(await page.inputValue('#key-value'), '', 'the key field was not cleared');
    assert.equal(await page.textContent('#key-set'), 'Rotate key');
    assert.ok(!(await page.content()).includes(secret), 'the key is in the page');
    await shot('08-key-set');
    await page.fill('#key-value', secret.replace('x', 'y'));
    await page.click('#key-set');
    await page.waitForFunction((fp) => document.querySelector('#key-meta .fingerprint')?.textContent !== fp, fp1);
    page.once('dialog', (d) => d.accept());
    await page.click('#key-delete');
    await page.waitForFunction(() => /none set/.test(document.getElementById('key-meta').textContent));
  });

  await t.test('usage per day of the tenant the user ran swarms in, and its budget', async () => {
    await assertAPI('/v1/admin/usage?tenant=demo', gw.adminToken);
    if ((await page.inputValue('#key-tenant')) !== 'demo') await page.selectOption('#key-tenant', 'demo');
    const today = new Date().toISOString().slice(0, 10);
    await page.waitForFunction((d) => [...document.querySelectorAll('#usage-table tbody td:first-child')].some((e) => e.textContent === d), today);
    const row = await page.$$eval('#usage-table tbody tr', (rows, d) => {
      const r = rows.find((x) => x.cells[0].textContent === d);
      return { tasks: Number(r.cells[1].textContent), cost: Number(r.cells[3].textContent), meter: !!r.querySelector('meter') };
    }, today);
    assert.ok(row.tasks >= 1 && row.cost > 0 && row.meter, JSON.stringify(row));
    assert.match(await page.textContent('#usage-budget'), /budget/);
    // A platform admin sets the budget from here; the API holds what the form sent.
    await page.fill('#budget-usd', '12.5');
    await page.fill('#budget-tokens', '2000000');
    await page.click('#budget-set');
    await page.waitForFunction(() => /\$12\.50 a day, 2,000,000 tokens a day/.test(document.getElementById('usage-budget').textContent));
    const limits = (await (await fetch(gw.http + '/v1/admin/tenants/demo', { headers: { Authorization: 'Bearer ' + gw.adminToken } })).json()).limits;
    assert.equal(limits.budgetUsdPerDay, 12.5);
    assert.equal(limits.tokensPerDay, 2000000);
    await shot('08b-usage');
    // A bad value is refused in the page, and nothing is sent; emptying both lifts the caps.
    await page.fill('#budget-tokens', '1.5');
    await page.click('#budget-set');
    await page.waitForFunction(() => /whole number/.test(document.getElementById('budget-msg').textContent));
    await page.fill('#budget-usd', '');
    await page.fill('#budget-tokens', '');
    await page.click('#budget-set');
    await page.waitForFunction(() => /No daily budget/.test(document.getElementById('usage-budget').textContent));
  });

  await t.test('tokens: issue, list, revoke by id alone', async () => {
    await assertAPI('/v1/admin/tenants/demo/tokens', gw.adminToken);
    await page.fill('#token-sub', 'dashboard-user');
    await page.selectOption('#token-perm', 'swarm:execute');
    await page.click('#token-issue');
    await page.waitForFunction(() => document.getElementById('token-value').value.split('.').length === 3);
    const issued = await page.inputValue('#token-value');
    const row = () => page.$$eval('#tokens-table tbody tr', (rows) => rows.map((r) => [...r.cells].map((c) => c.textContent)).find((c) => c[0] === 'dashboard-user'));
    await page.waitForFunction(() => [...document.querySelectorAll('#tokens-table tbody td:first-child')].some((e) => e.textContent === 'dashboard-user'));
    assert.equal((await row())[4], 'valid');
    let res = await fetch(gw.http + '/v1/ws-ticket', { method: 'POST', headers: { Authorization: 'Bearer ' + issued } });
    assert.equal(res.status, 201);
    page.once('dialog', (d) => d.accept());
    await page.click('#tokens-table tbody tr:first-child button');
    await page.waitForFunction(() => /revoked/.test(document.getElementById('tokens-msg').textContent));
    assert.equal((await row())[4], 'revoked');
    res = await fetch(gw.http + '/v1/ws-ticket', { method: 'POST', headers: { Authorization: 'Bearer ' + issued } });
    assert.equal(res.status, 401);
    await shot('08c-tokens');
  });

  await t.test('live sessions: listed from the gateway, one ended from here', async () => {
    await assertAPI('/v1/admin/tenants/demo/sessions', gw.adminToken);
    const other = new FlowgateClient({ url: gw.url, token: gw.userToken, reconnect: false });
    const closed = new Promise((res) => other.on('state', (st) => { if (st.state === 'closed') res(st); }));
    const welcome = await other.connect();
    const sid = welcome.sessionId;
    await page.click('#sessions-refresh');
    await page.waitForFunction((id) => [...document.querySelectorAll('#sessions-table tbody code')].some((e) => e.textContent === id), sid);
    page.once('dialog', (d) => d.accept());
    await page.click(`#sessions-table button[aria-label="End session ${sid}"]`);
    const st = await closed;
    assert.equal(st.code, 1008);
    assert.equal(st.reason, 'session_terminated');
    await page.waitForFunction((id) => new RegExp('Session ' + id + ' ended').test(document.getElementById('sessions-msg').textContent), sid);
    await shot('08d-sessions');
  });

  await t.test('audit view: UTC ISO times, source and token columns, every chain by default', async () => {
    await page.click('#tab-audit');
    await page.waitForSelector('#audit-table tbody tr td code');
    // A platform admin starts on every chain (@all), not only its own tenant's.
    assert.equal(await page.inputValue('#audit-tenant'), '@all');
    const heads = await page.$$eval('#audit-table thead th', (l) => l.map((e) => e.textContent));
    assert.deepEqual(heads, ['Time (UTC)', 'Tenant', 'Action', 'Outcome', 'Actor', 'Token', 'Source', 'Target', 'Reason', 'Details']);
    const times = await page.$$eval('#audit-table tbody td:first-child time', (l) => l.map((e) => [e.textContent, e.getAttribute('datetime')]));
    assert.ok(times.length > 0);
    for (const [text, dt] of times) {
      assert.match(text, UTC_ISO);
      assert.equal(Date.parse(text), Math.floor(Date.parse(dt) / 1000) * 1000, `${text} is not ${dt}`);
    }
    const tenants = new Set(await page.$$eval('#audit-table tbody td:nth-child(2)', (l) => l.map((e) => e.textContent)));
    assert.ok(tenants.has('demo'), [...tenants].join(','));

    // The newest task.create, as the API has it, against its row.
    const res = await fetch(gw.http + '/v1/admin/audit?tenant=@all&action=task.create&limit=1', { headers: { Authorization: 'Bearer ' + gw.adminToken } });
    const rec = (await res.json()).records[0];
    assert.ok(rec.actor.tokenFp && rec.source.ip && rec.source.userAgent, JSON.stringify(rec));
    await page.fill('#audit-action', 'task.create');
    await page.click('#audit-search');
    await page.waitForFunction((id) => document.querySelector('#audit-table tbody tr')?.dataset.recordId === id, rec.id);
    const row = await page.$eval('#audit-table tbody tr', (r) => [...r.cells].map((c) => c.textContent));
    assert.equal(row[0], rec.time.replace(/\.\d+Z$/, 'Z'));
    assert.equal(row[4], rec.actor.sub);
    assert.equal(row[5], rec.actor.tokenFp);
    assert.ok(row[6].includes(rec.source.ip), row[6]);
    if (rec.source.origin) assert.ok(row[6].includes(rec.source.origin), row[6]);
    assert.ok(row[6].includes(rec.source.userAgent), row[6]);

    // The platform chain is in the default scope: no need to name it.
    await page.fill('#audit-action', 'server.start');
    await page.click('#audit-search');
    await page.waitForFunction(() => {
      const cells = [...document.querySelectorAll('#audit-table tbody td:nth-child(2)')];
      return cells.length > 0 && cells.every((e) => e.textContent === 'platform');
    });
    await page.fill('#audit-action', '');
    await page.click('#audit-search');
    await page.waitForFunction(() => document.querySelectorAll('#audit-table tbody tr[data-record-id]').length > 1);
    await shot('09a-audit-utc');
  });

  await t.test('audit log: records, filters, paging, export, verify', async (t) => {
    await assertAPI('/v1/admin/audit', gw.adminToken);
    await page.click('#tab-audit');
    await page.waitForSelector('#audit-table tbody tr td code');
    const actions = await page.$$eval('#audit-table tbody td:nth-child(3)', (l) => l.map((e) => e.textContent));
    assert.ok(actions.includes('task.create'), actions.join(','));
    await shot('09-audit');

    await page.fill('#audit-action', 'task.create');
    await page.click('#audit-search');
    await page.waitForFunction(() => [...document.querySelectorAll('#audit-table tbody td:nth-child(3)')].every((e) => e.textContent === 'task.create'));
    await page.fill('#audit-action', '');
    // This session alone wrote more than ten records: page through them with the cursor.
    await page.selectOption('#audit-limit', '10');
    await page.click('#audit-search');
    await page.waitForFunction(() => /Page 1 · 10 records/.test(document.getElementById('audit-page').textContent));
    assert.equal(await page.isEnabled('#audit-next'), true, 'no next page');
    const firstPage = await page.textContent('#audit-table tbody');
    await page.click('#audit-next');
    await page.waitForFunction(() => /Page 2/.test(document.getElementById('audit-page').textContent));
    assert.notEqual(await page.textContent('#audit-table tbody'), firstPage);
    await page.click('#audit-prev');
    await page.waitForFunction(() => /Page 1/.test(document.getElementById('audit-page').textContent));
    assert.equal(await page.textContent('#audit-table tbody'), firstPage);
    // A platform admin may choose another chain: the platform's own (server.start is there).
    await page.fill('#audit-tenant', '@platform');
    await page.fill('#audit-action', 'server.start');
    await page.click('#audit-search');
    await page.waitForFunction(() => {
      const cells = [...document.querySelectorAll('#audit-table tbody td:nth-child(2)')];
      return cells.length > 0 && cells.every((e) => e.textContent === 'platform');
    });
    await page.fill('#audit-tenant', '');
    await page.fill('#audit-action', '');

    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#audit-export')]);
    const file = join(ARTIFACTS, 'audit-export.ndjson');
    await download.saveAs(file);
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    assert.ok(lines.length > 0);
    for (const l of lines) assert.ok(JSON.parse(l).hash, 'an exported record without its hash');

    await page.click('#audit-verify');
    await page.waitForFunction(() => /Verified|FAILED|Could not/.test(document.getElementById('audit-verify-result').textContent));
    assert.match(await page.textContent('#audit-verify-result'), /^Verified:/);
    await shot('10-audit-verified');
  });

  await page.setViewportSize({ width: 390, height: 844 });
  await page.click('#tab-swarms');
  await shot('11-narrow');
  await assertClean('in the admin session');
});

test('every view at desktop and phone width: axe-core finds no violation, nothing overflows or is cut', async () => {
  await page.setViewportSize(VIEWPORTS.desktop);
  await page.click('#tab-swarms');
  // Data in every part of the Swarms view: a task of the admin's own, finished, in the
  // detail pane (agents, events, result), and the tenant's tasks listed below.
  await startSwarm('axe sweep: a swarm with a result sim:events=14 sim:pace=20ms', { agents: '3', strategy: 'parallel' });
  await page.waitForSelector('#detail-status[data-status="success"]');
  await page.click('#tasks-refresh');
  if ((await page.getAttribute('#all-tasks-toggle', 'aria-expanded')) !== 'true') await page.click('#all-tasks-toggle');
  await page.click('#all-tasks-refresh');
  await page.waitForFunction(() => [...document.querySelectorAll('#all-tasks-table tbody td')].some((e) => /axe sweep/.test(e.textContent)));
  // The audit view with a page of every chain's records, one record's details open.
  await page.click('#tab-audit');
  await page.fill('#audit-tenant', '@all');
  await page.fill('#audit-action', '');
  await page.selectOption('#audit-limit', '25');
  await page.click('#audit-search');
  await page.waitForFunction(() => /Page 1 · 25 records/.test(document.getElementById('audit-page').textContent));
  await page.click('#audit-table tbody details summary');

  const failures = [];
  const written = [];
  for (const [size, viewport] of Object.entries(VIEWPORTS)) {
    await page.setViewportSize(viewport);
    for (const view of VIEWS) {
      await openView(view);
      const violations = await axeViolations();
      if (violations.length) failures.push(`${view} at ${size} (${viewport.width}px): axe-core found\n${formatViolations(violations)}`);
      const layout = await layoutProblems(view);
      if (layout.length) failures.push(`${view} at ${size} (${viewport.width}px): layout\n  ${layout.join('\n  ')}`);
      await shot(`${view}-${size}`);
      written.push(`${view}-${size}.png`);
    }
  }
  assert.equal(written.length, VIEWS.length * 2);
  for (const f of written) assert.ok(existsSync(join(ARTIFACTS, f)), f);
  assert.deepEqual(failures, [], '\n' + failures.join('\n\n'));
  await page.setViewportSize(VIEWPORTS.desktop);
  await assertClean('in the axe sweep');
});

/** A free loopback port (the kernel's choice, released again at once). */
function freePort() {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.on('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

/**
 * `flowgate serve --dev` on a fixed port and data dir, so that a test can kill it and start
 * it again where the page reconnects (the dev signing key lives in the data dir: the tokens
 * stay valid across the restart).
 */
async function serveAt(dataDir, port) {
  const child = spawn(flowgateBinary(), ['serve', '--dev', '--data-dir', dataDir], {
    env: {
      PATH: process.env.PATH, HOME: dataDir,
      FLOWGATE_SERVER_ADDR: '127.0.0.1:' + port, FLOWGATE_OPS_ADDR: '127.0.0.1:0',
      FLOWGATE_LOG_FORMAT: 'json', FLOWGATE_LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let logs = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => { if (logs.length < 1 << 20) logs += d; });
  const exited = new Promise((res) => child.on('exit', res));
  const got = await new Promise((res, rej) => {
    const seen = {};
    let buf = '';
    const timer = setTimeout(() => rej(new Error('gateway not ready\n' + logs)), SLOW);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const m = /^(url|user-token|admin-token): (\S+)$/.exec(buf.slice(0, i));
        buf = buf.slice(i + 1);
        if (m) seen[m[1]] = m[2];
        if (seen.url && seen['user-token'] && seen['admin-token']) {
          clearTimeout(timer);
          res(seen);
        }
      }
    });
    exited.then((code) => { clearTimeout(timer); rej(new Error(`gateway exited (${code}) before it was ready\n${logs}`)); });
  });
  child.stdout.resume();
  return {
    userToken: got['user-token'], adminToken: got['admin-token'], logs: () => logs,
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

test('after a server restart an interrupted task offers no Cancel, in the list or the detail', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'flowgate-ui-restart-'));
  const port = await freePort();
  let srv = await serveAt(dataDir, port);
  const ctx = await browser.newContext({ viewport: VIEWPORTS.desktop });
  const p = await ctx.newPage();
  p.setDefaultTimeout(SLOW);
  const errors = [];
  p.on('pageerror', (e) => errors.push(e.message));
  try {
    await p.goto(`http://127.0.0.1:${port}/ui/`);
    await p.fill('#token', srv.userToken);
    await p.click('#connect-btn');
    await p.waitForSelector('#conn-state[data-state="open"]');
    await p.fill('#objective', 'browser restart me sim:hang');
    await p.click('#start-btn');
    await p.waitForSelector('#detail-status[data-status="running"]');
    await p.waitForSelector('#events .ev[data-type="system"]');
    assert.equal(await p.isVisible('#detail-cancel'), true);

    await srv.kill(); // no drain: the task is left "running" in the store
    await p.waitForSelector('#conn-state[data-state="reconnecting"]');
    srv = await serveAt(dataDir, port);
    await p.waitForSelector('#conn-state[data-state="open"]');
    await p.click('#tasks-refresh');
    await p.waitForSelector('#task-list li .badge[data-status="interrupted"]');
    // The detail follows the list: a final status, and nothing left to cancel.
    await p.waitForSelector('#detail-status[data-status="interrupted"]');
    assert.equal(await p.isHidden('#detail-cancel'), true, 'the detail of an interrupted task offers Cancel');
    assert.equal(await p.$$eval('#task-list li button.danger', (l) => l.length), 0, 'the list offers Cancel');
    assert.match(await p.textContent('#detail-result'), /^Interrupted/);
    assert.notEqual(await p.getAttribute('#detail-result', 'data-kind'), 'error');
    await p.screenshot({ path: join(ARTIFACTS, 'swarms-interrupted.png'), fullPage: true });

    // After a reload the task comes from the list alone, then its events are replayed.
    await p.reload();
    await p.waitForSelector('#conn-state[data-state="open"]');
    await p.waitForSelector('#task-list li .badge[data-status="interrupted"]');
    await p.click('#task-list li .task-open');
    await p.waitForSelector('#detail-status[data-status="interrupted"]');
    await p.waitForSelector('#events .ev[data-type="task_complete"]');
    assert.equal(await p.isHidden('#detail-cancel'), true, 'the detail of an interrupted task offers Cancel after a reload');
    const violations = await axeViolations(p);
    assert.deepEqual(violations, [], formatViolations(violations));

    // The same, when the page learns the end from the task list only: the final event of the
    // subscription never reaches it (dropped between the gateway and the page).
    await p.routeWebSocket(/\/ws(\?|$)/, (ws) => {
      const server = ws.connectToServer();
      ws.onMessage((m) => server.send(m));
      server.onMessage((m) => { if (!/"type"\s*:\s*"task_complete"/.test(String(m))) ws.send(m); });
    });
    await p.reload();
    await p.waitForSelector('#conn-state[data-state="open"]');
    await p.fill('#objective', 'browser restart me again sim:hang');
    await p.click('#start-btn');
    await p.waitForSelector('#detail-status[data-status="running"]');
    await p.waitForSelector('#events .ev[data-type="system"]');
    assert.equal(await p.isVisible('#detail-cancel'), true);
    await srv.kill();
    await p.waitForSelector('#conn-state[data-state="reconnecting"]');
    srv = await serveAt(dataDir, port);
    await p.waitForSelector('#conn-state[data-state="open"]');
    await p.click('#tasks-refresh');
    await p.waitForFunction(() => document.querySelectorAll('#task-list li .badge[data-status="interrupted"]').length === 2);
    assert.equal(await p.$$eval('#events .ev[data-type="task_complete"]', (l) => l.length), 0, 'the final event was not dropped');
    assert.equal(await p.getAttribute('#detail-status', 'data-status'), 'interrupted', 'the detail does not follow the list');
    assert.equal(await p.isHidden('#detail-cancel'), true, 'the list says interrupted while the detail offers Cancel');
    assert.match(await p.textContent('#detail-result'), /^Interrupted/);
    assert.deepEqual(errors, []);
  } finally {
    await ctx.close();
    await srv.kill();
    rmSync(dataDir, { recursive: true, force: true });
  }
});

// The SDK in a real browser on a page of another origin (not in server.allowed_origins): the
// handshake is refused and Chromium reports only 1006, yet connect() rejects with
// forbidden_origin, because the SDK can read /v1/whoami's answer (CORS). A bad token on the
// same page rejects unauthorized.
test('the SDK in Chromium says why the gateway refused it', async () => {
  const http = await import('node:http');
  const page2html = '<!doctype html><meta charset="utf-8"><title>foreign page</title>';
  const srv = http.createServer((req, res) => { res.setHeader('Content-Type', 'text/html'); res.end(page2html); });
  await new Promise((res) => srv.listen(0, '127.0.0.1', res));
  const ctx = await browser.newContext();
  try {
    const p = await ctx.newPage();
    // localhost, not 127.0.0.1: another origin than the gateway's.
    await p.goto(`http://localhost:${srv.address().port}/`);
    const result = (token) => p.evaluate(async ({ sdk, url, token }) => {
      const { FlowgateClient } = await import(sdk);
      const c = new FlowgateClient({ url, token, reconnect: false });
      try { await c.connect(); c.disconnect(); return { ok: true }; } catch (e) { return { code: e.code, reason: e.reason || '' }; }
    }, { sdk: gw.http + '/sdk/v1/flowgate.js', url: gw.url, token });
    assert.deepEqual(await result(gw.userToken), { code: 'forbidden_origin', reason: 'origin_not_allowed' });
    assert.equal((await result('not-a-jwt')).code, 'forbidden_origin', 'the origin is refused before the token is looked at');
  } finally {
    await ctx.close();
    await new Promise((res) => srv.close(res));
  }
});
