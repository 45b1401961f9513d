// The demo page in Debian's headless Chromium on WebGPU (SwiftShader on a GPU-less machine),
// driven like a user: a tiny Llama GGUF made by `anytune tiny-model` and a JSONL are picked,
// training runs >= 5 steps and the loss falls, the adapter is downloaded and parses as PEFT
// safetensors with the expected keys and shapes; then the native CLI trains the same file,
// data and settings on the CPU and every adapter tensor agrees within 1e-3 relative norm error.
// Needs: scripts/build-web.sh, `npm run build` here, ANYTUNE_BIN (the native binary).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { serve, readSafetensors, relNormErr } from './util.mjs';

const here = path.dirname(new URL(import.meta.url).pathname);
const dist = path.join(here, '..', 'dist');
const bin = process.env.ANYTUNE_BIN;
const settings = { rank: 4, lr: 0.01, steps: 6, batch: 2, seqlen: 128, seed: 42 };

function dataset() {
  const names = ['zlib1g', 'libc6', 'bash', 'coreutils', 'gzip', 'tar', 'sed', 'grep'];
  return names.map((n, i) => JSON.stringify({ messages: [
    { role: 'user', content: `Package: ${n}` },
    { role: 'assistant', content: JSON.stringify({ name: n, n: i }) },
  ] })).join('\n') + '\n';
}

test('tiny model trains in Chromium on WebGPU, adapter downloads as PEFT and matches native', { timeout: 900_000 }, async () => {
  assert.ok(bin && fs.existsSync(bin), 'ANYTUNE_BIN must point to the anytune binary');
  assert.ok(fs.existsSync(path.join(dist, 'index.html')), 'build the page first (npm run build)');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'anytune-web-'));
  const model = path.join(tmp, 'tiny.gguf');
  execFileSync(bin, ['tiny-model', '--out', model, '--seed', '1']);
  const data = path.join(tmp, 'train.jsonl');
  fs.writeFileSync(data, dataset());

  const server = await serve(dist);
  const ctx = await chromium.launchPersistentContext(path.join(tmp, 'profile'), {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    acceptDownloads: true,
    args: ['--enable-unsafe-webgpu', '--disable-quic', '--disable-dev-shm-usage'],
  });
  try {
    const page = ctx.pages()[0] || (await ctx.newPage());
    page.on('console', (m) => { if (['error', 'warning'].includes(m.type())) console.error('page:', m.type(), m.text().slice(0, 3000)); });
    await page.goto(`${server.url}/index.html`);
    await page.waitForFunction(() => window.anytune && (window.anytune.gpu || window.anytune.error), null, { timeout: 120_000 });
    const gpu = await page.evaluate(() => window.anytune.gpu);
    console.log('adapter:', JSON.stringify(gpu));
    assert.ok(gpu.maxStorageBufferBindingSize > 0);
    await page.setInputFiles('#model-file', model);
    await page.setInputFiles('#data-file', data);
    for (const [id, v] of Object.entries(settings)) await page.fill(`#${id}`, String(v));
    // A model over the memory budget is refused with a clear message.
    await page.fill('#budget', '0.000001');
    await page.click('#start');
    await page.waitForFunction(() => window.anytune.error, null, { timeout: 120_000 });
    const refusal = await page.evaluate(() => window.anytune.error);
    console.log(`over budget: ${refusal}`);
    assert.match(refusal, /needs about [0-9.]+ MiB on the GPU .*\(base [0-9.]+ MiB, LoRA \+ AdamW [0-9.]+ MiB, activations [0-9.]+ MiB\), more than the 0\.0 MiB budget/);
    await page.fill('#budget', '0');
    const t0 = Date.now();
    await page.click('#start');
    await page.waitForFunction(() => window.anytune.done || window.anytune.error, null, { timeout: 600_000 });
    const st = await page.evaluate(() => window.anytune);
    assert.equal(st.error, null, `page error: ${st.error}`);
    const losses = st.losses.map((p) => p.loss);
    console.log(`browser: ${losses.length} steps in ${((Date.now() - t0) / 1000).toFixed(1)} s, loss ${losses.map((l) => l.toFixed(4)).join(' ')}`);
    console.log(`browser tokens/s per step: ${st.tokensPerSecond.map((t) => t.toFixed(1)).join(' ')}`);
    assert.ok(losses.length >= 5, 'at least 5 steps');
    assert.ok(losses.at(-1) < losses[0], 'loss falls');

    const downloads = [];
    page.on('download', (d) => downloads.push(d));
    await page.click('#download');
    const deadline = Date.now() + 60_000;
    while (downloads.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    assert.equal(downloads.length, 2, 'two files downloaded');
    const files = {};
    for (const d of downloads) {
      const p = path.join(tmp, d.suggestedFilename());
      await d.saveAs(p);
      files[d.suggestedFilename()] = p;
    }
    const cfg = JSON.parse(fs.readFileSync(files['adapter_config.json'], 'utf8'));
    assert.equal(cfg.peft_type, 'LORA');
    assert.equal(cfg.r, 4);
    const browser = readSafetensors(fs.readFileSync(files['adapter_model.safetensors']));
    const inOut = { q_proj: [32, 32], k_proj: [32, 16], v_proj: [32, 16], o_proj: [32, 32],
      gate_proj: [32, 64], up_proj: [32, 64], down_proj: [64, 32] };
    assert.equal(Object.keys(browser).length, 2 * 7 * 2);
    for (let l = 0; l < 2; l++) {
      for (const [m, [i, o]] of Object.entries(inOut)) {
        const part = m.endsWith('proj') && ['q_proj', 'k_proj', 'v_proj', 'o_proj'].includes(m) ? 'self_attn' : 'mlp';
        const key = (w) => `base_model.model.model.layers.${l}.${part}.${m}.${w}.weight`;
        assert.deepEqual(browser[key('lora_A')].shape, [4, i], key('lora_A'));
        assert.deepEqual(browser[key('lora_B')].shape, [o, 4], key('lora_B'));
        assert.equal(browser[key('lora_A')].dtype, 'F32');
      }
    }

    // The model's bytes were kept by the Cache API: after a reload the page offers them.
    await page.reload();
    await page.waitForFunction(() => document.querySelectorAll('#model-cached option').length > 1, null, { timeout: 30_000 });
    const cachedNames = await page.evaluate(() => [...document.querySelectorAll('#model-cached option')].map((o) => o.textContent));
    console.log(`cached after reload: ${cachedNames.join(', ')}`);
    assert.ok(cachedNames.some((n) => n.startsWith('tiny.gguf')));

    // The same run natively (CPU backend): same core, same numbers.
    const toml = path.join(tmp, 'train.toml');
    fs.writeFileSync(toml, `lora_rank = 4\nlora_alpha = 8.0\nlr = 0.01\nsteps = 6\nbatch_size = 2\nmax_seq_len = 128\nseed = 42\neval_every = 0\n`);
    const out = path.join(tmp, 'native');
    execFileSync(bin, ['train', '--model', model, '--data', data, '--out', out, '--config', toml,
      '--device', 'cpu', '--no-forgetting-check', '--task-eval', '0'], { stdio: ['ignore', 'ignore', 'inherit'] });
    const native = readSafetensors(fs.readFileSync(path.join(out, 'adapter', 'adapter_model.safetensors')));
    let worst = 0, worstKey = '';
    for (const [k, t] of Object.entries(native)) {
      const e = relNormErr(t.values, browser[k].values);
      if (e > worst) [worst, worstKey] = [e, k];
    }
    console.log(`browser vs native adapter: worst relative norm error ${worst.toExponential(2)} (${worstKey}) over ${Object.keys(native).length} tensors`);
    assert.ok(worst < 1e-3, `browser and native adapters differ: ${worst} at ${worstKey}`);
  } finally {
    await ctx.close();
    server.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
