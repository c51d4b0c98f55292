// Exit codes of the archive commands (snapshot, rollup, audit, ledger): tampered, missing and usage errors differ.
import { isAppError } from '../../platform/errors.js';
import type { CliContext } from '../context.js';

/** 0 ok · 1 other failure · 2 usage error · 3 tampered (integrity, chain, signature) · 4 missing (file, predecessor, checkpoint). */
export const EXIT = { ok: 0, failed: 1, usage: 2, tampered: 3, missing: 4 } as const;

/** Runs a command and maps the archive's errors to their exit codes, printing the reason. */
export async function archiveExit<T>(ctx: CliContext, fn: () => Promise<T>): Promise<T | number> {
  try {
    return await fn();
  } catch (err) {
    if (isAppError(err, 'integrity_failed') || isAppError(err, 'chain_broken')) {
      ctx.out(`TAMPERED: ${err.message}`);
      return EXIT.tampered;
    }
    if (isAppError(err, 'not_found')) {
      ctx.out(`MISSING: ${err.message}`);
      return EXIT.missing;
    }
    if (isAppError(err, 'invalid_request')) {
      ctx.out(`usage: ${err.message}`);
      return EXIT.usage;
    }
    throw err;
  }
}
