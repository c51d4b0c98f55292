// `rty doctor` as a real process: passes with all four stores up, fails naming the store that cannot be reached.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../../platform/paths.js';

const run = promisify(execFile);
const cli = ['--import', 'tsx', 'src/main/cli.ts'];

async function doctor(env: Record<string, string>): Promise<{ code: number; out: string }> {
  try {
    const r = await run(process.execPath, [...cli, 'doctor'], {
      cwd: projectRoot(),
      env: { ...process.env, ...env },
      timeout: 60_000,
    });
    return { code: 0, out: r.stdout };
  } catch (err) {
    const e = err as { code?: number; stdout?: string };
    return { code: e.code ?? -1, out: e.stdout ?? '' };
  }
}

describe('rty doctor', () => {
  it('reports every store with version, round trip and capabilities', async () => {
    const r = await doctor({});
    expect(r.code).toBe(0);
    for (const store of ['postgres', 'mongo', 'redis', 'rabbitmq'])
      expect(r.out).toMatch(new RegExp(`^${store}\\s+ok\\s+\\S.*rtt=\\d+\\.\\d+ms`, 'm'));
    expect(r.out).toMatch(/^mongo .*server=(ferretdb|mongodb) ttl_indexes=(yes|no) transactions=(yes|no)/m);
  });

  it('exits non-zero naming the store that is down (here: Redis pointed at a port where nothing listens)', async () => {
    const r = await doctor({ REDIS_URL: 'redis://127.0.0.1:1' });
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/^redis\s+FAIL\s+\S/m);
    expect(r.out).toMatch(/^postgres\s+ok/m);
    expect(r.out).toMatch(/doctor: unreachable: redis$/m);
  });
});
