import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const here = (path: string): string => fileURLToPath(new URL(path, import.meta.url));

/**
 * Builds the operators' console (console/ → packages/pocketsync-server/dist/console-ui/), which the
 * server serves at /console/. Preact's JSX, no sourcemaps shipped.
 */
export default defineConfig({
  root: here('./'),
  base: '/console/',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: here('../packages/pocketsync-server/dist/console-ui'),
    emptyOutDir: true,
    target: 'es2022',
  },
});
