// The npm package of the SDK (internal/web/npm), packed with `npm pack` and installed into
// two fresh projects, one ESM and one CommonJS, each of which imports it the documented way
// and runs a swarm through a live `flowgate serve --dev`. Also: the gateway serves the same
// module under its versioned paths.
//
//   node --experimental-websocket --test internal/web/sdktest/package.test.mjs

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, rmSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { startGateway, repoRoot } from './gateway.mjs';

const pkgDir = join(repoRoot, 'internal/web/npm');
const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));
const wsFlag = typeof globalThis.WebSocket === 'function' && !process.execArgv.includes('--experimental-websocket')
  ? [] : ['--experimental-websocket'];

let gw, work, tarball;
before(async () => {
  gw = await startGateway();
  work = mkdtempSync(join(tmpdir(), 'flowgate-npm-'));
  // npm pack needs no network: the package has no dependencies.
  const out = execFileSync('npm', ['pack', '--silent', '--pack-destination', work, pkgDir], { encoding: 'utf8' }).trim();
  tarball = join(work, out.split('\n').pop());
});
after(async () => {
  if (gw) await gw.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

/** A fresh project of the given module type with the packed package installed from the tarball. */
function project(type) {
  const dir = mkdtempSync(join(work, type + '-'));
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'consumer-' + type, private: true, type }));
  execFileSync('npm', ['install', '--offline', '--no-audit', '--no-fund', '--silent', tarball], { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'] });
  return dir;
}

function runSwarm(dir, file, source) {
  writeFileSync(join(dir, file), source);
  const token = gw.token(['--tenant', 'demo', '--sub', 'npm-' + file.replace(/\W/g, ''), '--perm', 'swarm:execute', '--ttl', '1h']);
  const out = execFileSync(process.execPath, [...wsFlag, file], {
    cwd: dir, encoding: 'utf8', env: { PATH: process.env.PATH, GW_URL: gw.url, GW_TOKEN: token }, timeout: 60_000,
  });
  return JSON.parse(out.trim().split('\n').pop());
}

const body = `
const client = new FlowgateClient({ url: process.env.GW_URL, token: process.env.GW_TOKEN, reconnect: false });
const welcome = await client.connect();
const done = await client.executeSwarm('package test sim:pace=0', {});
client.disconnect();
console.log(JSON.stringify({ version: VERSION, tenant: welcome.tenant, status: done.status, isDefault: def === FlowgateClient }));
`;

test('the package has its files, and the version its source declares', () => {
  const names = readdirSync(pkgDir).sort();
  for (const f of pkg.files) assert.ok(names.includes(f), f + ' missing');
  const src = readFileSync(join(pkgDir, 'flowgate.mjs'), 'utf8');
  assert.match(src, new RegExp(`^export const VERSION = '${pkg.version.replace(/\./g, '\\.')}';$`, 'm'));
});

test('ESM: import { FlowgateClient } from the package', () => {
  const dir = project('module');
  const r = runSwarm(dir, 'esm.mjs', `import def, { FlowgateClient, VERSION } from '@flowgate/client';\n${body}`);
  assert.deepEqual(r, { version: pkg.version, tenant: 'demo', status: 'success', isDefault: true });
});

test('CommonJS: require the package', () => {
  const dir = project('commonjs');
  const r = runSwarm(dir, 'cjs.cjs', `const { FlowgateClient, VERSION } = require('@flowgate/client');
const def = require('@flowgate/client').default;
(async () => {${body}})().catch((e) => { console.error(e); process.exit(1); });`);
  assert.deepEqual(r, { version: pkg.version, tenant: 'demo', status: 'success', isDefault: true });
});

test('the gateway serves the module at its versioned paths', async () => {
  const src = readFileSync(join(repoRoot, 'internal/web/npm/flowgate.mjs'), 'utf8');
  const major = pkg.version.split('.')[0];
  for (const [path, cache] of [
    ['/sdk/flowgate.js', /no-cache/],
    [`/sdk/v${major}/flowgate.js`, /immutable/],
    [`/sdk/v${pkg.version}/flowgate.js`, /max-age=31536000, immutable/],
    [`/sdk/v${major}/flowgate.d.ts`, /immutable/],
  ]) {
    const res = await fetch(gw.http + path);
    assert.equal(res.status, 200, path);
    assert.match(res.headers.get('cache-control'), cache, path);
    if (path.endsWith('.js')) assert.equal(await res.text(), src, path);
  }
  assert.equal((await fetch(gw.http + '/sdk/v0/flowgate.js')).status, 404);
});
