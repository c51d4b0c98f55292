// Which MongoDB driver errors are outages (retried, never poison): one case per driver error class, built
// from the real classes of the `mongodb` package, plus the bulk-write wrapping that hid ECONNREFUSED.
import {
  MongoBulkWriteError,
  MongoClientClosedError,
  MongoNetworkError,
  MongoNetworkTimeoutError,
  MongoNotConnectedError,
  MongoOperationTimeoutError,
  MongoServerClosedError,
  MongoServerError,
  MongoServerSelectionError,
  MongoTopologyClosedError,
  MongoWriteConcernError,
  type BulkWriteResult,
} from 'mongodb';
import { describe, expect, it } from 'vitest';
import { isAppError } from '../../platform/errors.js';
import { isTransientStoreError } from '../../modules/records/record-stream.errors.js';
import { isMongoOutage, translateMongoError } from './bulk.js';

const result = { insertedCount: 0 } as unknown as BulkWriteResult;
const server = (code: number, errmsg: string) => new MongoServerError({ code, errmsg, ok: 0 });
const selectionReason = { type: 'Unknown', servers: new Map(), error: undefined } as never;

const outages: Array<[string, () => unknown]> = [
  [
    'MongoNetworkError (connect ECONNREFUSED)',
    () => new MongoNetworkError('connect ECONNREFUSED 127.0.0.1:27017'),
  ],
  ['MongoNetworkError (connection reset)', () => new MongoNetworkError('read ECONNRESET')],
  [
    'MongoNetworkTimeoutError',
    () => new MongoNetworkTimeoutError('connection 3 to 127.0.0.1:27017 timed out'),
  ],
  [
    'MongoServerSelectionError',
    () => new MongoServerSelectionError('Server selection timed out after 5000 ms', selectionReason),
  ],
  ['MongoTopologyClosedError', () => new MongoTopologyClosedError()],
  ['MongoServerClosedError', () => new MongoServerClosedError()],
  ['MongoClientClosedError', () => new MongoClientClosedError()],
  ['MongoNotConnectedError', () => new MongoNotConnectedError('client must be connected')],
  ['MongoOperationTimeoutError', () => new MongoOperationTimeoutError('timed out')],
  [
    'MongoWriteConcernError',
    () => new MongoWriteConcernError({ writeConcernError: { code: 64, errmsg: 'wtimeout' } } as never),
  ],
  ['not primary (10107)', () => server(10107, 'not primary')],
  ['shutdown in progress (91)', () => server(91, 'shutdown in progress')],
  ['interrupted at shutdown (11600)', () => server(11600, 'interrupted at shutdown')],
  ['primary stepped down (189)', () => server(189, 'stepped down')],
  ['host unreachable (6)', () => server(6, 'host unreachable')],
  ['max time expired (50)', () => server(50, 'operation exceeded time limit')],
  ['write conflict (112)', () => server(112, 'WriteConflict error')],
  ['socket exception (9001)', () => server(9001, 'socket exception')],
  [
    'bulk write wrapping ECONNREFUSED',
    () => new MongoBulkWriteError(new MongoNetworkError('connect ECONNREFUSED 127.0.0.1:27017'), result),
  ],
  [
    'bulk write wrapping a closed topology',
    () => new MongoBulkWriteError(new MongoTopologyClosedError(), result),
  ],
  [
    'bulk write wrapping a selection timeout',
    () =>
      new MongoBulkWriteError(
        new MongoServerSelectionError('Server selection timed out after 5000 ms', selectionReason),
        result,
      ),
  ],
  ['node socket error', () => Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })],
];

const poison: Array<[string, () => unknown]> = [
  [
    'nested arrays refused (2)',
    () => server(2, 'invalid value: { "a": [ [ 1 ] ] } (nested arrays are not supported)'),
  ],
  [
    'unsupported Unicode escape (1)',
    () => server(1, 'ERROR: unsupported Unicode escape sequence (SQLSTATE 22P05)'),
  ],
  [
    'bulk write with a per-document error',
    () =>
      new MongoBulkWriteError(
        {
          message: 'invalid key',
          code: 2,
          writeErrors: [{ index: 0, code: 2, errmsg: 'invalid key: "a.b"' }],
        } as never,
        result,
      ),
  ],
  ['a bug', () => new TypeError('cannot read properties of undefined')],
];

describe('MongoDB error classification', () => {
  it.each(outages)('%s is an outage: store_unavailable, transient, never a strike', (_name, make) => {
    const err = make();
    expect(isMongoOutage(err)).toBe(true);
    const translated = translateMongoError(err);
    expect(isAppError(translated, 'store_unavailable')).toBe(true);
    expect(isTransientStoreError(err)).toBe(true);
    expect(isTransientStoreError(translated)).toBe(true);
  });

  it.each(poison)('%s is not an outage', (_name, make) => {
    const err = make();
    expect(isMongoOutage(err)).toBe(false);
    expect(isTransientStoreError(translateMongoError(err))).toBe(false);
  });
});
