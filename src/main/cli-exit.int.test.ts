// Exit codes of the `rty` binary for usage errors commander catches itself (missing argument, unknown option or
// command): 2, like every other usage error; help is 0.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

const rty = (...args: string[]) =>
  spawnSync(process.execPath, ['--import', 'tsx', 'src/main/cli.ts', ...args], {
    encoding: 'utf8',
    env: { ...process.env, NODE_ENV: 'test' },
    timeout: 60_000,
  });

describe('rty usage errors', () => {
  it('a missing argument, an unknown option and an unknown command exit 2; --help exits 0', () => {
    const missing = rty('snapshot', 'verify');
    expect(missing.status, missing.stderr).toBe(2);
    expect(missing.stderr).toMatch(/missing required argument/);
    expect(rty('snapshot', 'create', '--no-such-option').status).toBe(2);
    expect(rty('no-such-command').status).toBe(2);
    expect(rty('snapshot', '--help').status).toBe(0);
  });
});
