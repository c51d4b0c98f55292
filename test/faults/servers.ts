// Store servers of the fault suite's own, on free loopback ports, that it may restart, kill and flush: a
// PostgreSQL cluster (initdb + pg_ctl in a temp dir), a redis-server and the FerretDB wrapper. Each is
// stopped by its own PID or pg_ctl; the shared servers are never touched.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, openSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { Redis } from 'ioredis';
import { MongoClient } from 'mongodb';
import { projectRoot } from '../../src/platform/paths.js';

const PG_BIN = process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export async function waitUntil(
  what: string,
  probe: () => Promise<unknown>,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      await probe();
      return;
    } catch (err) {
      last = err;
      await sleep(100);
    }
  }
  throw new Error(`${what} not up within ${timeoutMs} ms: ${last instanceof Error ? last.message : last}`);
}

/** initdb refuses root: run the PostgreSQL tools as the postgres user when we are root. */
function pgUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const uid = Number(spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).stdout.trim());
  const gid = Number(spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout.trim());
  if (!Number.isInteger(uid) || !Number.isInteger(gid))
    throw new Error('running as root without a postgres user');
  return { uid, gid };
}

export interface OwnPostgres {
  port: number;
  /** URL of database `rty` on this cluster. */
  url: string;
  adminUrl: string;
  /** `pg_ctl restart -m fast`: every connection is terminated (57P01). */
  restart(): Promise<void>;
  stopServer(): Promise<void>;
  startServer(): Promise<void>;
  /** Stops the cluster and removes its directory. */
  destroy(): Promise<void>;
}

export async function startOwnPostgres(): Promise<OwnPostgres> {
  const user = pgUser();
  const dir = mkdtempSync(join(tmpdir(), 'rty-faults-pg-'));
  if (user) chownSync(dir, user.uid, user.gid);
  const data = join(dir, 'data');
  const port = await freePort();
  const asPg = (bin: string, args: string[]) => {
    const r = spawnSync(join(PG_BIN, bin), args, {
      encoding: 'utf8',
      cwd: dir,
      ...(user ? { uid: user.uid, gid: user.gid } : {}),
      env: { ...process.env, LC_ALL: 'C' },
    });
    if (r.status !== 0) throw new Error(`${bin} ${args.join(' ')} failed: ${r.stderr || r.stdout}`);
  };
  asPg('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync']);
  const opts = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200`;
  const ctl = (action: string, extra: string[] = []) =>
    asPg('pg_ctl', [action, '-D', data, '-w', '-t', '60', '-o', opts, '-l', join(dir, 'log'), ...extra]);
  const adminUrl = `postgres://postgres@127.0.0.1:${port}/postgres`;
  const url = `postgres://postgres@127.0.0.1:${port}/rty`;
  const ping = async () => {
    const c = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 1000 });
    c.on('error', () => undefined);
    await c.connect();
    await c.end();
  };
  ctl('start');
  await waitUntil('own PostgreSQL', ping, 30_000);
  const c = new pg.Client({ connectionString: adminUrl });
  await c.connect();
  await c.query('create database rty');
  await c.end();
  let running = true;
  return {
    port,
    url,
    adminUrl,
    restart: async () => {
      ctl('restart', ['-m', 'fast']);
      await waitUntil('own PostgreSQL after restart', ping, 30_000);
    },
    stopServer: async () => {
      ctl('stop', ['-m', 'fast']);
      running = false;
    },
    startServer: async () => {
      ctl('start');
      running = true;
      await waitUntil('own PostgreSQL', ping, 30_000);
    },
    destroy: async () => {
      if (running) ctl('stop', ['-m', 'immediate']);
      running = false;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface OwnRedis {
  port: number;
  url: string;
  /** kill -9 of the server (its data is gone: no persistence). */
  kill(): Promise<void>;
  start(): Promise<void>;
  flushAll(): Promise<void>;
  destroy(): Promise<void>;
}

export async function startOwnRedis(): Promise<OwnRedis> {
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  let child: ChildProcess | undefined;
  const ping = async () => {
    const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    r.on('error', () => undefined);
    try {
      await r.connect();
      await r.ping();
    } finally {
      r.disconnect();
    }
  };
  const start = async () => {
    child = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', tmpdir()],
      { stdio: 'ignore' },
    );
    await waitUntil('own Redis', ping, 20_000);
  };
  const kill = async () => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await exited;
  };
  await start();
  return {
    port,
    url,
    kill,
    start,
    flushAll: async () => {
      const r = new Redis(url, { maxRetriesPerRequest: 1 });
      await r.flushall();
      r.disconnect();
    },
    destroy: kill,
  };
}

export interface OwnFerret {
  port: number;
  url: string;
  kill(): Promise<void>;
  start(): Promise<void>;
  destroy(): Promise<void>;
}

/** The FerretDB wrapper of scripts/ferretdb (built once into .cache by `npm run services`, or here). */
export function ferretBinary(): string {
  const root = projectRoot();
  const src = join(root, 'scripts', 'ferretdb');
  const h = createHash('sha256');
  for (const f of ['main.go', 'go.mod', 'go.sum']) h.update(readFileSync(join(src, f)));
  const bin = join(root, '.cache', 'ferretdb', `ferretdb-${h.digest('hex').slice(0, 16)}`);
  if (existsSync(bin)) return bin;
  mkdirSync(join(root, '.cache', 'ferretdb'), { recursive: true });
  const r = spawnSync('go', ['build', '-o', bin, '.'], {
    cwd: src,
    encoding: 'utf8',
    env: { ...process.env, CGO_ENABLED: '0', PATH: `/usr/local/go/bin:${process.env.PATH ?? ''}` },
  });
  if (r.status !== 0)
    throw new Error(`go build of scripts/ferretdb failed: ${(r.stderr ?? '').slice(-2000)}`);
  return bin;
}

/** FerretDB on its own port, backed by a `ferretdb` database of the given (own) PostgreSQL cluster. */
export async function startOwnFerret(pgAdminUrl: string): Promise<OwnFerret> {
  const bin = ferretBinary();
  const port = await freePort();
  const url = `mongodb://127.0.0.1:${port}/`;
  const admin = new pg.Client({ connectionString: pgAdminUrl });
  await admin.connect();
  await admin.query(
    `create database ferretdb template template0 encoding 'UTF8' lc_collate 'C' lc_ctype 'C'`,
  );
  await admin.end();
  const ferretPg = new URL(pgAdminUrl);
  ferretPg.pathname = '/ferretdb';
  const logDir = mkdtempSync(join(tmpdir(), 'rty-faults-ferret-'));
  let child: ChildProcess | undefined;
  const ping = async () => {
    const c = new MongoClient(url, { serverSelectionTimeoutMS: 1000, connectTimeoutMS: 1000 });
    try {
      await c.connect();
      await c.db('admin').command({ ping: 1 });
    } finally {
      await c.close();
    }
  };
  const start = async () => {
    const log = openSync(join(logDir, 'ferretdb.log'), 'a');
    child = spawn(
      bin,
      [
        '--listen-addr',
        `127.0.0.1:${port}`,
        '--handler',
        'postgresql',
        '--postgresql-url',
        ferretPg.toString(),
      ],
      { stdio: ['ignore', log, log] },
    );
    await waitUntil('own FerretDB', ping, 30_000);
  };
  const kill = async () => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await exited;
  };
  await start();
  return {
    port,
    url,
    kill,
    start,
    destroy: async () => {
      await kill();
      rmSync(logDir, { recursive: true, force: true });
    },
  };
}
