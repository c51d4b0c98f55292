// Benchmark helpers that read the machine: CPU time of process trees from /proc, the store servers' PIDs
// (PostgreSQL backends by application name, Redis, RabbitMQ, FerretDB), and per-window counters of the stores.
import { execFile } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { promisify } from 'node:util';
import type pg from 'pg';

const CLK_TCK = 100;
const run = promisify(execFile);

interface ProcInfo {
  pid: number;
  ppid: number;
  comm: string;
  cpuMs: number;
}

export function readProcs(): Map<number, ProcInfo> {
  const out = new Map<number, ProcInfo>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const s = readFileSync(`/proc/${d}/stat`, 'utf8');
      const close = s.lastIndexOf(')');
      const comm = s.slice(s.indexOf('(') + 1, close);
      const f = s.slice(close + 2).split(' ');
      // Fields after the comm: state(0) ppid(1) ... utime(11) stime(12).
      out.set(Number(d), {
        pid: Number(d),
        ppid: Number(f[1]),
        comm,
        cpuMs: ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK,
      });
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** The PIDs of a process and all its descendants. */
export function tree(procs: Map<number, ProcInfo>, root: number): number[] {
  const kids = new Map<number, number[]>();
  for (const p of procs.values()) kids.set(p.ppid, [...(kids.get(p.ppid) ?? []), p.pid]);
  const out: number[] = [];
  const stack = [root];
  while (stack.length) {
    const p = stack.pop()!;
    if (!procs.has(p)) continue;
    out.push(p);
    stack.push(...(kids.get(p) ?? []));
  }
  return out;
}

export const byComm = (procs: Map<number, ProcInfo>, re: RegExp): number[] =>
  [...procs.values()].filter((p) => re.test(p.comm)).map((p) => p.pid);

/** PostgreSQL processes charged to the run: its client backends (by application name) and the server's
 *  background processes (WAL writer, checkpointer, …: shared with whatever else runs on the server). */
export async function pgPids(
  pool: pg.Pool,
  appNames: string[],
): Promise<{ own: number[]; shared: number[] }> {
  const r = await pool.query<{ pid: number; backend_type: string; application_name: string }>(
    'select pid, backend_type, application_name from pg_stat_activity',
  );
  return {
    own: r.rows.filter((x) => appNames.some((a) => x.application_name.startsWith(a))).map((x) => x.pid),
    shared: r.rows.filter((x) => x.backend_type !== 'client backend').map((x) => x.pid),
  };
}

export type CpuGroups = Record<string, number[]>;

/** CPU ms per group, summed over its PIDs (a PID missing at the start counts from 0). */
export function cpuOf(procs: Map<number, ProcInfo>, groups: CpuGroups): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [g, pids] of Object.entries(groups))
    out[g] = pids.reduce((s, p) => s + (procs.get(p)?.cpuMs ?? 0), 0);
  return out;
}

export function cpuDelta(
  before: Map<number, ProcInfo>,
  after: Map<number, ProcInfo>,
  groups: CpuGroups,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [g, pids] of Object.entries(groups))
    out[g] = pids.reduce(
      (s, p) => s + Math.max(0, (after.get(p)?.cpuMs ?? 0) - (before.get(p)?.cpuMs ?? 0)),
      0,
    );
  return out;
}

/** Redis INFO commandstats: calls per command. */
export function commandStats(info: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out.set(m[1]!, Number(m[2]));
  return out;
}

/** Messages the broker received from publishers, all vhosts (rabbitmqctl eval of the global counters). */
export async function amqpPublished(): Promise<number> {
  try {
    const { stdout } = await run('rabbitmqctl', ['-q', 'eval', 'rabbit_global_counters:overview().'], {
      timeout: 20_000,
    });
    return Number(/messages_received_total => (\d+)/.exec(stdout)?.[1] ?? NaN);
  } catch {
    return NaN;
  }
}

/** Row operations and scans on one schema's tables, and the database's commits (shared with other users). */
export async function pgCounters(
  pool: pg.Pool,
  schema: string,
): Promise<{ tupWrites: number; scans: number; commits: number }> {
  await pool.query('select pg_stat_clear_snapshot()');
  const t = await pool.query<{ w: string; s: string }>(
    `select coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) as w,
            coalesce(sum(coalesce(seq_scan, 0) + coalesce(idx_scan, 0)), 0) as s
       from pg_stat_user_tables where schemaname = $1`,
    [schema],
  );
  const d = await pool.query<{ c: string }>(
    'select xact_commit as c from pg_stat_database where datname = current_database()',
  );
  return { tupWrites: Number(t.rows[0]!.w), scans: Number(t.rows[0]!.s), commits: Number(d.rows[0]!.c) };
}
