import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { defineConfig, type Plugin } from 'vite';

const demo = (path: string): string => fileURLToPath(new URL(`./demo/${path}`, import.meta.url));

/**
 * Gives the service worker (demo/sw.ts, built as sw.js at the root so its scope is the whole app)
 * the list of files this build wrote, and a version that changes whenever any of them does: the
 * `PRECACHE` it declares is defined here, after everything else is bundled.
 */
function precacheManifest(): Plugin {
  return {
    name: 'pocketsync-precache-manifest',
    apply: 'build',
    generateBundle(_options, bundle) {
      const sw = bundle['sw.js'];
      if (!sw || sw.type !== 'chunk') throw new Error('precache-manifest: the build has no sw.js chunk');
      const contents = new Map<string, string | Uint8Array>();
      for (const [name, output] of Object.entries(bundle)) {
        if (name !== 'sw.js' && !name.endsWith('.map')) contents.set(name, output.type === 'chunk' ? output.code : output.source);
      }
      // Files in demo/public are copied as they are, outside the bundle.
      for (const name of readdirSync(demo('public'))) contents.set(name, readFileSync(demo(`public/${name}`)));
      const names = [...contents.keys()].sort();
      const hash = createHash('sha256');
      for (const name of names) hash.update(name).update(contents.get(name)!);
      const files = names.map((name) => `./${name}`);
      const precache = JSON.stringify({ version: hash.digest('hex').slice(0, 16), files });
      sw.code = `const PRECACHE = ${precache};\n${sw.code}`;
    },
  };
}

/**
 * Builds the demo (demo/ → demo/dist/): the app, its service worker, manifest and icon. The demo
 * imports `pocketsync` exactly as an app that installed it would: the workspace's package, built.
 */
export default defineConfig({
  root: demo(''),
  base: './',
  optimizeDeps: { exclude: ['@sqlite.org/sqlite-wasm'] },
  worker: { format: 'es' },
  plugins: [precacheManifest()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    rolldownOptions: {
      input: { index: demo('index.html'), sw: demo('sw.ts') },
      output: { entryFileNames: (chunk) => (chunk.name === 'sw' ? 'sw.js' : 'assets/[name]-[hash].js') },
    },
  },
});
