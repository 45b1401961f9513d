// `npm pack` of web/ is a package a fresh Vite project can import and bundle: the bundle
// carries the .wasm, and the built page initialises the module in Chromium.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { serve } from './util.mjs';

const here = path.dirname(new URL(import.meta.url).pathname);
const web = path.join(here, '..', '..');
const viteVersion = JSON.parse(fs.readFileSync(path.join(here, '..', 'node_modules', 'vite', 'package.json'), 'utf8')).version;

test('npm pack output imports and bundles in a fresh Vite project', { timeout: 600_000 }, async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'anytune-pack-'));
  try {
    const out = execFileSync('npm', ['pack', '--pack-destination', tmp, '--json'], { cwd: web, encoding: 'utf8' });
    const info = JSON.parse(out)[0];
    const names = info.files.map((f) => f.path).sort();
    console.log(`npm pack: ${info.filename}, ${(info.size / 2 ** 20).toFixed(1)} MiB, files ${names.join(', ')}`);
    for (const f of ['package.json', 'pkg/anytune.js', 'pkg/anytune.d.ts', 'pkg/anytune_bg.wasm']) {
      assert.ok(names.includes(f), `package lacks ${f}`);
    }
    const app = path.join(tmp, 'app');
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({
      name: 'fresh-app', private: true, type: 'module',
      dependencies: { anytune: `file:${path.join(tmp, info.filename)}` },
      devDependencies: { vite: viteVersion },
    }, null, 2));
    fs.writeFileSync(path.join(app, 'index.html'),
      '<!doctype html><html><body><script type="module" src="./main.js"></script></body></html>');
    fs.writeFileSync(path.join(app, 'main.js'), [
      "import init, { Trainer, gpuInfo } from 'anytune';",
      "window.result = init().then(() => ({ create: typeof Trainer.create, gpuInfo: typeof gpuInfo }))",
      "  .catch((e) => ({ error: String(e) }));",
    ].join('\n'));
    fs.writeFileSync(path.join(app, 'vite.config.js'),
      "export default { base: './', optimizeDeps: { exclude: ['anytune'] } };\n");
    execFileSync('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: app, stdio: 'inherit' });
    execFileSync('npx', ['vite', 'build', '--logLevel', 'warn'], { cwd: app, stdio: 'inherit' });
    const assets = fs.readdirSync(path.join(app, 'dist', 'assets'));
    console.log(`fresh Vite build: ${assets.join(', ')}`);
    assert.ok(assets.some((a) => a.endsWith('.wasm')), 'the bundle carries the .wasm');

    const server = await serve(path.join(app, 'dist'));
    const ctx = await chromium.launchPersistentContext(path.join(tmp, 'profile'), {
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true,
      args: ['--enable-unsafe-webgpu', '--disable-quic', '--disable-dev-shm-usage'],
    });
    try {
      const page = ctx.pages()[0] || (await ctx.newPage());
      await page.goto(`${server.url}/index.html`);
      const r = await page.evaluate(() => window.result);
      console.log('fresh app in Chromium:', JSON.stringify(r));
      assert.deepEqual(r, { create: 'function', gpuInfo: 'function' });
    } finally {
      await ctx.close();
      server.close();
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
