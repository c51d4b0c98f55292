// The input guard every HTTP route passes before validation: JSON nesting depth, NUL characters, lone UTF-16
// surrogates and malformed percent-encoding are refused with a 400 naming the field, before any handler runs
// (so a refused request reserves nothing and writes nothing).
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { AppError } from '../platform/errors.js';

export interface InputGuardOptions {
  /** Deepest nesting of objects/arrays accepted in a body (the top-level value is depth 1). */
  maxDepth: number;
}

export interface InputProblem {
  /** Where: `body.messages.0.content`, `query.model`, `params.id`. */
  param: string;
  message: string;
}

interface Frame {
  value: unknown;
  depth: number;
  parent: Frame | undefined;
  key: string | undefined;
}

function pathOf(f: Frame): string {
  const parts: string[] = [];
  for (let x: Frame | undefined = f; x; x = x.parent) if (x.key !== undefined) parts.push(x.key);
  return parts.reverse().join('.');
}

// String.prototype.isWellFormed (Node 20+; not yet in the ES2023 lib typings).
const isWellFormed = (s: string): boolean => (s as unknown as { isWellFormed(): boolean }).isWellFormed();

function textProblem(s: string): string | undefined {
  if (s.includes('\u0000')) return 'contains a NUL character (U+0000); remove it';
  if (!isWellFormed(s)) return 'contains a lone UTF-16 surrogate (not valid Unicode); send well-formed UTF-8';
  return undefined;
}

/**
 * The first unsafe place in a parsed JSON value, or undefined. Iterative (an explicit stack), so a value nested
 * far deeper than the limit is measured without recursion and refused at the first frame over the limit.
 */
export function findUnsafeInput(value: unknown, root: string, maxDepth: number): InputProblem | undefined {
  const stack: Frame[] = [{ value, depth: 1, parent: undefined, key: root }];
  while (stack.length > 0) {
    const f = stack.pop()!;
    const v = f.value;
    if (typeof v === 'string') {
      const problem = textProblem(v);
      if (problem) return { param: pathOf(f), message: `${pathOf(f)} ${problem}` };
      continue;
    }
    if (typeof v === 'number') {
      // JSON.parse reads 1e999 as Infinity: no JSON consumer downstream can write it back.
      if (!Number.isFinite(v))
        return {
          param: pathOf(f),
          message: `${pathOf(f)} is a number too large to represent; send a finite number`,
        };
      continue;
    }
    if (v === null || typeof v !== 'object') continue;
    if (f.depth > maxDepth)
      return {
        param: pathOf(f),
        message: `${pathOf(f)} is nested deeper than ${maxDepth} levels (HTTP_JSON_MAX_DEPTH); flatten the value`,
      };
    if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--)
        stack.push({ value: v[i], depth: f.depth + 1, parent: f, key: String(i) });
      continue;
    }
    const keys = Object.keys(v);
    for (let i = keys.length - 1; i >= 0; i--) {
      const k = keys[i]!;
      const problem = textProblem(k);
      if (problem) {
        const at = pathOf(f);
        return { param: at, message: `a key of ${at} ${problem}` };
      }
      stack.push({ value: (v as Record<string, unknown>)[k], depth: f.depth + 1, parent: f, key: k });
    }
  }
  return undefined;
}

/** The first query parameter whose raw text is not valid percent-encoded UTF-8 (e.g. `%zz`, `%E0%A4`). */
export function findBadPercentEncoding(rawUrl: string): InputProblem | undefined {
  const q = rawUrl.indexOf('?');
  if (q < 0) return undefined;
  const query = rawUrl.slice(q + 1);
  if (!query.includes('%')) return undefined;
  for (const pair of query.split('&')) {
    const eq = pair.indexOf('=');
    const rawName = eq < 0 ? pair : pair.slice(0, eq);
    let name = rawName;
    try {
      name = decodeURIComponent(rawName.replaceAll('+', ' '));
      if (eq >= 0) decodeURIComponent(pair.slice(eq + 1).replaceAll('+', ' '));
    } catch {
      return {
        param: `query.${name}`,
        message: `query parameter ${JSON.stringify(name)} is not valid percent-encoded UTF-8; encode it with encodeURIComponent`,
      };
    }
  }
  return undefined;
}

/** The first problem in a request's query, path parameters and body. */
export function inspectRequest(req: FastifyRequest, opts: InputGuardOptions): InputProblem | undefined {
  return (
    findBadPercentEncoding(req.url) ??
    findUnsafeInput(req.params, 'params', opts.maxDepth) ??
    findUnsafeInput(req.query, 'query', opts.maxDepth) ??
    findUnsafeInput(req.body, 'body', opts.maxDepth)
  );
}

/** Installs the guard on every route of the app (call before registering the route plugins). */
export function installInputGuard(app: FastifyInstance, opts: InputGuardOptions): void {
  app.addHook('preValidation', async (req) => {
    const problem = inspectRequest(req, opts);
    if (problem) throw new AppError('invalid_request', problem.message, { param: problem.param });
  });
}
