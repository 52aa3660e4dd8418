// The dashboard (/ui/) in headless Chromium (Debian's chromium package) driven by
// playwright-core, against a live `flowgate serve --dev`:
//
//   cd internal/web/browsertest && npm ci && node --experimental-websocket --test
//
// Environment: CHROMIUM (default /usr/bin/chromium), FLOWGATE_BIN (prebuilt binary),
// FLOWGATE_ARTIFACTS (screenshots; default <repo>/test-artifacts/browser).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { chromium } from 'playwright-core';
import { startGateway, startProxy, repoRoot } from '../sdktest/gateway.mjs';

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

  await connectWith(gw.userToken);
  assert.equal(await page.textContent('#conn-state'), 'Connected');
  assert.ok(!page.url().includes(gw.userToken), 'the token is in the URL');
  assert.equal(await page.evaluate(() => sessionStorage.getItem('flowgate.token')), gw.userToken);
  assert.match(await page.textContent('#who'), /demo-user @ demo/);
  for (const tab of ['tenants', 'keys', 'audit']) {
    assert.equal(await page.isHidden('#tab-' + tab), true, tab + ' tab shown to a plain user');
  }

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
