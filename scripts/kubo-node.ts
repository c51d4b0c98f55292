// Builds the Kubo wrapper (scripts/kubo, cached under .cache/kubo keyed by its sources) and runs a local node:
// repo initialised with the test profile (loopback addresses, no bootstrap peers, no autoconf), daemon --offline
// (no swarm traffic: the machine has no internet), API on the requested loopback port (0 = a free one), PID file
// beside the repo. Used by `npm run services -- --ipfs` and by the IPFS test harness. Never imported by src/.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function sourceHash(dir: string): string {
  const h = createHash('sha256');
  for (const f of ['main.go', 'go.mod', 'go.sum']) h.update(readFileSync(join(dir, f)));
  return h.digest('hex').slice(0, 16);
}

/** The cached Kubo binary, built on first use (a cold build takes a few minutes; the Go caches persist). */
export function buildKubo(say: (line: string) => void = () => undefined): string {
  const src = join(root, 'scripts', 'kubo');
  const bin = join(root, '.cache', 'kubo', `ipfs-${sourceHash(src)}`);
  if (existsSync(bin)) return bin;
  const go = spawnSync('go', ['version'], { encoding: 'utf8' });
  if (go.status !== 0)
    throw new Error('the Kubo wrapper needs Go 1.26 (PATH=/usr/local/go/bin:$PATH) or set IPFS_API_URL');
  mkdirSync(dirname(bin), { recursive: true });
  say('ipfs      building Kubo v0.43.1 (first run only)...');
  const r = spawnSync('go', ['build', '-o', `${bin}.tmp`, '.'], {
    cwd: src,
    encoding: 'utf8',
    env: { ...process.env, CGO_ENABLED: '0' },
  });
  if (r.status !== 0)
    throw new Error(`go build of scripts/kubo failed: ${(r.stderr ?? '').trim().slice(-2000)}`);
  spawnSync('mv', [`${bin}.tmp`, bin]);
  return bin;
}

export interface KuboNode {
  apiUrl: string;
  pid: number;
  repo: string;
  /** Stops the daemon by its PID and waits for it to exit; removes the repo when asked. */
  stop(opts?: { removeRepo?: boolean }): Promise<void>;
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** `/ip4/127.0.0.1/tcp/5001` → `http://127.0.0.1:5001`. */
function apiUrlOf(multiaddr: string): string {
  const m = /^\/ip4\/([^/]+)\/tcp\/(\d+)/.exec(multiaddr.trim());
  if (!m) throw new Error(`unexpected Kubo API address ${multiaddr}`);
  return `http://${m[1]}:${m[2]}`;
}

async function answers(apiUrl: string): Promise<string | undefined> {
  try {
    const r = await fetch(`${apiUrl}/api/v0/version`, { method: 'POST', signal: AbortSignal.timeout(2000) });
    if (!r.ok) return undefined;
    return ((await r.json()) as { Version: string }).Version;
  } catch {
    return undefined;
  }
}

/** Starts a Kubo node with its repo at `repo` and its API on 127.0.0.1:`apiPort` (0 = any free port). */
export async function startKubo(o: { repo: string; apiPort: number; bin?: string }): Promise<KuboNode> {
  const bin = o.bin ?? buildKubo();
  const env = { ...process.env, IPFS_PATH: o.repo };
  if (!existsSync(join(o.repo, 'config'))) {
    mkdirSync(o.repo, { recursive: true });
    const init = spawnSync(bin, ['init', '--profile=test', '--empty-repo'], { env, encoding: 'utf8' });
    if (init.status !== 0) throw new Error(`ipfs init failed: ${init.stderr}`);
  }
  const set = (key: string, value: string) => {
    const r = spawnSync(bin, ['config', '--json', key, value], { env, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`ipfs config ${key} failed: ${r.stderr}`);
  };
  set('Addresses.API', JSON.stringify(`/ip4/127.0.0.1/tcp/${o.apiPort}`));
  set('Addresses.Gateway', JSON.stringify('/ip4/127.0.0.1/tcp/0'));
  set('Bootstrap', '[]');
  rmSync(join(o.repo, 'api'), { force: true });
  const log = openSync(join(o.repo, 'daemon.log'), 'a');
  const child = spawn(bin, ['daemon', '--offline'], { env, detached: true, stdio: ['ignore', log, log] });
  child.unref();
  const pid = child.pid!;
  writeFileSync(join(o.repo, 'daemon.pid'), `${pid}\n`);
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (!alive(pid)) throw new Error(`ipfs daemon exited at start; see ${join(o.repo, 'daemon.log')}`);
    const apiFile = join(o.repo, 'api');
    if (existsSync(apiFile)) {
      const apiUrl = apiUrlOf(readFileSync(apiFile, 'utf8'));
      if (await answers(apiUrl)) return { apiUrl, pid, repo: o.repo, stop: (s) => stopKubo(pid, o.repo, s) };
    }
    if (Date.now() > deadline) throw new Error('ipfs daemon did not answer within 60 s');
    await sleep(200);
  }
}

async function stopKubo(pid: number, repo: string, o: { removeRepo?: boolean } = {}): Promise<void> {
  if (alive(pid)) process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 100 && alive(pid); i++) await sleep(100);
  if (alive(pid)) process.kill(pid, 'SIGKILL');
  rmSync(join(repo, 'daemon.pid'), { force: true });
  if (o.removeRepo) rmSync(repo, { recursive: true, force: true });
}

/** For `npm run services`: the node at `apiUrl` if it answers, else a local one started under `.run/ipfs`. */
export async function ensureKubo(apiUrl: string, say: (line: string) => void): Promise<string> {
  const version = await answers(apiUrl);
  if (version) return `Kubo ${version}`;
  const u = new URL(apiUrl);
  if (!/^(127\.0\.0\.1|localhost)$/.test(u.hostname))
    throw new Error(`no Kubo answers at ${apiUrl} and it is not a loopback address to start one on`);
  const bin = buildKubo(say);
  const node = await startKubo({ repo: join(root, '.run', 'ipfs'), apiPort: Number(u.port || 5001), bin });
  return `Kubo ${(await answers(node.apiUrl)) ?? '?'} (pid ${node.pid}, repo .run/ipfs)`;
}
