// The JS SDK (/sdk/flowgate.js) against a live `flowgate serve --dev`.
//
//   node --experimental-websocket --test internal/web/sdktest/sdk.test.mjs
//
// No npm packages: Node's own test runner, WebSocket (flag on Node 20) and fetch.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { FlowgateClient, FlowgateError } from '../npm/flowgate.mjs';
import { startGateway, startProxy, repoRoot } from './gateway.mjs';

if (typeof globalThis.WebSocket !== 'function') {
  throw new Error('no global WebSocket: run with node --experimental-websocket (Node 20) or Node >= 22');
}

/** A WebSocket that remembers every instance, so a test can reach the underlying socket. */
function recordingWebSocket() {
  const sockets = [];
  class RecordingWebSocket extends globalThis.WebSocket {
    constructor(...args) {
      super(...args);
      sockets.push(this);
    }
  }
  return { WebSocket: RecordingWebSocket, sockets };
}

/** Checks that events are exactly seq 1..N, each once, ending with task_complete. */
function assertExactlyOnce(events, taskId) {
  const seqs = events.filter((e) => typeof e.seq === 'number').map((e) => e.seq);
  assert.ok(seqs.length > 0, 'no events');
  for (let i = 0; i < seqs.length; i++) {
    assert.equal(seqs[i], i + 1, `seq ${i + 1} expected, got ${seqs[i]} (sequence ${seqs.join(',')})`);
  }
  for (const e of events) assert.equal(e.taskId, taskId, `event of another task: ${JSON.stringify(e).slice(0, 200)}`);
  const last = events[events.length - 1];
  assert.equal(last.type, 'task_complete');
  assert.equal(last.seq, seqs.length);
}

function waitFor(pred, timeoutMs = 30_000, what = 'condition') {
  return new Promise((res, rej) => {
    const t0 = Date.now();
    const tick = () => {
      let v;
      try { v = pred(); } catch (e) { rej(e); return; }
      if (v) { res(v); return; }
      if (Date.now() - t0 > timeoutMs) { rej(new Error('timed out waiting for ' + what)); return; }
      setTimeout(tick, 20);
    };
    tick();
  });
}

let gw;
before(async () => { gw = await startGateway(); });
after(async () => { if (gw) await gw.stop(); });

// Each test runs as its own user: the per-user swarm rate (10/min) would otherwise be shared.
let users = 0;
function userToken() {
  users++;
  return gw.token(['--tenant', 'demo', '--sub', 'sdk-user-' + users, '--perm', 'swarm:execute', '--ttl', '1h']);
}

function client(opts = {}) {
  return new FlowgateClient({ url: gw.url, token: userToken(), reconnect: { initialDelayMs: 50, maxDelayMs: 500 }, ...opts });
}

test('the gateway serves the SDK it is tested as', async () => {
  const res = await fetch(gw.http + '/sdk/flowgate.js');
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /^text\/javascript/);
  const body = await res.text();
  assert.equal(body, readFileSync(join(repoRoot, 'internal/web/npm/flowgate.mjs'), 'utf8'));
  const dts = await fetch(gw.http + '/sdk/flowgate.d.ts');
  assert.equal(dts.status, 200);
});

test('connect by subprotocol, ticket and (explicit) query; welcome carries permissions', async (t) => {
  for (const tokenTransport of ['subprotocol', 'ticket', 'query']) {
    await t.test(tokenTransport, async () => {
      const c = client({ tokenTransport });
      const states = [];
      c.on('state', (s) => states.push(s.state));
      const welcome = await c.connect();
      assert.equal(welcome.type, 'connection');
      assert.equal(welcome.protocol, 'flowgate.v1');
      assert.equal(welcome.tenant, 'demo');
      assert.equal(welcome.user, 'sdk-user-' + users);
      assert.deepEqual(c.permissions, ['swarm:execute']);
      assert.equal(c.can('swarm:execute'), true);
      assert.equal(c.can('audit:read'), false);
      const pong = await c.ping();
      assert.equal(pong.type, 'pong');
      assert.ok(pong.rttMs >= 0);
      c.disconnect();
      assert.deepEqual(states, ['connecting', 'open', 'closed']);
    });
  }
});

test('a bad token is refused before the welcome, and the SDK says so', async () => {
  const c = client({ token: 'not-a-jwt', reconnect: false });
  await assert.rejects(c.connect(), (e) => e instanceof FlowgateError && e.code === 'unauthorized' && e.closeCode !== undefined);
  assert.equal(c.state, 'closed');
  const t = client({ token: 'not-a-jwt', tokenTransport: 'ticket' });
  await assert.rejects(t.connect(), (e) => e instanceof FlowgateError && e.code === 'unauthorized');
  // With reconnect on, a refusal the same token cannot get past ends the client, with the reason.
  const r = client({ token: 'not-a-jwt' });
  const closed = new Promise((res) => r.on('state', (s) => { if (s.state === 'closed') res(s); }));
  await assert.rejects(r.connect(), (e) => e.code === 'unauthorized');
  assert.equal((await closed).state, 'closed');
});

test('a refused handshake is diagnosed: token_expired, forbidden_origin, or the gateway is down', async (t) => {
  await t.test('token_expired', async () => {
    // A gateway without clock leeway, so a token is refused the moment it expires.
    const strict = await startGateway({ env: { FLOWGATE_AUTH_LEEWAY: '0s' } });
    try {
      const token = strict.token(['--tenant', 'demo', '--sub', 'expiring', '--perm', 'swarm:execute', '--ttl', '1s']);
      const exp = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString()).exp * 1000;
      await new Promise((res) => setTimeout(res, Math.max(0, exp - Date.now()) + 1100));
      const c = new FlowgateClient({ url: strict.url, token, reconnect: false });
      await assert.rejects(c.connect(), (e) => e instanceof FlowgateError && e.code === 'token_expired' && e.reason === 'token_expired');
    } finally {
      await strict.stop();
    }
  });
  await t.test('forbidden_origin', async () => {
    // What a browser on a page the gateway does not allow sends: its Origin, on both the
    // handshake and the diagnosis request.
    const origin = 'https://not-allowed.example';
    class OriginWebSocket extends globalThis.WebSocket {
      constructor(url, protocols) { super(url, { protocols, headers: { Origin: origin } }); }
    }
    const originFetch = (url, init = {}) => fetch(url, { ...init, headers: { ...init.headers, Origin: origin } });
    const c = client({ WebSocket: OriginWebSocket, fetch: originFetch, reconnect: false });
    await assert.rejects(c.connect(), (e) => e instanceof FlowgateError && e.code === 'forbidden_origin');
  });
  await t.test('the gateway is down', async () => {
    const down = await startGateway();
    const url = down.url;
    const token = down.token(['--tenant', 'demo', '--sub', 'x', '--perm', 'swarm:execute', '--ttl', '1h']);
    await down.stop();
    const c = new FlowgateClient({ url, token, reconnect: false });
    await assert.rejects(c.connect(), (e) => e instanceof FlowgateError && e.code === 'connect_failed');
  });
});

test('two concurrent swarms each resolve to their own task', async () => {
  const c = client();
  await c.connect();
  try {
    const runs = [
      { objective: 'alpha objective sim:events=12 sim:pace=15ms', options: { agents: 2 } },
      { objective: 'beta objective sim:events=30 sim:pace=2ms', options: { agents: 4, strategy: 'parallel' } },
      { objective: 'gamma objective sim:events=8 sim:pace=5ms', options: { agents: 1 } },
    ].map((r) => {
      r.events = [];
      r.promise = c.executeSwarm(r.objective, r.options, (e) => r.events.push(e));
      return r;
    });
    const results = await Promise.all(runs.map((r) => r.promise));
    const ids = new Set();
    results.forEach((res, i) => {
      const r = runs[i];
      assert.equal(res.type, 'task_complete');
      assert.equal(res.status, 'success');
      const created = r.events[0];
      assert.equal(created.type, 'task_created');
      assert.equal(created.objective, r.objective);
      assert.equal(res.taskId, created.taskId);
      assert.match(res.result, new RegExp(r.objective.split(' ')[0]));
      assertExactlyOnce(r.events.slice(1), res.taskId);
      const spawns = r.events.filter((e) => e.type === 'agent_spawn');
      assert.equal(spawns.length, r.options.agents);
      ids.add(res.taskId);
    });
    assert.equal(ids.size, runs.length);
  } finally {
    c.disconnect();
  }
});

test('a failed swarm rejects with its task_complete; a concurrent one still succeeds', async () => {
  const c = client();
  await c.connect();
  try {
    const bad = c.executeSwarm('failing objective sim:fail sim:events=6 sim:pace=5ms', {});
    const good = c.executeSwarm('fine objective sim:events=6 sim:pace=5ms', {});
    await assert.rejects(bad, (e) => e instanceof FlowgateError && e.code === 'task_failed' && e.task.status === 'failed' && e.task.exitCode !== 0);
    const ok = await good;
    assert.equal(ok.status, 'success');
  } finally {
    c.disconnect();
  }
});

test('a request the gateway refuses rejects with its code and fields', async () => {
  const c = client();
  await c.connect();
  try {
    await assert.rejects(c.executeSwarm('too many agents', { agents: 99 }), (e) => {
      assert.equal(e.code, 'validation_failed');
      assert.ok(e.fields && e.fields['options.agents'], JSON.stringify(e.fields));
      return true;
    });
    await assert.rejects(c.executeSwarm('-rf /', {}), (e) => e.code === 'validation_failed');
    const st = await c.status('00000000-0000-0000-0000-000000000000');
    assert.equal(st.status, 'not_found');
  } finally {
    c.disconnect();
  }
});

test('on/off keep several handlers per type', async () => {
  const c = client();
  const a = [], b = [], all = [];
  const ha = (m) => a.push(m.type), hb = (m) => b.push(m.type);
  c.on('pong', ha).on('pong', hb).on('*', (m) => all.push(m.type));
  await c.connect();
  try {
    await c.ping();
    c.off('pong', ha);
    await c.ping();
    assert.deepEqual(a, ['pong']);
    assert.deepEqual(b, ['pong', 'pong']);
    assert.deepEqual(all, ['connection', 'pong', 'pong']);
  } finally {
    c.disconnect();
  }
});

test('cancel, status and tasks', async () => {
  const c = client();
  await c.connect();
  try {
    const events = [];
    const run = c.executeSwarm('hang until cancelled sim:hang', {}, (e) => events.push(e));
    const created = await waitFor(() => events.find((e) => e.type === 'task_created'), 30_000, 'task_created');
    const st = await c.status(created.taskId);
    assert.equal(st.taskId, created.taskId);
    assert.ok(['pending', 'running'].includes(st.status), st.status);
    const list = await c.tasks();
    assert.ok(list.some((x) => x.taskId === created.taskId));
    const ack = await c.cancel(created.taskId);
    assert.equal(ack.type, 'task_cancelled');
    await assert.rejects(run, (e) => e.code === 'task_cancelled' && e.task.status === 'cancelled');
    assert.ok(events.some((e) => e.type === 'task_cancelled'));
    assert.equal((await c.status(created.taskId)).status, 'cancelled');
    await assert.rejects(c.cancel('00000000-0000-0000-0000-000000000000'), (e) => e.code === 'not_found');
  } finally {
    c.disconnect();
  }
});

test('a connection cut mid-stream resumes: every event exactly once', async () => {
  const proxy = await startProxy(gw.url);
  const c = new FlowgateClient({ url: proxy.url, token: userToken(), reconnect: { initialDelayMs: 50, maxDelayMs: 400 } });
  const states = [];
  c.on('state', (s) => states.push(s));
  await c.connect();
  try {
    const a = { events: [] }, b = { events: [] };
    a.promise = c.executeSwarm('resume me sim:events=40 sim:pace=40ms', { agents: 3 }, (e) => a.events.push(e));
    b.promise = c.executeSwarm('resume me too sim:events=30 sim:pace=60ms', { agents: 2 }, (e) => b.events.push(e));
    // First cut once both streams are flowing, the second one while events keep coming.
    const resumed = () => states.filter((s) => s.state === 'open' && s.resumed).length;
    await waitFor(() => a.events.length >= 6 && b.events.length >= 4, 60_000, 'events before the first cut');
    assert.ok(proxy.cut() >= 1);
    await waitFor(() => resumed() >= 1 && a.events.length >= 20, 60_000, 'events after the first reconnect');
    assert.ok(proxy.cut() >= 1);
    const [ra, rb] = await Promise.all([a.promise, b.promise]);
    await waitFor(() => resumed() >= 2, 60_000, 'the second reconnect');
    assert.equal(ra.status, 'success');
    assert.equal(rb.status, 'success');
    assertExactlyOnce(a.events.slice(1), ra.taskId);
    assertExactlyOnce(b.events.slice(1), rb.taskId);
    const reconnects = states.filter((s) => s.state === 'reconnecting');
    assert.ok(reconnects.length >= 2, JSON.stringify(states));
  } finally {
    c.disconnect();
    await proxy.close();
  }
});

test('a socket closed under the client reconnects, and replayed duplicates are dropped', async () => {
  const rec = recordingWebSocket();
  const c = client({ WebSocket: rec.WebSocket });
  await c.connect();
  try {
    const events = [];
    const all = [];
    c.on('*', (m) => { if (m.type !== 'connection') all.push(m); });
    const run = c.executeSwarm('dedupe me sim:events=30 sim:pace=40ms', {}, (e) => events.push(e));
    await waitFor(() => events.length >= 8, 60_000, 'events before the replay');
    // Ask the gateway to replay everything on the same connection: all duplicates.
    rec.sockets[0].send(JSON.stringify({ type: 'subscribe', taskId: events[0].taskId, afterSeq: 0 }));
    await waitFor(() => events.length >= 14, 60_000, 'events after the replay');
    rec.sockets[0].close(4000, 'test closes the socket');
    const done = await run;
    assert.equal(done.status, 'success');
    await waitFor(() => rec.sockets.length >= 2 && c.state === 'open', 60_000, 'the reconnect');
    assertExactlyOnce(events.slice(1), done.taskId);
    const seqs = all.filter((m) => m.taskId === done.taskId && typeof m.seq === 'number').map((m) => m.seq);
    assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => i + 1), 'global handlers saw a duplicate');
  } finally {
    c.disconnect();
  }
});

test('reauth before expiry with getToken keeps the session', async () => {
  let calls = 0;
  const c = client({
    token: undefined,
    getToken: () => { calls++; return gw.token(['--tenant', 'demo', '--sub', 'demo-user', '--perm', 'swarm:execute', '--ttl', '30s']); },
    reauthLeadMs: 27_000,
  });
  const reauthed = [];
  c.on('reauthenticated', (m) => reauthed.push(m));
  const welcome = await c.connect();
  try {
    await waitFor(() => reauthed.length >= 1, 30_000, 'reauthenticated');
    assert.ok(calls >= 2, 'getToken not called for the reauth');
    assert.ok(Date.parse(reauthed[0].expiresAt) >= Date.parse(welcome.expiresAt));
    assert.equal(c.expiresAt, reauthed[reauthed.length - 1].expiresAt);
    assert.equal(c.state, 'open');
    assert.equal((await c.ping()).type, 'pong');
  } finally {
    c.disconnect();
  }
});

test('subscribe follows a task started elsewhere and replays a finished one', async () => {
  const token = userToken();
  const a = new FlowgateClient({ url: gw.url, token });
  const b = new FlowgateClient({ url: gw.url, token, tokenTransport: 'ticket' });
  await a.connect();
  await b.connect();
  try {
    const seen = [];
    const run = a.executeSwarm('watched from elsewhere sim:events=20 sim:pace=30ms', {}, (e) => seen.push(e));
    const created = await waitFor(() => seen.find((e) => e.type === 'task_created'), 30_000, 'task_created');
    const live = [];
    const followed = b.subscribe(created.taskId, { afterSeq: 0, onEvent: (e) => live.push(e) });
    const [done, viaB] = await Promise.all([run, followed]);
    assert.equal(viaB.seq, done.seq);
    assertExactlyOnce(live, done.taskId);
    // Finished: a replay from 0 delivers the whole task again; without afterSeq it resolves at once.
    const again = [];
    const replay = await b.subscribe(done.taskId, { afterSeq: 0, onEvent: (e) => again.push(e) });
    assert.equal(replay.status, 'success');
    assertExactlyOnce(again, done.taskId);
    assert.equal((await b.subscribe(done.taskId)).seq, done.seq);
    const gone = b.subscribe('00000000-0000-0000-0000-000000000000', { afterSeq: 0 });
    await assert.rejects(gone, (e) => e.code === 'not_found');
  } finally {
    a.disconnect();
    b.disconnect();
  }
});

test('requests while disconnected reject at once', async () => {
  const c = client();
  await assert.rejects(c.ping(), (e) => e.code === 'not_connected');
  await assert.rejects(c.executeSwarm('x'), (e) => e.code === 'not_connected');
  await c.connect();
  const run = c.executeSwarm('left running sim:events=5 sim:pace=100ms', {});
  await new Promise((r) => setTimeout(r, 200));
  c.disconnect();
  await assert.rejects(run, (e) => e.code === 'closed');
});
