'use strict';
// Generated from flowgate.mjs (the one source) by
// `go test ./internal/web -run TestNPMPackage -update`. Do not edit.
// flowgate.js — the flowgate.v1 WebSocket client for browsers and Node ≥ 20.
//
// A dependency-free ES module with the seed client's API (connect, executeSwarm, on/off,
// disconnect) plus requestId correlation, status/cancel/tasks/ping, reconnect with exponential
// backoff and full jitter that resumes running tasks by subscribe{afterSeq} (every event is
// delivered exactly once), and token refresh by reauth before the token expires.
//
// Tokens travel in the Sec-WebSocket-Protocol header ("subprotocol", the default) or as a
// single-use ticket ("ticket"); the query string ("query") only when chosen explicitly. This
// module never logs anything, least of all a token.
//
// Node 20 has no global WebSocket unless started with --experimental-websocket: pass an
// implementation in the options ({WebSocket}) or run Node ≥ 22.
//
//   import { FlowgateClient } from 'https://gateway.example/sdk/flowgate.js';
//   const client = new FlowgateClient({ url: 'wss://gateway.example/ws', getToken: fetchMyJwt });
//   client.on('state', (s) => render(s.state));          // open, reconnecting, closed, …
//   await client.connect();
//   const done = await client.executeSwarm('analyse the codebase', { agents: 5 }, (event) => {
//     if (event.type === 'task_progress') bar.value = event.progress;
//   });                                                   // rejects unless status is success
//   client.disconnect();

/** @typedef {{agents?: number, strategy?: string, mode?: string, timeout?: number}} SwarmOptions */
/** @typedef {{type: string, taskId?: string, seq?: number, requestId?: string, [key: string]: any}} ServerMessage */
/**
 * @typedef {object} TaskComplete
 * @property {'task_complete'} type
 * @property {string} taskId
 * @property {number} seq
 * @property {number} exitCode
 * @property {'success'|'failed'|'timeout'|'cancelled'|'interrupted'} status
 * @property {number} durationMs
 * @property {string} [result]
 * @property {string} [error]
 */
/**
 * @typedef {object} ReconnectOptions
 * @property {boolean} [enabled=true]        reconnect after an unexpected close
 * @property {number} [initialDelayMs=500]   backoff base
 * @property {number} [maxDelayMs=15000]     backoff cap
 * @property {number} [factor=2]             backoff growth per attempt
 * @property {number} [maxAttempts=Infinity] attempts before giving up (state "closed")
 */
/**
 * @typedef {object} ClientOptions
 * @property {string} url                    ws:// or wss:// URL of the gateway (…/ws)
 * @property {string} [token]                a JWT
 * @property {() => (string|Promise<string>)} [getToken] returns a fresh JWT; used for every
 *   (re)connect and for reauth before expiry
 * @property {'subprotocol'|'ticket'|'query'} [tokenTransport='subprotocol']
 * @property {string} [ticketUrl]            default: the gateway's /v1/ws-ticket
 * @property {any} [WebSocket]               a WebSocket implementation (default globalThis.WebSocket)
 * @property {typeof fetch} [fetch]          used for tickets (default globalThis.fetch)
 * @property {ReconnectOptions|false} [reconnect]
 * @property {number} [requestTimeoutMs=15000]  bound on a request's reply (status, cancel, …)
 * @property {number} [connectTimeoutMs=15000]  bound on one connection attempt
 * @property {number} [reauthLeadMs]         refresh this long before expiry (default: 20% of the
 *   remaining lifetime, between 2 s and 60 s)
 * @property {number} [maxPendingRequests=1000]
 */

const PROTOCOL = 'flowgate.v1';
const BEARER_PREFIX = 'flowgate.bearer.';
const VERSION = '1.0.0';

const TERMINAL = new Set(['success', 'failed', 'timeout', 'cancelled', 'interrupted']);
// Close reasons after which reconnecting with the same credentials cannot help.
const FATAL_CLOSE_REASONS = new Set(['token_revoked', 'tenant_suspended', 'reauth_mismatch']);
const MAX_TIMER_MS = 2 ** 31 - 1;
const MAX_TRACKED_TASKS = 1024;
const WS_OPEN = 1;

/** An error from the gateway (an error frame) or from this client. */
class FlowgateError extends Error {
  /**
   * @param {string} message
   * @param {{code?: string, reason?: string, fields?: Record<string,string>, retryAfterMs?: number, taskId?: string, task?: TaskComplete, frame?: ServerMessage, closeCode?: number}} [info]
   */
  constructor(message, info = {}) {
    super(message);
    this.name = 'FlowgateError';
    /** error code: a gateway code (validation_failed, rate_limited, …), a refused connection's
     * (unauthorized, token_expired, forbidden_origin, tenant_suspended, connect_failed) or a
     * client one (not_connected, connection_lost, timeout, task_failed, too_many_requests, closed) */
    this.code = info.code || 'error';
    /** why the gateway refused the credential (token_expired, token_revoked, origin_not_allowed, …) */
    if (info.reason) this.reason = info.reason;
    if (info.fields) this.fields = info.fields;
    if (info.retryAfterMs !== undefined) this.retryAfterMs = info.retryAfterMs;
    if (info.taskId) this.taskId = info.taskId;
    if (info.task) this.task = info.task;
    if (info.frame) this.frame = info.frame;
    if (info.closeCode !== undefined) this.closeCode = info.closeCode;
  }
}

/**
 * The SDK's code for a credential the gateway refused, from its problem answer: what a user
 * can act on (sign in again, fix the page's origin, ask an admin) rather than a bare 1006.
 * @param {{code?: string, reason?: string}|null} problem
 */
function refusalCode(problem) {
  if (!problem || typeof problem !== 'object') return null;
  if (problem.reason === 'origin_not_allowed') return 'forbidden_origin';
  if (problem.reason === 'token_expired') return 'token_expired';
  if (typeof problem.code === 'string' && problem.code) return problem.code;
  return null;
}

// Refusals another attempt with the same credentials cannot fix: reconnecting stops.
const FATAL_REFUSALS = new Set(['unauthorized', 'forbidden_origin', 'forbidden', 'tenant_suspended']);

function errorFromFrame(m) {
  return new FlowgateError(String(m.error || m.code || 'request failed'), {
    code: m.code, fields: m.fields, retryAfterMs: m.retryAfterMs, taskId: m.taskId, frame: m,
  });
}

function randomId() {
  const c = globalThis.crypto;
  if (c && typeof c.getRandomValues === 'function') {
    const b = new Uint8Array(8);
    c.getRandomValues(b);
    return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  }
  return Math.random().toString(16).slice(2, 18);
}

/** The gateway's HTTP origin for a ws:// or wss:// URL. */
function httpBase(wsUrl) {
  const u = new URL(wsUrl);
  u.protocol = u.protocol === 'wss:' ? 'https:' : 'http:';
  return u.origin;
}

/**
 * Fetches a single-use WebSocket ticket (POST /v1/ws-ticket with the bearer token).
 * @param {string} token
 * @param {{url?: string, ticketUrl?: string, fetch?: typeof fetch}} [opts]
 * @returns {Promise<{ticket: string, expiresAt: string}>}
 */
async function fetchTicket(token, { url, ticketUrl, fetch: f } = {}) {
  const doFetch = f || globalThis.fetch;
  if (typeof doFetch !== 'function') throw new FlowgateError('no fetch implementation', { code: 'unsupported' });
  const target = ticketUrl || httpBase(url) + '/v1/ws-ticket';
  const res = await doFetch(target, {
    method: 'POST',
    headers: { Authorization: 'Bearer ' + token, Accept: 'application/json' },
    credentials: 'omit',
    cache: 'no-store',
  });
  let body = null;
  try { body = await res.json(); } catch { body = null; }
  if (!res.ok || !body || typeof body.ticket !== 'string') {
    throw new FlowgateError('ticket refused: HTTP ' + res.status + (body && body.code ? ' ' + body.code : '') + (body && body.reason ? ' (' + body.reason + ')' : ''), {
      code: refusalCode(body) || 'ticket_refused', reason: body && body.reason, closeCode: 1006,
    });
  }
  return body;
}

class FlowgateClient {
  /** @param {ClientOptions|string} options an options object, or the URL (seed style) */
  constructor(options) {
    const o = typeof options === 'string' ? { url: options } : { ...(options || {}) };
    if (!o.url) throw new TypeError('FlowgateClient: url is required');
    const transport = o.tokenTransport || 'subprotocol';
    if (!['subprotocol', 'ticket', 'query'].includes(transport)) {
      throw new TypeError('FlowgateClient: tokenTransport must be subprotocol, ticket or query');
    }
    this.url = o.url;
    this._token = o.token;
    this._getToken = o.getToken;
    this._transport = transport;
    this._ticketUrl = o.ticketUrl;
    this._WS = o.WebSocket || globalThis.WebSocket;
    this._fetch = o.fetch;
    const r = o.reconnect === false ? { enabled: false } : (o.reconnect || {});
    this._reconnect = {
      enabled: r.enabled !== false,
      initialDelayMs: r.initialDelayMs ?? 500,
      maxDelayMs: r.maxDelayMs ?? 15000,
      factor: r.factor ?? 2,
      maxAttempts: r.maxAttempts ?? Infinity,
    };
    this._requestTimeoutMs = o.requestTimeoutMs ?? 15000;
    this._connectTimeoutMs = o.connectTimeoutMs ?? 15000;
    this._reauthLeadMs = o.reauthLeadMs;
    this._maxPending = o.maxPendingRequests ?? 1000;

    /** @type {Map<string, Set<Function>>} */
    this._handlers = new Map();
    /** requestId → {type, resolve, reject, timer, taskId?} */
    this._pending = new Map();
    /** taskId → {lastSeq, done, onProgress?, resolve?, reject?, subRequestId?} (insertion-ordered, bounded) */
    this._tasks = new Map();
    this._ws = null;
    /** @type {'idle'|'connecting'|'open'|'reconnecting'|'closed'} */
    this._state = 'idle';
    this._wanted = false;
    this._attempt = 0;
    this._reconnectTimer = null;
    this._reauthTimer = null;
    this._connecting = null;
    this._reqCounter = 0;
    this._gen = 0; // bumps with every socket so stale callbacks are ignored
    /** the last welcome (connection) frame */
    this.welcome = null;
    this.sessionId = null;
    this.permissions = [];
    this.expiresAt = null;
  }

  /** @returns {'idle'|'connecting'|'open'|'reconnecting'|'closed'} */
  get state() { return this._state; }
  get connected() { return this._state === 'open'; }

  /** Whether the connected token holds permission p (platform:admin implies every one). */
  can(p) {
    return this.permissions.includes(p) || this.permissions.includes('platform:admin');
  }

  // ---- events -------------------------------------------------------------------------

  /**
   * Adds a handler for server frames of a type ("agent_spawn", "task_complete", "error", …),
   * for every frame ("*"), or for this client's own events: "state" ({state, attempt?,
   * delayMs?, code?, reason?}) and "reauth_failed" ({error}). Several handlers per type.
   */
  on(type, handler) {
    if (typeof handler !== 'function') throw new TypeError('handler must be a function');
    let set = this._handlers.get(type);
    if (!set) this._handlers.set(type, (set = new Set()));
    set.add(handler);
    return this;
  }

  /** Removes one handler, or every handler of the type when none is given. */
  off(type, handler) {
    if (!handler) { this._handlers.delete(type); return this; }
    const set = this._handlers.get(type);
    if (set) {
      set.delete(handler);
      if (set.size === 0) this._handlers.delete(type);
    }
    return this;
  }

  _emit(type, msg) {
    const call = (set) => {
      if (!set) return;
      for (const h of [...set]) {
        try { h(msg); } catch (e) { this._reportHandlerError(e); }
      }
    };
    call(this._handlers.get(type));
    if (type !== 'state' && type !== 'reauth_failed') call(this._handlers.get('*'));
  }

  _reportHandlerError(e) {
    // A throwing handler must not break the client's own bookkeeping; surface it async.
    setTimeout(() => { throw e; }, 0);
  }

  /** @param {'idle'|'connecting'|'open'|'reconnecting'|'closed'} state */
  _setState(state, extra = {}) {
    this._state = state;
    this._emit('state', { state, ...extra });
  }

  // ---- connection ---------------------------------------------------------------------

  /**
   * Opens the connection and resolves with the welcome frame. Reconnects automatically after
   * an unexpected close until disconnect() is called.
   * @returns {Promise<ServerMessage>}
   */
  connect() {
    if (this._state === 'open') return Promise.resolve(this.welcome);
    if (this._connecting) return this._connecting;
    this._wanted = true;
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    this._setState('connecting');
    const p = this._open().finally(() => { if (this._connecting === p) this._connecting = null; });
    this._connecting = p;
    p.catch(() => {
      if (this._state === 'connecting') {
        this._wanted = false;
        this._setState('closed', {});
      }
    });
    return p;
  }

  async _credentials() {
    let token = this._token;
    if (this._getToken) token = await this._getToken();
    if (typeof token !== 'string' || token === '') throw new FlowgateError('no token', { code: 'unauthorized' });
    return token;
  }

  async _open() {
    const WS = this._WS;
    if (typeof WS !== 'function') {
      throw new FlowgateError('no WebSocket implementation: pass {WebSocket} or run Node with --experimental-websocket', { code: 'unsupported' });
    }
    const token = await this._credentials();
    let url = this.url;
    const protocols = [PROTOCOL];
    if (this._transport === 'subprotocol') {
      protocols.push(BEARER_PREFIX + token);
    } else {
      let value = token;
      if (this._transport === 'ticket') {
        value = (await fetchTicket(token, { url: this.url, ticketUrl: this._ticketUrl, fetch: this._fetch })).ticket;
      }
      const u = new URL(url);
      u.searchParams.set(this._transport === 'ticket' ? 'ticket' : 'token', value);
      url = u.toString();
    }
    if (!this._wanted) throw new FlowgateError('disconnected', { code: 'closed' });
    const gen = ++this._gen;
    return new Promise((resolve, reject) => {
      let settled = false;
      let ws;
      try {
        ws = new WS(url, protocols);
      } catch (e) {
        reject(new FlowgateError('cannot open WebSocket: ' + (e && e.message ? e.message : 'error'), { code: 'connect_failed' }));
        return;
      }
      this._ws = ws;
      try { ws.binaryType = 'arraybuffer'; } catch { /* not every implementation has it */ }
      const timer = setTimeout(() => {
        if (settled) return;
        settled = true;
        this._gen++;
        try { ws.close(); } catch { /* ignore */ }
        reject(new FlowgateError('connection timed out', { code: 'timeout' }));
      }, this._connectTimeoutMs);
      ws.onmessage = (ev) => {
        if (gen !== this._gen) return;
        let msg;
        try {
          const data = typeof ev.data === 'string' ? ev.data : new TextDecoder().decode(ev.data);
          msg = JSON.parse(data);
        } catch {
          return; // the gateway only sends JSON text frames
        }
        if (!msg || typeof msg !== 'object' || typeof msg.type !== 'string') return;
        if (!settled) {
          if (msg.type !== 'connection') return;
          settled = true;
          clearTimeout(timer);
          this._welcome(msg);
          resolve(msg);
          return;
        }
        this._dispatch(msg);
      };
      const fail = (code, reason) => {
        settled = true;
        clearTimeout(timer);
        this._ws = null;
        this._gen++;
        const refused = new FlowgateError('connection refused or closed before the welcome frame (code ' + code + (reason ? ', ' + reason : '') + ')', { code: 'connect_failed', closeCode: code });
        // A refused handshake tells a browser nothing (1006): ask the gateway why.
        this._diagnose(token).then((d) => reject(d ? new FlowgateError(d.message, { code: d.code, reason: d.reason, closeCode: code }) : refused), () => reject(refused));
      };
      ws.onerror = () => {
        if (gen !== this._gen) return;
        // Browsers follow an error with close; some implementations (Node 20's, after a
        // refused handshake) never do, so a failed handshake is decided here.
        if (!settled) {
          fail(1006, '');
          try { ws.close(); } catch { /* ignore */ }
          return;
        }
        setTimeout(() => {
          if (gen === this._gen && this._ws === ws && ws.readyState !== WS_OPEN) {
            this._gen++;
            this._closed(1006, '');
          }
        }, 1000);
      };
      ws.onclose = (ev) => {
        if (gen !== this._gen) return;
        const code = ev && typeof ev.code === 'number' ? ev.code : 1006;
        const reason = (ev && ev.reason) || '';
        if (!settled) {
          fail(code, reason);
          return;
        }
        this._gen++;
        this._closed(code, reason);
      };
    });
  }

  /**
   * Asks GET /v1/whoami with the token after a handshake failed before the welcome frame, and
   * returns why the gateway refuses it, or null when it accepts it (the refusal was a limit or
   * a drain) or cannot be asked (it is down).
   * @param {string} token
   * @returns {Promise<{code: string, reason?: string, message: string}|null>}
   */
  async _diagnose(token) {
    const f = this._fetch || globalThis.fetch;
    if (typeof f !== 'function') return null;
    let res;
    try {
      const signal = typeof AbortSignal !== 'undefined' && AbortSignal.timeout ? AbortSignal.timeout(this._connectTimeoutMs) : undefined;
      res = await f(httpBase(this.url) + '/v1/whoami', {
        headers: { Authorization: 'Bearer ' + token, Accept: 'application/json' }, credentials: 'omit', cache: 'no-store', signal,
      });
    } catch {
      return null;
    }
    if (res.ok) return null;
    let body = null;
    try { body = await res.json(); } catch { body = null; }
    const code = refusalCode(body);
    if (!code) return null;
    const why = body.reason ? body.reason.replace(/_/g, ' ') : code.replace(/_/g, ' ');
    return { code, reason: body.reason, message: 'the gateway refused the connection: ' + why };
  }

  _welcome(msg) {
    const resumed = this._attempt > 0 || this.welcome !== null;
    this.welcome = msg;
    this.sessionId = msg.sessionId || null;
    this.permissions = Array.isArray(msg.permissions) ? msg.permissions.slice() : [];
    this.expiresAt = msg.expiresAt || null;
    this._attempt = 0;
    this._setState('open', { resumed });
    this._emit('connection', msg);
    this._scheduleReauth();
    if (resumed) this._resubscribe();
  }

  _closed(code, reason) {
    this._ws = null;
    clearTimeout(this._reauthTimer);
    this._reauthTimer = null;
    // Requests in flight have lost their reply; running tasks are resumed after reconnect.
    for (const [id, p] of this._pending) {
      clearTimeout(p.timer);
      this._pending.delete(id);
      p.reject(new FlowgateError('connection lost before the reply', { code: 'connection_lost', closeCode: code }));
    }
    const fatal = code === 1008 && (FATAL_CLOSE_REASONS.has(reason) || (reason === 'token_expired' && !this._getToken));
    if (!this._wanted || !this._reconnect.enabled || fatal) {
      this._wanted = false;
      this._failTasks(new FlowgateError('connection closed (code ' + code + (reason ? ', ' + reason : '') + ')', { code: 'closed', closeCode: code }));
      this._setState('closed', { code, reason });
      return;
    }
    this._scheduleReconnect(code, reason);
  }

  _scheduleReconnect(code, reason) {
    const r = this._reconnect;
    if (this._attempt >= r.maxAttempts) {
      this._wanted = false;
      this._failTasks(new FlowgateError('gave up reconnecting', { code: 'closed', closeCode: code }));
      this._setState('closed', { code, reason });
      return;
    }
    const cap = Math.min(r.maxDelayMs, r.initialDelayMs * r.factor ** this._attempt);
    const delayMs = Math.floor(Math.random() * cap); // full jitter
    this._attempt++;
    this._setState('reconnecting', { attempt: this._attempt, delayMs, code, reason });
    this._reconnectTimer = setTimeout(() => {
      this._reconnectTimer = null;
      if (!this._wanted) return;
      const p = this._open();
      this._connecting = p;
      p.then(
        () => { if (this._connecting === p) this._connecting = null; },
        (err) => {
          if (this._connecting === p) this._connecting = null;
          if (!this._wanted) return;
          const code = err && err.closeCode !== undefined ? err.closeCode : 1006;
          const why = (err && err.reason) || (err && err.code) || '';
          if (err && (FATAL_REFUSALS.has(err.code) || (err.code === 'token_expired' && !this._getToken))) {
            // The same credentials would be refused again: stop, and say why.
            this._wanted = false;
            this._failTasks(err);
            this._setState('closed', { code, reason: why, error: err });
            return;
          }
          this._scheduleReconnect(code, why);
        },
      );
    }, delayMs);
  }

  /** Closes the connection for good: no reconnect; running tasks' promises reject. */
  disconnect() {
    this._wanted = false;
    clearTimeout(this._reconnectTimer);
    clearTimeout(this._reauthTimer);
    this._reconnectTimer = null;
    this._reauthTimer = null;
    const ws = this._ws;
    this._ws = null;
    this._gen++;
    for (const [id, p] of this._pending) {
      clearTimeout(p.timer);
      this._pending.delete(id);
      p.reject(new FlowgateError('disconnected', { code: 'closed' }));
    }
    this._failTasks(new FlowgateError('disconnected', { code: 'closed' }));
    if (ws) {
      try { ws.close(1000, 'client disconnect'); } catch { /* ignore */ }
    }
    if (this._state !== 'closed' && this._state !== 'idle') this._setState('closed', { code: 1000, reason: 'client disconnect' });
  }

  // ---- reauth -------------------------------------------------------------------------

  _scheduleReauth() {
    clearTimeout(this._reauthTimer);
    this._reauthTimer = null;
    if (!this._getToken || !this.expiresAt) return;
    const exp = Date.parse(this.expiresAt);
    if (!Number.isFinite(exp)) return;
    const remaining = exp - Date.now();
    const lead = this._reauthLeadMs ?? Math.min(60000, Math.max(2000, remaining * 0.2));
    const delay = Math.max(0, Math.min(MAX_TIMER_MS, remaining - lead));
    this._reauthTimer = setTimeout(() => this._reauth(), delay);
  }

  async _reauth() {
    this._reauthTimer = null;
    if (this._state !== 'open') return;
    try {
      const before = Date.parse(this.expiresAt || '');
      const token = await this._credentials();
      const reply = await this._request({ type: 'reauth', token }, 'reauthenticated');
      this.expiresAt = reply.expiresAt || this.expiresAt;
      if (!(Date.parse(this.expiresAt || '') > before)) {
        // getToken handed back the same (or an older) token: asking again would spin.
        this._emit('reauth_failed', { error: new FlowgateError('getToken returned a token that does not expire later', { code: 'reauth_not_renewed' }) });
        return;
      }
      this._scheduleReauth();
    } catch (error) {
      this._emit('reauth_failed', { error });
      // Try again shortly while the old token still holds.
      const exp = Date.parse(this.expiresAt || '');
      if (this._state === 'open' && Number.isFinite(exp) && exp - Date.now() > 1000) {
        this._reauthTimer = setTimeout(() => this._reauth(), Math.min(5000, (exp - Date.now()) / 2));
      }
    }
  }

  /** Replaces the token now (reauth on the open connection; used for later reconnects too). */
  async reauth(token) {
    if (token !== undefined) this._token = token;
    const t = await this._credentials();
    const reply = await this._request({ type: 'reauth', token: t }, 'reauthenticated');
    this.expiresAt = reply.expiresAt || this.expiresAt;
    this._scheduleReauth();
    return reply;
  }

  // ---- requests -----------------------------------------------------------------------

  _nextRequestId() {
    this._reqCounter = (this._reqCounter + 1) % 1e9;
    return 'fg-' + this._reqCounter + '-' + randomId();
  }

  _sendRaw(obj) {
    const ws = this._ws;
    if (!ws || this._state !== 'open' || ws.readyState !== WS_OPEN) {
      throw new FlowgateError('not connected', { code: 'not_connected' });
    }
    ws.send(JSON.stringify(obj));
  }

  /**
   * Sends msg with a fresh requestId; resolves with the reply of type replyType. onReply runs
   * synchronously when the reply is dispatched, before any later frame.
   * @param {Record<string, any>} msg
   * @param {string} replyType
   * @param {{timeoutMs?: number, onReply?: (m: ServerMessage) => void}} [opts]
   * @returns {Promise<ServerMessage>}
   */
  _request(msg, replyType, { timeoutMs = this._requestTimeoutMs, onReply } = {}) {
    return new Promise((resolve, reject) => {
      if (this._pending.size >= this._maxPending) {
        reject(new FlowgateError('too many requests in flight', { code: 'too_many_requests' }));
        return;
      }
      const requestId = this._nextRequestId();
      const entry = { replyType, resolve, reject, timer: null, onReply };
      if (timeoutMs > 0 && Number.isFinite(timeoutMs)) {
        entry.timer = setTimeout(() => {
          if (this._pending.get(requestId) !== entry) return;
          this._pending.delete(requestId);
          reject(new FlowgateError('no reply to ' + msg.type + ' within ' + timeoutMs + ' ms', { code: 'timeout' }));
        }, timeoutMs);
      }
      this._pending.set(requestId, entry);
      try {
        this._sendRaw({ ...msg, requestId });
      } catch (e) {
        clearTimeout(entry.timer);
        this._pending.delete(requestId);
        reject(e);
      }
    });
  }

  /** Asks for a task's status (status "not_found" for a task this token may not see). */
  status(taskId) {
    return this._request({ type: 'status', taskId }, 'status');
  }

  /** Cancels a task; resolves with task_cancelled (task_complete{status:"cancelled"} follows). */
  cancel(taskId) {
    return this._request({ type: 'cancel', taskId }, 'task_cancelled');
  }

  /** The caller's recent tasks, newest first. */
  async tasks() {
    const reply = await this._request({ type: 'tasks' }, 'tasks');
    return Array.isArray(reply.tasks) ? reply.tasks : [];
  }

  /** Round trip to the gateway; resolves with pong plus rttMs. */
  async ping() {
    const t0 = Date.now();
    const reply = await this._request({ type: 'ping' }, 'pong');
    return { ...reply, rttMs: Date.now() - t0 };
  }

  // ---- tasks --------------------------------------------------------------------------

  _track(taskId) {
    let t = this._tasks.get(taskId);
    if (!t) {
      t = { lastSeq: 0, done: false };
      this._tasks.set(taskId, t);
      if (this._tasks.size > MAX_TRACKED_TASKS) {
        // Forget the oldest finished task; live ones are never dropped.
        for (const [id, old] of this._tasks) {
          if (old.done && id !== taskId) { this._tasks.delete(id); break; }
        }
      }
    }
    return t;
  }

  /**
   * Starts a swarm and follows it to its end. onProgress receives every frame of the task
   * (task_created, engine events, task_output, task_log, task_cancelled, task_complete), each
   * exactly once, in seq order, across reconnects. Resolves with task_complete when its status
   * is "success"; rejects with a FlowgateError otherwise (err.task holds task_complete).
   * @param {string} objective
   * @param {SwarmOptions} [options]
   * @param {(event: ServerMessage) => void} [onProgress]
   * @returns {Promise<TaskComplete>}
   */
  executeSwarm(objective, options = {}, onProgress) {
    return new Promise((resolve, reject) => {
      const msg = { type: 'swarm', objective };
      if (options && Object.keys(options).length > 0) msg.options = options;
      // The task's handlers are installed synchronously when task_created is dispatched: its
      // first events may arrive in the same read, before any promise callback could run.
      const onReply = (created) => {
        const t = this._track(created.taskId);
        t.onProgress = onProgress;
        t.resolve = resolve;
        t.reject = reject;
        this._callProgress(t, created);
      };
      this._request(msg, 'task_created', { onReply }).catch(reject);
    });
  }

  /**
   * Follows an existing task (e.g. one listed by tasks()). With afterSeq, the gateway replays
   * every event after it (afterSeq 0: the whole task, again if this client saw it before);
   * without, it continues after the last event this client saw. Resolves with the task's
   * task_complete whatever the status.
   * @param {string} taskId
   * @param {{afterSeq?: number, onEvent?: (event: ServerMessage) => void}} [opts]
   * @returns {Promise<TaskComplete>}
   */
  subscribe(taskId, { afterSeq, onEvent } = {}) {
    return new Promise((resolve, reject) => {
      const t = this._track(taskId);
      if (afterSeq === undefined && t.done && t.complete) { resolve(t.complete); return; }
      if (afterSeq !== undefined) t.lastSeq = Math.max(0, Math.floor(afterSeq));
      t.done = false;
      t.complete = undefined;
      t.onProgress = onEvent;
      t.resolve = resolve;
      t.reject = reject;
      t.anyStatus = true;
      try {
        this._sendSubscribe(taskId, t);
      } catch (e) {
        t.resolve = t.reject = t.onProgress = undefined;
        reject(e);
      }
    });
  }

  _sendSubscribe(taskId, t) {
    t.subRequestId = this._nextRequestId();
    this._sendRaw({ type: 'subscribe', taskId, afterSeq: t.lastSeq, requestId: t.subRequestId });
  }

  _resubscribe() {
    for (const [taskId, t] of this._tasks) {
      if (t.done) continue;
      try { this._sendSubscribe(taskId, t); } catch { return; /* closed again; the next reconnect retries */ }
    }
  }

  _failTasks(err) {
    for (const [, t] of this._tasks) {
      if (t.done || !t.reject) continue;
      const reject = t.reject;
      t.resolve = t.reject = t.onProgress = undefined;
      t.done = true;
      reject(err);
    }
  }

  _callProgress(t, msg) {
    if (!t.onProgress) return;
    try { t.onProgress(msg); } catch (e) { this._reportHandlerError(e); }
  }

  _finish(t, complete) {
    const { resolve, reject, anyStatus } = t;
    t.resolve = t.reject = t.onProgress = undefined;
    if (!resolve) return;
    if (complete.status === 'success' || anyStatus) {
      resolve(complete);
    } else {
      reject(new FlowgateError('Task ' + complete.status + ': ' + (complete.error || 'exit code ' + complete.exitCode), {
        code: 'task_' + complete.status, taskId: complete.taskId, task: complete,
      }));
    }
  }

  // ---- dispatch -----------------------------------------------------------------------

  _dispatch(msg) {
    // Direct replies.
    if (msg.requestId && this._pending.has(msg.requestId)) {
      const p = this._pending.get(msg.requestId);
      if (msg.type === 'error') {
        clearTimeout(p.timer);
        this._pending.delete(msg.requestId);
        p.reject(errorFromFrame(msg));
      } else if (msg.type === p.replyType) {
        clearTimeout(p.timer);
        this._pending.delete(msg.requestId);
        if (p.onReply) {
          try { p.onReply(msg); } catch (e) { this._reportHandlerError(e); }
        }
        p.resolve(msg);
      }
    }
    // A refused resubscribe ends the task it was for.
    if (msg.type === 'error' && msg.requestId) {
      for (const [, t] of this._tasks) {
        if (t.subRequestId === msg.requestId && !t.done) {
          t.done = true;
          const reject = t.reject;
          t.resolve = t.reject = t.onProgress = undefined;
          if (reject) reject(errorFromFrame(msg));
          break;
        }
      }
    }
    const taskId = typeof msg.taskId === 'string' ? msg.taskId : null;
    const hasSeq = typeof msg.seq === 'number';
    let t = null;
    if (taskId && hasSeq) {
      t = this._tasks.get(taskId) || this._track(taskId);
      if (msg.seq <= t.lastSeq) return; // a replayed duplicate: delivered once already
      t.lastSeq = msg.seq;
    }
    this._emit(msg.type, msg);
    if (!taskId) return;
    t = t || this._tasks.get(taskId);
    if (!t) return;
    if (hasSeq || msg.type === 'task_cancelled') this._callProgress(t, msg);
    if (msg.type === 'task_complete') {
      t.done = true;
      t.complete = msg;
      this._finish(t, msg);
    }
  }
}


module.exports = { PROTOCOL, BEARER_PREFIX, VERSION, FlowgateError, refusalCode, httpBase, fetchTicket, FlowgateClient };
module.exports.default = FlowgateClient;
