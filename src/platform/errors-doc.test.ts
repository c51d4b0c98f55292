// Keeps docs/errors.md and the error catalogue in step: every code, its HTTP status, retry hint and type.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { errorCatalogue } from './errors.js';

interface DocRow {
  status: number;
  retryable: boolean;
  type: string;
  meaning: string;
}

function parseDoc(markdown: string): Map<string, DocRow> {
  const rows = new Map<string, DocRow>();
  for (const line of markdown.split('\n')) {
    const m = /^\|\s*`([a-z_]+)`\s*\|\s*(\d{3})\s*\|\s*(yes|no)\s*\|\s*`([a-z_]+)`\s*\|(.*)\|\s*$/.exec(line);
    if (!m) continue;
    if (rows.has(m[1]!)) throw new Error(`docs/errors.md lists ${m[1]} twice`);
    rows.set(m[1]!, {
      status: Number(m[2]),
      retryable: m[3] === 'yes',
      type: m[4]!,
      meaning: m[5]!.trim(),
    });
  }
  return rows;
}

const doc = parseDoc(readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8'));

describe('docs/errors.md', () => {
  it('lists exactly the codes of the catalogue', () => {
    expect([...doc.keys()].sort()).toEqual(Object.keys(errorCatalogue).sort());
  });

  it('gives each code the status, retry hint and type of the catalogue, and a meaning', () => {
    for (const [code, entry] of Object.entries(errorCatalogue)) {
      const row = doc.get(code);
      expect(row, code).toBeDefined();
      expect({ code, status: row!.status, retryable: row!.retryable, type: row!.type }).toEqual({
        code,
        status: entry.status,
        retryable: entry.retryable,
        type: entry.type,
      });
      expect(row!.meaning.length, `${code} has no meaning`).toBeGreaterThan(10);
    }
  });

  it('the parser reads a row and would see a wrong status', () => {
    const rows = parseDoc('| `not_found` | 410 | no | `not_found_error` | gone for good, nothing more |');
    expect(rows.get('not_found')?.status).toBe(410);
    expect(rows.get('not_found')?.status).not.toBe(errorCatalogue.not_found.status);
  });
});
