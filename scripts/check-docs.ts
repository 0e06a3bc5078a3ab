/**
 * Type-checks every TypeScript sample in docs/*.md and README.md (`npm run typecheck` runs it), so a
 * sample cannot drift from the API. Each ```ts / ```tsx block becomes a module of its own in
 * .docs-check/, compiled under the repository's strict settings with the package names mapped to
 * the sources: what a reader copies is what compiles. A sample that needs something from the
 * reader's app declares it (`declare function render(rows: Row[]): void;`). A block whose info
 * string says `no-check` is left out (shell sessions and JSON are not TypeScript anyway).
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = fileURLToPath(new URL('..', import.meta.url));
const out = join(repo, '.docs-check');
const sources = ['README.md', ...readdirSync(join(repo, 'docs')).filter((name) => name.endsWith('.md')).map((name) => `docs/${name}`)];

rmSync(out, { recursive: true, force: true });
mkdirSync(out);
const written: string[] = [];
for (const source of sources) {
  const text = readFileSync(join(repo, source), 'utf8');
  // A fence may be indented (a sample inside a list item): its lines lose that indent.
  for (const match of text.matchAll(/^( *)```(tsx|ts)([^\n]*)\n([\s\S]*?)^\1```$/gm)) {
    const [, indent = '', kind, info = '', body = ''] = match;
    if (info.includes('no-check')) continue;
    const line = text.slice(0, match.index).split('\n').length;
    const name = `${source.replace(/[/.]/g, '_')}_${line}.${kind}`;
    const code = body.split('\n').map((text) => (text.startsWith(indent) ? text.slice(indent.length) : text)).join('\n');
    // The line comment lets tsc's messages point back at the Markdown.
    writeFileSync(join(out, name), `// ${source}:${line}\n${code}\nexport {};\n`);
    written.push(name);
  }
}

writeFileSync(
  join(out, 'tsconfig.json'),
  JSON.stringify({
    extends: '../tsconfig.json',
    compilerOptions: {
      noEmit: true,
      jsx: 'react-jsx',
      // The samples are what a reader writes: unused names are fine there.
      noUnusedLocals: false,
      types: ['node', 'vite/client'],
      paths: {
        pocketsync: ['../lib/index.ts'],
        'pocketsync/react': ['../lib/react.ts'],
        'pocketsync/backend': ['../lib/backend.ts'],
        'pocketsync-server': ['../server/index.ts'],
      },
    },
    include: ['*.ts', '*.tsx'],
  }),
);
const tsc = spawnSync(process.execPath, [join(repo, 'node_modules/typescript/bin/tsc'), '-p', join(out, 'tsconfig.json')], { encoding: 'utf8' });
const report = (tsc.stdout + tsc.stderr).replace(/^(\S+?)\((\d+),(\d+)\)/gm, (_all, file: string, row: string) => {
  const header = readFileSync(join(out, file.replace(/^.*\//, '')), 'utf8').split('\n')[0]!.slice(3);
  const [doc, start] = header.split(':');
  return `${doc}:${Number(start) + Number(row) - 1}`;
});
if (tsc.status !== 0) {
  console.error(report);
  console.error(`${written.length} samples checked: some do not compile (the file:line is in the Markdown).`);
  process.exit(1);
}
rmSync(out, { recursive: true, force: true });
console.log(`${written.length} TypeScript samples in the docs compile.`);
