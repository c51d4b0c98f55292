// Pure rules of live state: heartbeat contract, cells, GPU classes, scores, model and flag encodings.
import { describe, expect, it } from 'vitest';
import {
  baseScoreOf,
  cellOf,
  cellOrder,
  encodeActiveModels,
  encodeFlags,
  gpuClassOf,
  heartbeatSchema,
} from './node-status.js';

const valid = {
  version: 1,
  address: `0x${'ab'.repeat(20)}`,
  timestampMs: 1_700_000_000_000,
  environment: 'mainnet',
  gpu: { model: 'A100', memoryMb: 81_920 },
  models: [{ name: 'llama3:8b', version: 'q4_K_M', active: true }],
  capacity: 2,
};

describe('heartbeat contract', () => {
  it('accepts a minimal heartbeat and fills defaults', () => {
    const hb = heartbeatSchema.parse(valid);
    expect(hb).toMatchObject({ health: 'ok', load: 0, quality: 1, latencyMs: 0, gpu: { count: 1 } });
  });

  it.each([
    ['upper-case address', { address: `0x${'AB'.repeat(20)}` }],
    ['capacity 0', { capacity: 0 }],
    ['unknown environment', { environment: 'devnet' }],
    ['a comma in a model name', { models: [{ name: 'a,b', version: 'v1', active: true }] }],
    ['an equals sign in a version', { models: [{ name: 'a', version: 'v=1', active: true }] }],
    ['a pipe in a region', { region: 'eu|x' }],
    ['quality above 1', { quality: 1.5 }],
    ['another contract version', { version: 2 }],
  ])('refuses %s', (_label, over) => {
    expect(heartbeatSchema.safeParse({ ...valid, ...over }).success).toBe(false);
  });
});

describe('cells', () => {
  it('is stable, within range, and spreads addresses', () => {
    const addrs = Array.from({ length: 4_000 }, (_, i) => `0x${i.toString(16).padStart(40, '0')}`);
    const counts = new Array(8).fill(0);
    for (const a of addrs) {
      const c = cellOf(a, 8);
      expect(cellOf(a, 8)).toBe(c);
      counts[c] += 1;
    }
    expect(Math.min(...counts)).toBeGreaterThan(400);
    expect(cellOf(addrs[7]!, 1)).toBe(0);
  });

  it('orders every cell once, starting at a job-dependent cell', () => {
    const order = cellOrder('job-1', 5);
    expect([...order].sort()).toEqual([0, 1, 2, 3, 4]);
    const starts = new Set(Array.from({ length: 50 }, (_, i) => cellOrder(`job-${i}`, 5)[0]));
    expect(starts.size).toBeGreaterThan(1);
  });
});

describe('scores and encodings', () => {
  it('takes only reported load and health from the heartbeat; self-reported quality and latency do not count', () => {
    const base = { load: 0, capacity: 4, health: 'ok' as const };
    expect(baseScoreOf(base)).toBe(0);
    const claims = { ...base, quality: 1, latencyMs: 0 };
    expect(baseScoreOf(claims)).toBe(
      baseScoreOf({ ...base, quality: 0, latencyMs: 60_000 } as typeof claims),
    );
    expect(baseScoreOf({ ...base, load: 2 })).toBe(baseScoreOf(base) - 500);
    expect(baseScoreOf({ ...base, health: 'degraded' })).toBe(baseScoreOf(base) - 2_000);
  });

  it('classifies GPUs by memory', () => {
    expect([8_192, 16_384, 24_576, 49_152, 81_920].map(gpuClassOf)).toEqual([
      'xs',
      's16',
      'm24',
      'l48',
      'xl80',
    ]);
  });

  it('encodes only active models, once each', () => {
    expect(
      encodeActiveModels([
        { name: 'a', version: '1', active: true },
        { name: 'b', version: '2', active: false },
        { name: 'a', version: '3', active: true },
        { name: 'c', version: '4', active: true },
      ]),
    ).toBe('a=1,c=4');
  });

  it('encodes flags in force, dropping ended cooldowns', () => {
    const now = new Date(1_000_000);
    expect(
      encodeFlags(
        [
          { flag: 'pause', expiresAt: new Date(2_000_000) },
          { flag: 'freeze', expiresAt: null },
          { flag: 'shadow_ban', expiresAt: new Date(999_999) },
        ],
        now,
      ),
    ).toBe('pause=2000000,freeze=0');
  });
});
