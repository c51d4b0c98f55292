// `npm run bench -- <suite>`: runs bench/<suite>.ts, which prints its figures beside the raw ceiling of the
// service it depends on (measured in the same run) and ends with one `BENCH <suite> ... ratio=<n>` line.
import { readdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const suites = readdirSync(here)
  .filter((f) => f.endsWith('.ts') && !['run.ts', 'stats.ts', 'proc.ts'].includes(f) && !f.startsWith('e2e-'))
  .map((f) => f.replace(/\.ts$/, ''));
const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
if (wanted.length === 0 || wanted.some((w) => !suites.includes(w))) {
  console.error(`usage: npm run bench -- <suite>...   suites: ${suites.join(', ')}`);
  process.exit(2);
}
for (const suite of wanted) {
  const mod = (await import(pathToFileURL(`${here}/${suite}.ts`).href)) as { main(): Promise<void> };
  await mod.main();
}
process.exit(0);
