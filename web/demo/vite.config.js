// The wasm-bindgen module finds its .wasm through `new URL(..., import.meta.url)`, which Vite
// turns into an asset; pre-bundling would rewrite that URL, so the package is excluded.
import { defineConfig } from 'vite';

export default defineConfig({
  base: './',
  optimizeDeps: { exclude: ['anytune'] },
  worker: { format: 'es' },
  build: { target: 'es2022' },
});
