#!/usr/bin/env node
// Standalone snapshot verifier (format version 2), written from docs/snapshot-format.md alone: depends only on @ipld/car, @ipld/dag-cbor,
// multiformats and node:crypto (never on the project's modules). Prints one JSON line; exit 0 ok, 3 tampered, 2 usage.
//   node tools/verify-snapshot.mjs <file.car> --cid <cid> [--checkpoints <checkpoints.jsonl> --key <hex public key>]
//     [--export <record export file> ...]   (each must be listed, by its file DAG CID, in the record_exports section)
import { createHash, createPublicKey, verify as verifySig } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { CarReader } from '@ipld/car';
import * as dagCbor from '@ipld/dag-cbor';
import { CID } from 'multiformats/cid';
import * as Digest from 'multiformats/hashes/digest';

class Bad extends Error {}
const sha256 = (...parts) => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};
const hex = (b) => Buffer.from(b).toString('hex');
const leafHash = (bytes) => sha256(Uint8Array.of(0), bytes);
const nodeHash = (l, r) => sha256(Uint8Array.of(1), l, r);

/** RFC 6962 MTH over leaf hashes. */
function merkleRoot(leaves) {
  if (leaves.length === 0) return sha256();
  if (leaves.length === 1) return leaves[0];
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return nodeHash(merkleRoot(leaves.slice(0, k)), merkleRoot(leaves.slice(k)));
}

async function loadCar(path, cid) {
  const bytes = await readFile(path);
  let reader;
  try {
    reader = await CarReader.fromBytes(bytes);
  } catch (e) {
    throw new Bad(`not a CAR file: ${e.message}`);
  }
  const roots = await reader.getRoots();
  if (roots.length !== 1) throw new Bad(`expected one root, found ${roots.length}`);
  if (roots[0].toString() !== cid) throw new Bad(`root ${roots[0]} is not the pinned CID ${cid}`);
  const blocks = new Map();
  let i = 0;
  for await (const b of reader.blocks()) {
    if (b.cid.multihash.code !== 0x12 || b.cid.code !== dagCbor.code)
      throw new Bad(`block ${i} ${b.cid}: not dag-cbor/sha2-256`);
    if (!sha256(b.bytes).equals(Buffer.from(b.cid.multihash.digest)))
      throw new Bad(`bad block ${b.cid} (block ${i})`);
    blocks.set(b.cid.toString(), b.bytes);
    i += 1;
  }
  const raw = (c, what) => {
    const b = blocks.get(CID.asCID(c)?.toString() ?? '');
    if (!b) throw new Bad(`missing block ${c} (${what})`);
    return b;
  };
  return { raw, get: (c, what) => dagCbor.decode(raw(c, what)), root: roots[0] };
}

const big = (v) => (v === null || v === undefined ? 0n : BigInt(v));

function verifySnapshot(car) {
  const m = car.get(car.root, 'manifest');
  if (m.version !== 2)
    throw new Bad(`snapshot format version ${m.version} is not supported (version 2 only)`);
  if (m.kind !== 'snapshot' && m.kind !== 'freeze') throw new Bad('root is not a snapshot manifest');
  const rows = {};
  for (const [name, link] of Object.entries(m.sections)) {
    const s = car.get(link, `section ${name}`);
    if (s.name !== name) throw new Bad(`section block of ${name} names ${s.name}`);
    if (!Buffer.from(s.root).equals(Buffer.from(m.roots[name])))
      throw new Bad(`section ${name}: root differs from the manifest`);
    // Leaves are the chunks: leaf hash = SHA-256 of the chunk block = its CID digest (checked in loadCar).
    const leaves = [];
    const list = [];
    for (const [i, c] of s.chunks.entries()) {
      const cid = CID.asCID(c);
      const bytes = car.raw(c, `chunk ${i} of ${name}`);
      if (bytes[0] < 0x80 || bytes[0] > 0x9b) throw new Bad(`chunk ${i} of ${name} is not an array`);
      const chunk = dagCbor.decode(bytes);
      if (chunk.length === 0 || !chunk.every(Array.isArray))
        throw new Bad(`chunk ${i} of ${name} is not a non-empty array of rows`);
      leaves.push(Buffer.from(cid.multihash.digest));
      for (const row of chunk) list.push(row);
    }
    if (Number(s.count) !== list.length)
      throw new Bad(`section ${name}: ${list.length} rows, block says ${s.count}`);
    if (!merkleRoot(leaves).equals(Buffer.from(s.root)))
      throw new Bad(`section ${name}: Merkle root mismatch`);
    rows[name] = list;
  }
  // Rollup periods: per day, the leaf hashes of its job rollup rows then its ledger rollup rows.
  if (rows.rollup_periods) {
    const byDay = new Map();
    for (const sec of ['job_rollups', 'ledger_rollups'])
      for (const r of rows[sec] ?? []) {
        if (!byDay.has(r[0])) byDay.set(r[0], { job_rollups: [], ledger_rollups: [] });
        byDay.get(r[0])[sec].push(leafHash(dagCbor.encode(r)));
      }
    for (const p of rows.rollup_periods) {
      const d = byDay.get(p[0]) ?? { job_rollups: [], ledger_rollups: [] };
      if (!merkleRoot([...d.job_rollups, ...d.ledger_rollups]).equals(Buffer.from(p[4])))
        throw new Bad(`rollup period ${p[0]}: hash mismatch`);
      byDay.delete(p[0]);
    }
    if (byDay.size > 0) throw new Bad(`rollup rows of ${[...byDay.keys()][0]} belong to no period`);
  }
  // Audit chain: hash = sha256(prev_hash || dag-cbor([seq, at, actor, action, target, body])).
  let prev = Buffer.alloc(32);
  let seq = 0n;
  for (const r of rows.audit_log ?? []) {
    if (big(r[0]) !== seq + 1n) throw new Bad(`audit entry ${r[0]} out of sequence`);
    if (!Buffer.from(r[6]).equals(prev)) throw new Bad(`audit entry ${r[0]} does not link`);
    const h = sha256(prev, dagCbor.encode([big(r[0]), big(r[1]), r[2], r[3], r[4], JSON.parse(r[5])]));
    if (!h.equals(Buffer.from(r[7]))) throw new Bad(`audit entry ${r[0]} altered`);
    prev = h;
    seq += 1n;
  }
  if (m.kind === 'snapshot') {
    const head = m.auditHead;
    if (
      (head === null) !== (seq === 0n) ||
      (head && (big(head.seq) !== seq || !Buffer.from(head.hash).equals(prev)))
    )
      throw new Bad('manifest audit head is not the last audit entry');
  }
  // Record exports (§13): each row names a file DAG root (CIDv1 dag-cbor/sha2-256) and a SHA-256.
  for (const r of rows.record_exports ?? []) {
    let cid;
    try {
      cid = CID.parse(r[4]);
    } catch {
      cid = undefined;
    }
    if (
      !cid ||
      cid.code !== dagCbor.code ||
      cid.multihash.code !== 0x12 ||
      !/^[0-9a-f]{64}$/.test(r[5] ?? '')
    )
      throw new Bad(`record export ${r[1]} of run ${r[0]}: bad CID or SHA-256`);
  }
  const ledger = checkBalances(rows, m);
  return { m, ledger, rows };
}

const FILE_CHUNK = 256 * 1024;
const RAW = 0x55;

/** The file DAG CID of a file (§13): raw leaves of 256 KiB, then a DAG-CBOR root {type, bytes, sha256, chunks}. */
function fileDagCid(bytes) {
  const chunks = [];
  for (let o = 0; o < bytes.length; o += FILE_CHUNK)
    chunks.push(CID.createV1(RAW, Digest.create(0x12, sha256(bytes.subarray(o, o + FILE_CHUNK)))));
  const root = dagCbor.encode({ type: 'rty-file/1', bytes: bytes.length, sha256: sha256(bytes), chunks });
  return CID.createV1(dagCbor.code, Digest.create(0x12, sha256(root))).toString();
}

/** Each export file must be listed in the snapshot's record_exports with its CID, SHA-256 and size. */
async function checkExports(files, rows, cid) {
  const out = [];
  for (const f of files) {
    const bytes = await readFile(f);
    const c = fileDagCid(bytes);
    const row = (rows.record_exports ?? []).find((r) => r[4] === c);
    if (!row) throw new Bad(`record export ${f} (CID ${c}) is not referenced by snapshot ${cid}`);
    if (row[5] !== hex(sha256(bytes)) || (row[6] !== null && big(row[6]) !== BigInt(bytes.length)))
      throw new Bad(`record export ${f} (CID ${c}) differs from its reference`);
    out.push({ file: row[1], run: row[0], cid: c });
  }
  return out;
}

function checkBalances(rows, m) {
  const add = new Set(['topup', 'bonus', 'release', 'void', 'hold_expire']);
  const take = new Set(['reserve', 'bonus_expire', 'storage_charge']);
  const close = new Set(['settle', 'release', 'void', 'hold_expire']);
  const ns = new Map();
  const nodes = new Map();
  const t = {
    entries: 0n,
    lastEntryId: 0n,
    available: 0n,
    reserved: 0n,
    bonusAvailable: 0n,
    earned: 0n,
    paidOut: 0n,
    pendingHolds: 0n,
    pendingHeld: 0n,
  };
  const slot = (map, k) => map.get(k) ?? map.set(k, { a: 0n, r: 0n }).get(k);
  for (const e of rows.ledger_entries ?? []) {
    const [id, kind, n, node] = e;
    const amt = big(e[5]);
    t.entries += 1n;
    if (big(id) > t.lastEntryId) t.lastEntryId = big(id);
    if (n !== null) {
      const d = slot(ns, n);
      if (add.has(kind)) d.a += amt;
      if (take.has(kind)) d.a -= amt;
      if (kind === 'reserve') d.r += amt;
      if (close.has(kind)) d.r -= amt;
    }
    if (node !== null) {
      const d = slot(nodes, node);
      if (kind === 'earning') d.a += amt;
      if (kind === 'payout') d.r += amt;
    }
  }
  const pending = new Map();
  for (const h of rows.credit_holds ?? [])
    if (h[4] === 'pending') {
      pending.set(h[1], (pending.get(h[1]) ?? 0n) + big(h[2]));
      t.pendingHolds += 1n;
      t.pendingHeld += big(h[2]);
    }
  const hasEntries = 'ledger_entries' in rows;
  for (const b of rows.credit_balances ?? []) {
    t.available += big(b[1]);
    t.reserved += big(b[2]);
    t.bonusAvailable += big(b[3]);
    const d = ns.get(b[0]) ?? { a: 0n, r: 0n };
    if (hasEntries && (d.a !== big(b[1]) || d.r !== big(b[2])))
      throw new Bad(`balance of namespace ${b[0]} differs from its entries`);
    if ('credit_holds' in rows && (pending.get(b[0]) ?? 0n) !== big(b[2]))
      throw new Bad(`reserved of namespace ${b[0]} differs from its pending holds`);
    ns.delete(b[0]);
  }
  if (hasEntries && 'credit_balances' in rows)
    for (const [k, d] of ns)
      if (d.a !== 0n || d.r !== 0n) throw new Bad(`namespace ${k} has entries but no balance`);
  for (const b of rows.node_balances ?? []) {
    t.earned += big(b[1]);
    t.paidOut += big(b[2]);
    const d = nodes.get(b[0]) ?? { a: 0n, r: 0n };
    if (hasEntries && (d.a !== big(b[1]) || d.r !== big(b[2])))
      throw new Bad(`balance of node ${b[0]} differs from its entries`);
  }
  if (m.kind === 'snapshot') {
    const cfg = (rows.network_config_versions ?? []).at(-1);
    if (
      (m.network?.configVersion ?? null) !== (cfg ? Number(cfg[0]) : null) ||
      (m.network?.configDigest ?? null) !== (cfg?.[1] ?? null)
    )
      throw new Bad('manifest config is not the last config version');
    const days = (rows.rollup_periods ?? []).map((p) => p[0]);
    const range = m.rollupRange ?? null;
    if ((range?.from ?? null) !== (days[0] ?? null) || (range?.to ?? null) !== (days.at(-1) ?? null))
      throw new Bad('manifest rollup range differs from its periods');
  }
  const totals = Object.fromEntries(Object.entries(t).map(([k, v]) => [k, v.toString()]));
  if (m.ledger && hasEntries)
    for (const [k, v] of Object.entries(totals))
      if (m.ledger[k] !== v) throw new Bad(`manifest ledger total ${k} differs`);
  return totals;
}

function checkSignature(s, key) {
  const pub = Buffer.from(key, 'hex');
  const k = createPublicKey({
    key: {
      kty: 'EC',
      crv: 'secp256k1',
      x: pub.subarray(1, 33).toString('base64url'),
      y: pub.subarray(33).toString('base64url'),
    },
    format: 'jwk',
  });
  return (
    s.checkpoint.key === key &&
    verifySig(
      'sha256',
      dagCbor.encode(s.checkpoint),
      { key: k, dsaEncoding: 'ieee-p1363' },
      Buffer.from(s.signature, 'hex'),
    )
  );
}

async function checkCheckpoints(file, key, cid, m, ledger) {
  const lines = (await readFile(file, 'utf8')).split('\n');
  // An unterminated last line is an append torn by a crash (never published): skipped.
  if (lines.pop()) process.stderr.write('warning: skipped a torn last line of the checkpoint log\n');
  const log = lines.filter(Boolean).map((l) => JSON.parse(l));
  let prevHash = null;
  let prevCid = null;
  let mine;
  for (const [i, s] of log.entries()) {
    const c = s.checkpoint;
    if (c.type !== 'rty-snapshot-checkpoint/1' || !checkSignature(s, key))
      throw new Bad(`checkpoint ${i + 1} is not signed by the key`);
    if (c.seq !== i + 1 || c.prevCheckpoint !== prevHash || c.prev !== prevCid)
      throw new Bad(`checkpoint ${i + 1} does not link`);
    prevHash = hex(sha256(dagCbor.encode(c)));
    prevCid = c.cid;
    if (c.cid === cid) mine = c;
  }
  if (!mine) throw new Bad(`no checkpoint names ${cid}`);
  const roots = Object.fromEntries(Object.entries(m.roots).map(([k, v]) => [k, hex(v)]));
  const head = m.auditHead ? { seq: Number(m.auditHead.seq), hash: hex(m.auditHead.hash) } : null;
  const same = (a, b) =>
    JSON.stringify(Object.entries(a).sort()) === JSON.stringify(Object.entries(b).sort());
  if (
    mine.seq !== Number(m.seq) ||
    mine.prev !== (m.prev ? m.prev.toString() : null) ||
    mine.createdAt !== m.createdAt ||
    !same(mine.roots, roots) ||
    JSON.stringify(mine.auditHead) !== JSON.stringify(head) ||
    !same(mine.ledger, ledger)
  )
    throw new Bad(`snapshot ${cid} differs from its checkpoint`);
  return mine.seq;
}

async function main(argv) {
  const args = { file: undefined, cid: undefined, checkpoints: undefined, key: undefined, exports: [] };
  for (let i = 0; i < argv.length; i += 1) {
    const a = argv[i];
    if (a === '--cid' || a === '--checkpoints' || a === '--key') args[a.slice(2)] = argv[++i];
    else if (a === '--export') args.exports.push(argv[++i]);
    else args.file = a;
  }
  if (!args.file || !args.cid || !args.checkpoints !== !args.key) {
    process.stdout.write(
      `${JSON.stringify({ ok: false, usage: 'verify-snapshot.mjs <file.car> --cid <cid> [--checkpoints <log> --key <hex>] [--export <file> ...]' })}\n`,
    );
    return 2;
  }
  try {
    const car = await loadCar(args.file, args.cid);
    const { m, ledger, rows } = verifySnapshot(car);
    const checkpoint = args.checkpoints
      ? await checkCheckpoints(args.checkpoints, args.key, args.cid, m, ledger)
      : null;
    const exports = await checkExports(args.exports, rows, args.cid);
    process.stdout.write(`${JSON.stringify({ ok: true, cid: args.cid, seq: m.seq, checkpoint, exports })}\n`);
    return 0;
  } catch (e) {
    if (!(e instanceof Bad)) throw e;
    process.stdout.write(`${JSON.stringify({ ok: false, cid: args.cid, error: e.message })}\n`);
    return 3;
  }
}

process.exitCode = await main(process.argv.slice(2));
