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
  optimizeDeps: { exclude: ['webgpu'] },
});
