// Makes the four stores reachable (idempotently) and prints one line per store.
// Uses a server that already answers (env URL or local default); starts the local one when it is down;
// builds and starts the FerretDB wrapper for the MongoDB API. Never imported by src/.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { MongoClient } from 'mongodb';
import { Redis } from 'ioredis';
import amqp from 'amqplib';
import { buildKubo, ensureKubo } from './kubo-node.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const runDir = join(root, '.run');
const cacheDir = join(root, '.cache', 'ferretdb');

const urls = {
  postgres: process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/rty',
  mongo: process.env.MONGO_URL ?? 'mongodb://127.0.0.1:27017/',
  redis: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
  amqp: process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672',
};

type Probe = () => Promise<string>;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function probePostgres(url: string): Promise<string> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  await client.connect();
  try {
    const r = await client.query<{ v: string }>('select current_setting($1) as v', ['server_version']);
    return `PostgreSQL ${r.rows[0]?.v}`;
  } finally {
    await client.end();
  }
}

async function probeMongo(url: string): Promise<string> {
  const client = new MongoClient(url, { serverSelectionTimeoutMS: 2000, connectTimeoutMS: 2000 });
  try {
    await client.connect();
    await client.db('admin').command({ ping: 1 });
    const info = await client.db('admin').command({ buildInfo: 1 });
    return info.ferretdbVersion
      ? `FerretDB ${info.ferretdbVersion} (MongoDB API ${info.version})`
      : `MongoDB ${info.version}`;
  } finally {
    await client.close();
  }
}

async function probeRedis(url: string): Promise<string> {
  const client = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    connectTimeout: 2000,
    retryStrategy: () => null,
  });
  try {
    await client.connect();
    const info = await client.info('server');
    return `Redis ${/redis_version:(\S+)/.exec(info)?.[1] ?? '?'}`;
  } finally {
    client.disconnect();
  }
}

async function probeAmqp(url: string): Promise<string> {
  const conn = await amqp.connect(url, { timeout: 2000 });
  try {
    const props = (conn.connection as unknown as { serverProperties?: Record<string, unknown> })
      .serverProperties;
    return `RabbitMQ ${String(props?.version ?? '?')}`;
  } finally {
    await conn.close();
  }
}

async function waitFor(probe: Probe, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      return await probe();
    } catch (err) {
      last = err;
      await sleep(500);
    }
  }
  throw last instanceof Error ? last : new Error(String(last));
}

function run(cmd: string, args: string[]): { ok: boolean; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return {
    ok: r.status === 0,
    out: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}`.trim(),
  };
}

function isLocal(url: string): boolean {
  return /(127\.0\.0\.1|localhost|\[::1\])/.test(url);
}

async function ensurePostgres(): Promise<string> {
  const url = urls.postgres;
  const adminUrl = (() => {
    const u = new URL(url);
    u.pathname = '/postgres';
    return u.toString();
  })();
  try {
    await probePostgres(adminUrl);
  } catch (err) {
    if (process.env.POSTGRES_URL && !isLocal(url)) throw err;
    const versions = run('ls', ['/etc/postgresql']);
    if (!versions.ok)
      throw new Error('PostgreSQL is down and not installed here: install postgresql-15 or set POSTGRES_URL');
    const v = versions.out.split(/\s+/)[0] ?? '15';
    run('pg_ctlcluster', ['--skip-systemctl-redirect', v, 'main', 'start']);
    await waitFor(() => probePostgres(adminUrl), 30_000);
  }
  // The application database (tests make their own schemas inside it).
  const dbName = decodeURIComponent(new URL(url).pathname.slice(1)) || 'postgres';
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    const exists = await admin.query('select 1 from pg_database where datname = $1', [dbName]);
    if (exists.rowCount === 0) await admin.query(`create database "${dbName.replace(/"/g, '""')}"`);
  } finally {
    await admin.end();
  }
  return probePostgres(url);
}

async function ensureRedis(): Promise<string> {
  try {
    return await probeRedis(urls.redis);
  } catch (err) {
    if (process.env.REDIS_URL && !isLocal(urls.redis)) throw err;
    const r = run('redis-server', [
      '--daemonize',
      'yes',
      '--bind',
      '127.0.0.1',
      '-::1',
      '--port',
      '6379',
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      '/var/lib/redis',
      '--logfile',
      '/var/log/redis/ci.log',
    ]);
    if (!r.ok)
      throw new Error(
        `Redis is down and could not be started (${r.out}): install redis-server or set REDIS_URL`,
      );
    return waitFor(() => probeRedis(urls.redis), 20_000);
  }
}

async function ensureRabbit(): Promise<string> {
  try {
    return await probeAmqp(urls.amqp);
  } catch (err) {
    if (process.env.AMQP_URL && !isLocal(urls.amqp)) throw err;
    const r = run('rabbitmq-server', ['-detached']);
    if (!r.ok && !/already running/i.test(r.out)) {
      throw new Error(
        `RabbitMQ is down and could not be started (${r.out}): install rabbitmq-server or set AMQP_URL`,
      );
    }
    return waitFor(() => probeAmqp(urls.amqp), 90_000);
  }
}

function ferretSourceHash(dir: string): string {
  const h = createHash('sha256');
  for (const f of ['main.go', 'go.mod', 'go.sum']) h.update(readFileSync(join(dir, f)));
  return h.digest('hex').slice(0, 16);
}

function buildFerret(): string {
  const src = join(root, 'scripts', 'ferretdb');
  const bin = join(cacheDir, `ferretdb-${ferretSourceHash(src)}`);
  if (existsSync(bin)) return bin;
  if (!run('go', ['version']).ok) {
    throw new Error(
      'the FerretDB wrapper needs Go (install golang from https://go.dev or Debian) or set MONGO_URL to a MongoDB 6/7',
    );
  }
  mkdirSync(cacheDir, { recursive: true });
  process.stdout.write('mongo     building the FerretDB 1.24.2 wrapper (first run only)...\n');
  const r = spawnSync('go', ['build', '-o', bin, '.'], {
    cwd: src,
    encoding: 'utf8',
    env: { ...process.env, CGO_ENABLED: '0' },
  });
  if (r.status !== 0)
    throw new Error(`go build of scripts/ferretdb failed: ${(r.stderr ?? '').trim().slice(-2000)}`);
  return bin;
}

async function ensureMongo(): Promise<string> {
  try {
    return await probeMongo(urls.mongo);
  } catch (err) {
    // Only a loopback URL is ours to start; anything else must already answer.
    if (!isLocal(urls.mongo)) throw err;
  }
  const listen = `127.0.0.1:${new URL(urls.mongo).port || '27017'}`;
  const handler = process.env.FERRETDB_HANDLER ?? 'postgresql';
  const bin = buildFerret();
  mkdirSync(runDir, { recursive: true });
  const args = ['--listen-addr', listen, '--handler', handler];
  if (handler === 'postgresql') {
    const u = new URL(urls.postgres);
    u.pathname = '/ferretdb';
    const created = run('createdb', [
      '-h',
      u.hostname,
      '-p',
      u.port || '5432',
      '-U',
      decodeURIComponent(u.username || 'postgres'),
      '-T',
      'template0',
      '-E',
      'UTF8',
      '--locale=C',
      'ferretdb',
    ]);
    if (!created.ok && !/already exists/.test(created.out))
      throw new Error(`createdb ferretdb failed: ${created.out}`);
    args.push('--postgresql-url', u.toString());
  } else {
    const dataDir = join(runDir, 'ferretdb-sqlite');
    mkdirSync(dataDir, { recursive: true });
    args.push('--sqlite-url', `file:${dataDir}/`);
  }
  const log = openSync(join(runDir, 'ferretdb.log'), 'a');
  const child = spawn(bin, args, { detached: true, stdio: ['ignore', log, log] });
  child.unref();
  writeFileSync(join(runDir, 'ferretdb.pid'), `${child.pid}\n`);
  return waitFor(() => probeMongo(urls.mongo), 30_000);
}

const stores: Array<[string, () => Promise<string>, string]> = [
  ['postgres', ensurePostgres, urls.postgres],
  ['redis', ensureRedis, urls.redis],
  ['rabbitmq', ensureRabbit, urls.amqp],
  ['mongo', ensureMongo, urls.mongo],
];

// A local IPFS node (Kubo) only when asked: `IPFS=1 npm run services` or `npm run services -- --ipfs`. The
// binary is built every time (a no-op once cached): the IPFS tests start nodes of their own from it, and a
// build inside a test worker would block it for minutes.
if (process.env.IPFS === '1' || process.argv.includes('--ipfs')) {
  const ipfsUrl = process.env.IPFS_API_URL ?? 'http://127.0.0.1:5001';
  stores.push(['ipfs', () => ensureKubo(ipfsUrl, (l) => process.stdout.write(`${l}\n`)), ipfsUrl]);
} else
  stores.push([
    'kubo',
    async () => `built (no node started): ${buildKubo((l) => process.stdout.write(`${l}\n`))}`,
    'scripts/kubo',
  ]);

let failed = 0;
for (const [name, ensure, url] of stores) {
  try {
    const version = await ensure();
    process.stdout.write(`${name.padEnd(9)} ok    ${version} at ${url.replace(/\/\/[^@/]*@/, '//***@')}\n`);
  } catch (err) {
    failed += 1;
    process.stdout.write(`${name.padEnd(9)} FAIL  ${err instanceof Error ? err.message : String(err)}\n`);
  }
}
process.exit(failed === 0 ? 0 : 1);
