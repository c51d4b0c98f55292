// The canonical encoding of archived rows (public face): the table specs (column order and types), the
// deterministic CBOR row encoding, Merkle trees and the rollup period hash. Rollups hash with it and snapshots
// archive with it, so neither imports the other for it.
export { periodHash } from './period-hash.js';
export {
  encodeRow,
  insertSql,
  restoreParams,
  rowValues,
  selectSql,
  type CellValue,
  type Column,
  type ColumnType,
  type TableSpec,
} from './table-codec.js';
export { encodeRowFast, RowEncoder, type RowValue } from './row-encoder.js';
export {
  activeJobsSpec,
  balancesSpec,
  jobRollupsSpec,
  ledgerRollupsSpec,
  rollupPeriodsSpec,
  snapshotSections,
} from './sections.js';
export {
  EMPTY_ROOT,
  LeafHashes,
  StreamingMerkle,
  auditPath,
  chunkLeafHash,
  isArrayHead,
  leafHash,
  merkleRoot,
  nodeHash,
  rootFromPath,
  sha256,
  verifyInclusion,
} from './merkle.js';
