// The shared vocabulary: valid and invalid cases of each definition, and a guard that fails when a copy of one
// of them (a literal list, a pattern, an address lower-casing) appears in src/ outside vocabulary.ts.
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  addressSchema,
  DEFAULT_PRIORITY_CLASS,
  ENVIRONMENTS,
  environmentSchema,
  isAddress,
  isEnvironment,
  isJobId,
  isPriorityClass,
  isUuid,
  jobIdSchema,
  normalizeAddress,
  PRIORITY_CLASSES,
  priorityClassSchema,
  uuidSchema,
} from './vocabulary.js';

const lowerUuid = '0f8fad5b-d9cb-469f-a165-70867728950e';
const address = `0x${'ab'.repeat(20)}`;
const checksummed = '0x52908400098527886E0F7030069857D2E4169EE7';

describe('vocabulary', () => {
  it('environments: testnet and mainnet, nothing else', () => {
    expect(ENVIRONMENTS).toEqual(['testnet', 'mainnet']);
    for (const e of ['testnet', 'mainnet']) {
      expect(isEnvironment(e)).toBe(true);
      expect(environmentSchema.parse(e)).toBe(e);
    }
    for (const bad of ['devnet', 'Testnet', '', ' testnet', undefined, 1]) {
      expect(isEnvironment(bad)).toBe(false);
      expect(environmentSchema.safeParse(bad).success).toBe(false);
    }
  });

  it('priority classes: urgent, bulk, test; urgent by default', () => {
    expect(PRIORITY_CLASSES).toEqual(['urgent', 'bulk', 'test']);
    expect(DEFAULT_PRIORITY_CLASS).toBe('urgent');
    for (const p of PRIORITY_CLASSES) {
      expect(isPriorityClass(p)).toBe(true);
      expect(priorityClassSchema.parse(p)).toBe(p);
    }
    for (const bad of ['high', 'URGENT', '', null, 0]) {
      expect(isPriorityClass(bad)).toBe(false);
      expect(priorityClassSchema.safeParse(bad).success).toBe(false);
    }
  });

  it('UUIDs: any layout, either case; job ids: lower-case only, as minted', () => {
    const upper = lowerUuid.toUpperCase();
    for (const ok of [lowerUuid, upper, '00000000-0000-0000-0000-000000000001']) {
      expect(isUuid(ok)).toBe(true);
      expect(uuidSchema.parse(ok)).toBe(ok);
    }
    expect(isJobId(lowerUuid)).toBe(true);
    expect(jobIdSchema.parse(lowerUuid)).toBe(lowerUuid);
    expect(isJobId(upper)).toBe(false);
    const bads = [
      'not-a-uuid',
      `${lowerUuid}0`,
      ` ${lowerUuid}`,
      '00000000-0000-4000-8000-00000000000G',
      lowerUuid.replaceAll('-', ''),
      '',
      42,
    ];
    for (const bad of bads) {
      expect(isUuid(bad)).toBe(false);
      expect(isJobId(bad)).toBe(false);
      expect(uuidSchema.safeParse(bad).success).toBe(false);
      expect(jobIdSchema.safeParse(bad).success).toBe(false);
    }
    expect(uuidSchema.safeParse('x').error?.issues[0]?.message).toBe('a UUID');
    expect(jobIdSchema.safeParse(upper).error?.issues[0]?.message).toBe('a job id (UUID)');
  });

  it('addresses: 0x and 40 lower-case hex digits; normalisation lower-cases', () => {
    expect(isAddress(address)).toBe(true);
    expect(addressSchema.parse(address)).toBe(address);
    for (const bad of [
      checksummed,
      `0X${'ab'.repeat(20)}`,
      `0x${'ab'.repeat(19)}`,
      `0x${'ab'.repeat(21)}`,
      `0x${'g'.repeat(40)}`,
      'ab'.repeat(20),
      7,
    ]) {
      expect(isAddress(bad)).toBe(false);
      expect(addressSchema.safeParse(bad).success).toBe(false);
    }
    expect(addressSchema.safeParse(checksummed).error?.issues[0]?.message).toBe(
      'a lower-case 0x-prefixed 20-byte hex address',
    );
    expect(normalizeAddress(checksummed)).toBe(checksummed.toLowerCase());
    expect(isAddress(normalizeAddress(checksummed))).toBe(true);
    expect(normalizeAddress(address)).toBe(address);
  });
});

const srcDir = fileURLToPath(new URL('..', import.meta.url));

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const p = join(dir, d.name);
    if (d.isDirectory()) return sourceFiles(p);
    return d.name.endsWith('.ts') && !d.name.endsWith('.test.ts') ? [p] : [];
  });
}

/** What a copy of a vocabulary definition looks like in source text. */
const copyPatterns: Array<{ what: string; pattern: RegExp }> = [
  {
    what: 'environment list or union',
    pattern: /['"](testnet|mainnet)['"]\s*[,|]\s*['"](testnet|mainnet)['"]/,
  },
  {
    what: 'priority-class list or union',
    pattern: /['"](urgent|bulk|test)['"]\s*[,|]\s*['"](urgent|bulk|test)['"]/,
  },
  { what: 'UUID pattern', pattern: /\{8\}-\[|\bz\.uuid\(|\.uuid\(\)/ },
  { what: 'address pattern', pattern: /\]\{40\}/ },
  { what: 'address lower-casing (use normalizeAddress)', pattern: /address\)?\.toLowerCase\(\)/i },
];

function findCopies(files: Array<{ path: string; text: string }>): string[] {
  const found: string[] = [];
  for (const f of files)
    f.text.split('\n').forEach((line, i) => {
      for (const c of copyPatterns) if (c.pattern.test(line)) found.push(`${f.path}:${i + 1}: ${c.what}`);
    });
  return found;
}

describe('vocabulary has one copy', () => {
  it('recognises each kind of copy (so the guard below can fail)', () => {
    const samples = [
      "z.enum(['testnet', 'mainnet'])",
      "environment: 'mainnet' | 'testnet';",
      "priority: 'urgent' | 'bulk' | 'test';",
      'const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;',
      'export const uuid = z.uuid();',
      "z.string().regex(/^0x[0-9a-fA-F]{40}$/, 'an address')",
      'node: account.address.toLowerCase(),',
    ];
    expect(findCopies(samples.map((text, i) => ({ path: `sample${i}`, text })))).toHaveLength(samples.length);
    expect(
      findCopies([{ path: 'ok', text: "NODE_ENV: z.enum(['development', 'test', 'production'])" }]),
    ).toEqual([]);
  });

  it('finds no definition of the vocabulary in src/ outside vocabulary.ts', () => {
    const files = sourceFiles(srcDir)
      .filter((p) => !p.endsWith(join('config', 'vocabulary.ts')))
      .map((p) => ({ path: relative(srcDir, p), text: readFileSync(p, 'utf8') }));
    expect(files.length).toBeGreaterThan(100);
    expect(findCopies(files)).toEqual([]);
  });
});
