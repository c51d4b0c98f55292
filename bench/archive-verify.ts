// Streaming verify of a large CAR (default ≥ 500 MB): a consistent snapshot of ledger entries and balances is written
// straight to a file (no database), then verified pinned by CID in a child process whose peak RSS is reported.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CarFileWriter } from '../src/modules/snapshots/car-io.js';
import { snapshotSections } from '../src/modules/canonical/sections.js';
import { finishWithManifest, writeSection } from '../src/modules/snapshots/snapshot-builder.js';
import { encodeRow } from '../src/modules/canonical/table-codec.js';

const spec = (n: string) => snapshotSections.find((s) => s.name === n)!;

/** Writes a snapshot of about `targetMb` MB; returns its path and CID. */
export async function writeLargeCar(dir: string, targetMb: number): Promise<{ path: string; cid: string }> {
  const path = join(dir, 'large.car');
  const car = CarFileWriter.create(path);
  const namespaces = 10_000;
  const ns = (i: number) => `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;
  const sums = new Array<bigint>(namespaces).fill(0n);
  const target = targetMb * 1024 * 1024;
  let entries = 0n;
  let id = 0n;
  async function* ledgerRows() {
    const t0 = 1_767_225_600_000_000n;
    while (car.bytes < target) {
      id += 1n;
      const n = Number(id % BigInt(namespaces));
      const amount = 1000n + (id % 977n);
      sums[n]! += amount;
      entries += 1n;
      yield encodeRow([id, 'topup', ns(n), null, null, amount, `topup:large:${id}`, null, t0 + id]);
    }
  }
  const sections = [];
  const entriesSection = await writeSection(
    car,
    'ledger_entries',
    spec('ledger_entries').columns,
    ledgerRows(),
    {
      rows: 4096,
      bytes: 512 * 1024,
    },
  );
  let total = 0n;
  async function* balances() {
    for (let i = 0; i < namespaces; i += 1) {
      total += sums[i]!;
      yield encodeRow([ns(i), sums[i]!, 0n, 0n, 0n]);
    }
  }
  // Namespace ids sort as their zero-padded hex: the balance rows are in key order.
  sections.push(
    await writeSection(car, 'credit_balances', spec('credit_balances').columns, balances(), {
      rows: 4096,
      bytes: 512 * 1024,
    }),
  );
  sections.push(entriesSection);
  const { cid } = await finishWithManifest(
    car,
    {
      kind: 'snapshot',
      seq: 1,
      prev: null,
      createdAt: new Date().toISOString(),
      network: { configVersion: null, configDigest: null },
      rollupRange: null,
      auditHead: null,
      ledger: {
        entries: entries.toString(),
        lastEntryId: id.toString(),
        available: total.toString(),
        reserved: '0',
        bonusAvailable: '0',
        earned: '0',
        paidOut: '0',
        pendingHolds: '0',
        pendingHeld: '0',
      },
      origin: null,
    },
    sections,
  );
  return { path, cid: cid.toString() };
}

/** The raw ceiling of a streaming verify: one sequential read of the file through SHA-256, in this process. */
async function rawHashMbPerS(path: string, mb: number): Promise<number> {
  const t0 = performance.now();
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  h.digest();
  return mb / ((performance.now() - t0) / 1000);
}

export async function benchStreamingVerify(targetMb: number): Promise<{
  mb: number;
  writeS: number;
  verifyS: number;
  verifyMbPerS: number;
  verifyRssMb: number;
  cpuMsPerMb: number;
  rawHashMbPerS: number;
}> {
  const dir = await mkdtemp(join(tmpdir(), 'rty-bench-car-'));
  try {
    let t0 = performance.now();
    const { path, cid } = await writeLargeCar(dir, targetMb);
    const writeS = (performance.now() - t0) / 1000;
    const mb = (await stat(path)).size / 1048576;
    t0 = performance.now();
    const child = join(import.meta.dirname, 'archive-verify.child.ts');
    const r = await promisify(execFile)(process.execPath, ['--import', 'tsx', child, path, cid], {
      maxBuffer: 1 << 20,
    });
    const verifyS = (performance.now() - t0) / 1000;
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as {
      ok: boolean;
      maxRssMb: number;
      secs: number;
      cpuMs: number;
    };
    if (!out.ok) throw new Error(`streaming verify failed: ${r.stdout}`);
    void verifyS;
    return {
      mb,
      writeS,
      verifyS: out.secs,
      verifyMbPerS: mb / out.secs,
      verifyRssMb: out.maxRssMb,
      cpuMsPerMb: out.cpuMs / mb,
      rawHashMbPerS: await rawHashMbPerS(path, mb),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
