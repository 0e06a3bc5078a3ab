import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

/** Builds the demo (demo/ → demo/dist/). */
export default defineConfig({
  root: fileURLToPath(new URL('./demo', import.meta.url)),
  base: './',
  resolve: {
    // The demo uses the package exactly as an app that installed it would: its built entry.
    alias: { pocketsync: fileURLToPath(new URL('./dist/lib/index.js', import.meta.url)) },
  },
  optimizeDeps: { exclude: ['@sqlite.org/sqlite-wasm'] },
  worker: { format: 'es' },
  build: { outDir: 'dist', emptyOutDir: true, target: 'es2022' },
});
