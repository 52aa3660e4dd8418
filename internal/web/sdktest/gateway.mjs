// Starts a real `flowgate serve --dev` for the SDK and browser tests and reads the scripting
// contract's lines (url, dashboard, user-token, admin-token) from its stdout.
//
// FLOWGATE_BIN names a prebuilt binary; otherwise the binary is built once per process with
// `go build` from the module root.

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

let built = null;

/** The flowgate binary to run: $FLOWGATE_BIN or a fresh build in a temp dir. */
export function flowgateBinary() {
  if (process.env.FLOWGATE_BIN) return process.env.FLOWGATE_BIN;
  if (built && existsSync(built.bin)) return built.bin;
  const dir = mkdtempSync(join(tmpdir(), 'flowgate-js-'));
  const bin = join(dir, 'flowgate');
  execFileSync('go', ['build', '-o', bin, './cmd/flowgate'], { cwd: repoRoot, stdio: ['ignore', 'inherit', 'inherit'] });
  built = { dir, bin };
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  return bin;
}

/**
 * Runs `flowgate serve --dev` on loopback ports chosen by the kernel.
 * @returns {Promise<{url: string, http: string, dashboard: string, userToken: string, adminToken: string, dataDir: string, bin: string, logs: () => string, token: (args: string[]) => string, stop: () => Promise<void>}>}
 */
export async function startGateway({ env = {}, timeoutMs = 90_000 } = {}) {
  const bin = flowgateBinary();
  const dataDir = mkdtempSync(join(tmpdir(), 'flowgate-js-data-'));
  const child = spawn(bin, ['serve', '--dev', '--data-dir', dataDir], {
    env: {
      PATH: process.env.PATH, HOME: dataDir,
      FLOWGATE_SERVER_ADDR: '127.0.0.1:0', FLOWGATE_OPS_ADDR: '127.0.0.1:0',
      FLOWGATE_LOG_FORMAT: 'json', FLOWGATE_LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let logs = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => { if (logs.length < 8 << 20) logs += d; });
  const exited = new Promise((res) => child.on('exit', (code, signal) => res({ code, signal })));

  const info = await new Promise((res, rej) => {
    const got = {};
    let buf = '';
    const timer = setTimeout(() => rej(new Error('gateway not ready after ' + timeoutMs + ' ms\n' + logs)), timeoutMs);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        const m = /^(url|dashboard|user-token|admin-token): (\S+)$/.exec(line);
        if (m) got[m[1]] = m[2];
        if (got.url && got.dashboard && got['user-token'] && got['admin-token']) {
          clearTimeout(timer);
          res(got);
        }
      }
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      rej(new Error(`gateway exited (${code ?? signal}) before it was ready\n${logs}`));
    });
  });
  // Keep draining stdout so the child never blocks on a full pipe.
  child.stdout.resume();

  const url = info.url;
  const http = 'http://' + new URL(url).host;
  return {
    url, http, dashboard: info.dashboard,
    userToken: info['user-token'], adminToken: info['admin-token'],
    dataDir, bin,
    logs: () => logs,
    /** Mints a token with the operator CLI (args after `token issue --dev --data-dir D`). */
    token(args) {
      return execFileSync(bin, ['token', 'issue', '--dev', '--data-dir', dataDir, ...args], {
        env: { PATH: process.env.PATH, HOME: dataDir }, encoding: 'utf8',
      }).trim();
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 40_000);
        await exited;
        clearTimeout(t);
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * A TCP proxy in front of the gateway whose connections can be cut at will: the closest a
 * test gets to a network failure (no close frame, the socket just dies).
 */
export async function startProxy(targetUrl) {
  const target = new URL(targetUrl);
  const pairs = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    const pair = { client, upstream };
    pairs.add(pair);
    const drop = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((res) => server.listen(0, '127.0.0.1', res));
  const port = server.address().port;
  return {
    url: `ws://127.0.0.1:${port}${target.pathname}`,
    /** Destroys every live connection at once; returns how many there were. */
    cut() {
      const n = pairs.size;
      for (const { client, upstream } of [...pairs]) {
        client.destroy();
        upstream.destroy();
      }
      pairs.clear();
      return n;
    },
    get connections() { return pairs.size; },
    close() {
      this.cut();
      return new Promise((res) => server.close(() => res()));
    },
  };
}
