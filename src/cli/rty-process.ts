// Runs `rty <command>` as a child node process (no tsx wrapper: its PID is the process itself), collects its
// output lines, waits for a readiness line, and stops it with SIGTERM (SIGKILL after a deadline). Used by the
// demo and the end-to-end benchmark to run the backbone and the node simulator as separate processes.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../main/cli.ts', import.meta.url));

export interface RtyProcess {
  child: ChildProcess;
  /** The last lines of stdout and stderr. */
  lines: string[];
  /** Resolves with the first line matching `pattern` (already seen or coming); rejects on exit or timeout. */
  waitFor(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process exited. */
  stop(graceMs?: number): Promise<void>;
}

export function spawnRty(
  args: string[],
  env: Record<string, string>,
  opts: { onLine?: (line: string) => void } = {},
): RtyProcess {
  // RTY_CPU_PROF_DIR (benchmarks only): each child writes a V8 CPU profile there when it exits.
  const prof = process.env.RTY_CPU_PROF_DIR;
  const nodeArgs = prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`] : [];
  const child = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', CLI, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const listeners = new Set<() => void>();
  let partial = '';
  const onData = (d: Buffer) => {
    const text = partial + d.toString();
    const parts = text.split('\n');
    partial = parts.pop() ?? '';
    for (const l of parts) {
      if (!l.trim()) continue;
      lines.push(l);
      opts.onLine?.(l);
    }
    if (lines.length > 2000) lines.splice(0, lines.length - 2000);
    for (const f of listeners) f();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    child,
    lines,
    waitFor: (pattern, timeoutMs) =>
      new Promise((resolve, reject) => {
        const tail = () => lines.slice(-20).join('\n');
        const check = () => {
          for (const l of lines) {
            const m = l.match(pattern);
            if (m) {
              cleanup();
              resolve(m);
              return;
            }
          }
          if (child.exitCode !== null || child.signalCode !== null) {
            cleanup();
            reject(new Error(`rty ${args[0]} exited (${child.exitCode ?? child.signalCode}):\n${tail()}`));
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`rty ${args[0]}: no line matching ${pattern} within ${timeoutMs} ms:\n${tail()}`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          listeners.delete(check);
          child.off('exit', check);
        };
        listeners.add(check);
        child.on('exit', check);
        check();
      }),
    stop: async (graceMs = 30_000) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, graceMs)))]);
      clearTimeout(timer);
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}
