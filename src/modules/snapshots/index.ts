// Public face of the snapshots module: canonical encoding, Merkle proofs, CAR snapshots, freeze and restore.
export { periodHash } from './period-hash.js';
export { encodeRow, rowValues, selectSql, type TableSpec } from './table-codec.js';
export { jobRollupsSpec, ledgerRollupsSpec } from './sections.js';
export { leafHash, merkleRoot, verifyInclusion } from './merkle.js';
