#!/usr/bin/env node
// Runs the compiled CLI (`npm run build` -> dist/): no TypeScript compiled at start, so `rty serve` is READY
// fast. Development fallback, stated on stderr: when dist/ is missing or older than a source file, the
// TypeScript source runs through tsx. With NODE_ENV=production a missing or stale build is an error instead.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const built = join(root, 'dist', 'src', 'main', 'cli.js');

/** Newest mtime (ms) of the non-test TypeScript sources under src/ (a few hundred stats: ~ms). */
function newestSourceMs(dir) {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, newestSourceMs(p));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts'))
      newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

const srcDir = join(root, 'src');
const hasSource = existsSync(srcDir);
const stale = !existsSync(built) || (hasSource && statSync(built).mtimeMs < newestSourceMs(srcDir));

if (!stale) {
  await import(pathToFileURL(built).href);
} else if (process.env.NODE_ENV === 'production') {
  process.stderr.write(
    `rty: ${existsSync(built) ? 'dist/ is older than src/' : 'no build in dist/'}; run \`npm run build\` first (production runs compiled JavaScript)\n`,
  );
  process.exit(1);
} else {
  process.stderr.write(
    `rty: ${existsSync(built) ? 'dist/ is older than src/' : 'no build in dist/'}; running the TypeScript source through tsx (development; \`npm run build\` for a fast start)\n`,
  );
  const { register } = await import('tsx/esm/api');
  register();
  await import(pathToFileURL(join(root, 'src', 'main', 'cli.ts')).href);
}
