// A Kubo node of the test file's own (built from scripts/kubo on first use, cached in .cache/kubo): offline, repo in a
// temporary directory, API on a free loopback port; stopped by its PID and its repo removed afterwards.
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildKubo, startKubo, type KuboNode } from '../scripts/kubo-node.js';

export async function startOwnKubo(): Promise<KuboNode> {
  const bin = buildKubo();
  return startKubo({ repo: await mkdtemp(join(tmpdir(), 'rty-kubo-')), apiPort: 0, bin });
}
