// A FerretDB server of a test's own (never the shared one): the scripts/ferretdb wrapper on a free loopback
// port, on a PostgreSQL database of its own; killed by PID and restarted on the same port to fake an outage.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MongoClient } from 'mongodb';
import pg from 'pg';
import { baseConfig, uniqueName } from './harness.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** The wrapper binary, built like scripts/services.ts does (same cache path, so it is built once). */
function ferretBinary(): string {
  const src = join(root, 'scripts', 'ferretdb');
  const h = createHash('sha256');
  for (const f of ['main.go', 'go.mod', 'go.sum']) h.update(readFileSync(join(src, f)));
  const dir = join(root, '.cache', 'ferretdb');
  const bin = join(dir, `ferretdb-${h.digest('hex').slice(0, 16)}`);
  if (existsSync(bin)) return bin;
  mkdirSync(dir, { recursive: true });
  const r = spawnSync('go', ['build', '-o', bin, '.'], {
    cwd: src,
    encoding: 'utf8',
    env: { ...process.env, CGO_ENABLED: '0' },
  });
  if (r.status !== 0) throw new Error(`go build of scripts/ferretdb failed: ${r.stderr ?? r.error}`);
  return bin;
}

async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => res(port));
    });
  });
}

export interface OwnFerretDb {
  /** mongodb:// URL of this server. */
  url: string;
  port: number;
  /** PID of the running server (undefined while killed). */
  pid(): number | undefined;
  /** SIGKILL by PID; resolves once the process has exited. */
  kill(): Promise<void>;
  /** Starts it again on the same port and database; resolves once it answers. */
  start(): Promise<void>;
  /** Kills it and drops its PostgreSQL database. */
  destroy(): Promise<void>;
}

export async function startOwnFerretDb(): Promise<OwnFerretDb> {
  const bin = ferretBinary();
  const dbName = uniqueName('ferret');
  const adminUrl = new URL(baseConfig.POSTGRES_URL);
  adminUrl.pathname = '/postgres';
  const admin = new pg.Client({ connectionString: adminUrl.toString() });
  await admin.connect();
  try {
    await admin.query(
      `create database "${dbName}" template template0 encoding 'UTF8' lc_collate 'C' lc_ctype 'C'`,
    );
  } finally {
    await admin.end();
  }
  const pgUrl = new URL(baseConfig.POSTGRES_URL);
  pgUrl.pathname = `/${dbName}`;
  const port = await freePort();
  const url = `mongodb://127.0.0.1:${port}/`;
  let child: ChildProcess | undefined;

  const start = async () => {
    child = spawn(
      bin,
      ['--listen-addr', `127.0.0.1:${port}`, '--handler', 'postgresql', '--postgresql-url', pgUrl.toString()],
      { stdio: 'ignore' },
    );
    const deadline = Date.now() + 30_000;
    for (;;) {
      const c = new MongoClient(url, { serverSelectionTimeoutMS: 500, connectTimeoutMS: 500 });
      try {
        await c.db('admin').command({ ping: 1 });
        return;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 200));
      } finally {
        await c.close().catch(() => undefined);
      }
    }
  };
  const kill = async () => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null || c.pid === undefined) return;
    const exited = new Promise<void>((r) => c.once('exit', () => r()));
    process.kill(c.pid, 'SIGKILL');
    await exited;
  };
  await start();
  return {
    url,
    port,
    pid: () => child?.pid,
    kill,
    start,
    destroy: async () => {
      await kill();
      const a = new pg.Client({ connectionString: adminUrl.toString() });
      await a.connect();
      try {
        await a.query(`drop database if exists "${dbName}" with (force)`);
      } finally {
        await a.end();
      }
    },
  };
}
