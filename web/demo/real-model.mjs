// Not a CI test (minutes on a CPU-only WebGPU): the demo page trains the real model
// (SmolLM2-135M-Instruct Q4_1, $ANYTUNE_MODEL) for STEPS steps (default 2) in headless Chromium
// and prints the loss and tokens/s, to put beside the native CLI's on the same machine.
//   ANYTUNE_MODEL=... node real-model.mjs   (after scripts/build-web.sh and `npx vite build`)
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { serve } from './tests/util.mjs';

const here = path.dirname(new URL(import.meta.url).pathname);
const model = process.env.ANYTUNE_MODEL;
const steps = Number(process.env.STEPS || 2);
if (!model || !fs.existsSync(model)) throw new Error('set ANYTUNE_MODEL to the SmolLM2 GGUF');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'anytune-real-'));
const data = path.join(tmp, 'train.jsonl');
// Short examples: a CPU-emulated WebGPU (SwiftShader) runs ~0.03 GFLOP/s, so a step of the
// 135M model on the demo set's ~250-token examples would take the better part of an hour.
const lines = ['Hi', 'Ok', 'Yes', 'No'].map((w) => JSON.stringify({ messages: [
  { role: 'system', content: 'Be brief.' }, { role: 'user', content: w }, { role: 'assistant', content: `${w}!` }] }));
fs.writeFileSync(data, lines.join('\n') + '\n');
const server = await serve(path.join(here, 'dist'));
const ctx = await chromium.launchPersistentContext(path.join(tmp, 'profile'), {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true,
  args: ['--enable-unsafe-webgpu', '--disable-quic', '--disable-dev-shm-usage'],
});
try {
  const page = ctx.pages()[0] || (await ctx.newPage());
  page.on('console', (m) => { if (m.type() === 'error') console.error('page:', m.text().slice(0, 500)); });
  await page.goto(`${server.url}/index.html`);
  await page.waitForFunction(() => window.anytune && window.anytune.gpu, null, { timeout: 120_000 });
  await page.setInputFiles('#model-file', model);
  await page.setInputFiles('#data-file', data);
  for (const [id, v] of Object.entries({ rank: 8, lr: 0.0002, steps, batch: 1, seqlen: 64, seed: 42, budget: 0 })) {
    await page.fill(`#${id}`, String(v));
  }
  const t0 = Date.now();
  await page.click('#start');
  let seen = 0;
  while (true) {
    const st = await page.evaluate(() => ({ done: window.anytune.done, error: window.anytune.error, losses: window.anytune.losses }));
    for (const p of st.losses.slice(seen)) {
      console.log(`step ${p.step}/${p.totalSteps}: loss ${p.loss.toFixed(5)}, ${p.tokens} tokens in ${p.seconds.toFixed(1)} s = ${p.tokensPerSecond.toFixed(2)} tokens/s`);
    }
    seen = st.losses.length;
    if (st.error) throw new Error(st.error);
    if (st.done) break;
    await new Promise((r) => setTimeout(r, 2000));
  }
  console.log(`browser: ${steps} steps of SmolLM2-135M Q4_1 in ${((Date.now() - t0) / 1000).toFixed(0)} s (incl. model load and shader compilation)`);
} finally {
  await ctx.close();
  server.close();
  fs.rmSync(tmp, { recursive: true, force: true });
}
