// Child of bench/archive-verify.ts: verifies one CAR file pinned by CID with the streaming verifier, prints its time,
// its CPU time (from /proc) and this process's peak RSS (so that generating the file is not counted).
import { verifySnapshotFile } from '../src/modules/snapshots/index.js';
import { readProcs } from './proc.js';

const [path, cid] = process.argv.slice(2);
const cpu0 = readProcs().get(process.pid)?.cpuMs ?? NaN;
const t0 = performance.now();
const report = await verifySnapshotFile(path!, { expectedCid: cid });
const secs = (performance.now() - t0) / 1000;
const cpuMs = (readProcs().get(process.pid)?.cpuMs ?? NaN) - cpu0;
console.log(
  JSON.stringify({
    ok: report.cid === cid,
    secs,
    cpuMs,
    maxRssMb: Math.round(process.resourceUsage().maxRSS / 1024),
    blocks: report.blocks,
  }),
);
