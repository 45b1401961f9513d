// Runs the anytune core (WebAssembly + WebGPU) off the page's thread. Messages in:
// init, create {model, config}, train {data, eval}, stop, generate {messages, options}, export.
// Messages out: gpu, created, progress, done, answer, adapter, error.
import init, { Trainer, gpuInfo } from 'anytune';

let trainer = null;
const ready = init();

async function handle(m) {
  await ready;
  switch (m.type) {
    case 'init':
      postMessage({ type: 'gpu', info: await gpuInfo() });
      break;
    case 'create':
      trainer = null;
      trainer = await Trainer.create(new Uint8Array(m.model), JSON.stringify(m.config));
      postMessage({ type: 'created', info: trainer.info() });
      break;
    case 'train': {
      const t0 = performance.now();
      const result = await trainer.train(m.data, m.eval || '', (p) => postMessage({ type: 'progress', p }));
      postMessage({ type: 'done', result, seconds: (performance.now() - t0) / 1000 });
      break;
    }
    case 'stop':
      if (trainer) trainer.stop();
      break;
    case 'generate': {
      const text = await trainer.generate(JSON.stringify(m.messages), JSON.stringify(m.options || {}));
      postMessage({ type: 'answer', which: m.which, text });
      break;
    }
    case 'export': {
      const files = await trainer.exportAdapter();
      const st = files['adapter_model.safetensors'];
      postMessage({ type: 'adapter', config: files['adapter_config.json'], safetensors: st }, [st.buffer]);
      break;
    }
  }
}

self.onmessage = (e) => {
  handle(e.data).catch((err) => {
    const message = (err && err.message) || String(err) || 'unknown error';
    console.error(`anytune worker (${e.data.type}):`, message, err && err.stack);
    postMessage({ type: 'error', message: `${e.data.type}: ${message}` });
  });
};
