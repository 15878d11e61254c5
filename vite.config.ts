import { svelte } from '@sveltejs/vite-plugin-svelte';
import { defineConfig } from 'vite';

// COOP/COEP make the page cross-origin isolated: SharedArrayBuffer and wasm threads (onnxruntime-web) need it.
const isolation = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

export default defineConfig({
  plugins: [svelte()],
  server: { headers: isolation },
  preview: { headers: isolation },
  worker: { format: 'es' },
  build: { target: 'es2022', outDir: 'dist', emptyOutDir: true },
  optimizeDeps: {
    exclude: ['webgpu'],
    // Pre-bundled up front, so the first page that imports the parquet reader does not race Vite's
    // on-demand dependency optimisation (which reloads the page mid-test on a cold cache).
    include: ['hyparquet', 'hyparquet/src/column.js', 'hyparquet/src/convert.js', 'hyparquet/src/datapage.js', 'hyparquet/src/plain.js', 'hyparquet-writer', 'hyparquet-compressors', 'fflate', 'apache-arrow', 'comlink', 'idb'],
  },
});
