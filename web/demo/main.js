// The demo page: picks a GGUF (file, URL, or the Cache API copy of an earlier pick) and a
// JSONL, trains in a Web Worker (the page stays responsive), draws the loss, downloads the
// PEFT adapter and compares base and tuned answers. State for tests: window.anytune.
const $ = (id) => document.getElementById(id);
const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
const state = (window.anytune = { gpu: null, info: null, losses: [], evals: [], done: false, result: null,
  tokensPerSecond: [], error: null, adapter: null, answers: {} });
const CACHE = 'anytune-models';

function setError(msg) {
  state.error = msg || null;
  $('error').textContent = msg || '';
}

function status(msg) {
  $('status').textContent = msg;
}

async function listCached() {
  if (!('caches' in self)) return;
  const cache = await caches.open(CACHE);
  const sel = $('model-cached');
  for (const req of await cache.keys()) {
    const name = decodeURIComponent(new URL(req.url).pathname.split('/').pop());
    if (![...sel.options].some((o) => o.value === req.url)) sel.add(new Option(name, req.url));
  }
}

/** The model's bytes, from the cache when this name or URL was read before. */
async function modelBytes() {
  const cache = 'caches' in self ? await caches.open(CACHE) : null;
  const file = $('model-file').files[0];
  const url = $('model-url').value.trim();
  const cached = $('model-cached').value;
  const key = file ? new URL(`/__anytune-models/${encodeURIComponent(file.name)}-${file.size}`, location.href).href
    : url ? url : cached;
  if (!key) throw new Error('choose a GGUF model (file, URL or cached)');
  if (cache) {
    const hit = await cache.match(key);
    if (hit) return { bytes: await hit.arrayBuffer(), cached: true };
  }
  let bytes;
  if (file) bytes = await file.arrayBuffer();
  else {
    const r = await fetch(url);
    if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
    bytes = await r.arrayBuffer();
  }
  if (cache) await cache.put(key, new Response(bytes.slice(0), { headers: { 'content-type': 'application/octet-stream' } }));
  return { bytes, cached: false };
}

function drawChart() {
  const svg = $('chart');
  const all = state.losses.map((p) => p.loss).concat(state.evals.map((e) => e.evalLoss));
  if (!all.length) return;
  const max = Math.max(...all), min = Math.min(0, ...all);
  const n = Math.max(...state.losses.map((p) => p.step), 1);
  const x = (s) => 10 + (580 * s) / n, y = (v) => 210 - (200 * (v - min)) / (max - min || 1);
  const line = state.losses.map((p) => `${x(p.step).toFixed(1)},${y(p.loss).toFixed(1)}`).join(' ');
  const dots = state.evals.map((e) => `<circle cx="${x(e.step)}" cy="${y(e.evalLoss)}" r="3" fill="#c60"/>`).join('');
  svg.innerHTML = `<polyline fill="none" stroke="#06c" stroke-width="2" points="${line}"/>${dots}`
    + `<text x="12" y="14" font-size="11">${max.toFixed(3)}</text><text x="12" y="214" font-size="11">${min.toFixed(3)}</text>`;
}

function config() {
  const num = (id) => Number($(id).value);
  return {
    lora_rank: num('rank'), lora_alpha: 2 * num('rank'), lr: num('lr'), steps: num('steps'),
    batch_size: num('batch'), max_seq_len: num('seqlen'), seed: num('seed'), eval_every: 0,
    memory_budget: Math.round(num('budget') * 2 ** 30),
  };
}

const pending = {};
worker.onmessage = (e) => {
  const m = e.data;
  switch (m.type) {
    case 'gpu': {
      state.gpu = m.info;
      const mib = (b) => (b / 2 ** 20).toFixed(0);
      $('gpu').textContent = `WebGPU: ${m.info.name || 'adapter'} (${m.info.backend}); max storage binding `
        + `${mib(m.info.maxStorageBufferBindingSize)} MiB, max buffer ${mib(m.info.maxBufferSize)} MiB, `
        + `shader-f16 ${m.info.shaderF16 ? 'yes' : 'no (f32 kernels)'}`;
      break;
    }
    case 'created': {
      state.info = m.info;
      const gib = (b) => (b / 2 ** 30).toFixed(2);
      status(`model loaded: GPU memory ≈ ${gib(m.info.total)} GiB (base ${gib(m.info.memory.base_weights)}, `
        + `LoRA + AdamW ${gib(m.info.memory.lora_and_optimizer)}, activations ${gib(m.info.memory.activations)}); training…`);
      if (pending.created) pending.created();
      pending.created = pending.failed = null;
      break;
    }
    case 'progress': {
      const p = m.p;
      if (p.note) { $('log').textContent += p.note + '\n'; break; }
      if (p.loss !== undefined) {
        state.losses.push(p);
        state.tokensPerSecond.push(p.tokensPerSecond);
        status(`step ${p.step}/${p.totalSteps}  loss ${p.loss.toFixed(4)}  ${p.tokensPerSecond.toFixed(1)} tokens/s`);
      } else if (p.evalLoss !== undefined) {
        state.evals.push(p);
        $('log').textContent += `step ${p.step}: hold-out loss ${p.evalLoss.toFixed(4)}\n`;
      }
      drawChart();
      break;
    }
    case 'done':
      state.done = true;
      state.result = m.result;
      status(`done: ${m.result.steps} steps in ${m.seconds.toFixed(1)} s`
        + (m.result.finalEvalLoss != null ? `, hold-out loss ${m.result.finalEvalLoss.toFixed(4)}` : ''));
      $('start').disabled = false;
      $('stop').disabled = true;
      $('download').disabled = false;
      $('compare').disabled = false;
      break;
    case 'answer':
      state.answers[m.which] = m.text;
      $(`answer-${m.which}`).textContent = m.text;
      break;
    case 'adapter': {
      state.adapter = { config: m.config, bytes: m.safetensors.byteLength };
      const save = (name, blob) => {
        const a = document.createElement('a');
        a.href = URL.createObjectURL(blob);
        a.download = name;
        a.click();
        setTimeout(() => URL.revokeObjectURL(a.href), 60000);
      };
      save('adapter_model.safetensors', new Blob([m.safetensors], { type: 'application/octet-stream' }));
      save('adapter_config.json', new Blob([m.config], { type: 'application/json' }));
      break;
    }
    case 'error':
      setError(m.message);
      if (pending.failed) pending.failed(new Error(m.message));
      pending.created = pending.failed = null;
      $('start').disabled = false;
      $('stop').disabled = true;
      break;
  }
};

$('start').onclick = async () => {
  setError('');
  Object.assign(state, { losses: [], evals: [], done: false, result: null, tokensPerSecond: [] });
  try {
    const data = $('data-file').files[0];
    if (!data) throw new Error('choose a training JSONL file');
    const evalFile = $('eval-file').files[0];
    status('reading the model…');
    const { bytes, cached } = await modelBytes();
    $('log').textContent = `model: ${(bytes.byteLength / 2 ** 20).toFixed(1)} MiB${cached ? ' (from the cache)' : ''}\n`;
    listCached();
    $('start').disabled = true;
    $('stop').disabled = false;
    // Train only once the model is loaded: a refused or broken model stops here with its message.
    const created = new Promise((resolve, reject) => Object.assign(pending, { created: resolve, failed: reject }));
    worker.postMessage({ type: 'create', model: bytes, config: config() }, [bytes]);
    await created;
    worker.postMessage({ type: 'train', data: await data.text(), eval: evalFile ? await evalFile.text() : '' });
  } catch (err) {
    setError(String(err.message || err));
  }
};
$('stop').onclick = () => worker.postMessage({ type: 'stop' });
$('download').onclick = () => worker.postMessage({ type: 'export' });
$('compare').onclick = () => {
  const messages = [];
  if ($('system').value.trim()) messages.push({ role: 'system', content: $('system').value });
  messages.push({ role: 'user', content: $('prompt').value });
  for (const which of ['base', 'tuned']) {
    worker.postMessage({ type: 'generate', which, messages, options: { maxTokens: 64, base: which === 'base' } });
  }
};

// A default budget from the machine's memory when the browser tells it (WebGPU does not
// expose the GPU's); the user can raise it or set 0 to skip the check.
if (navigator.deviceMemory && Number($('budget').value) === 0) $('budget').value = String(navigator.deviceMemory / 2);
worker.postMessage({ type: 'init' });
listCached();
