// Progress of long CLI operations on stderr: one rewritten line on a terminal, a throttled line log otherwise.
export interface ProgressEvent {
  stage: string;
  done: number;
  total: number;
  detail?: string;
}

export interface ProgressReporter {
  update(p: ProgressEvent): void;
  /** Ends the progress line (the summary goes to stdout after it). */
  finish(): void;
}

export function createProgress(label: string, stream: NodeJS.WriteStream = process.stderr): ProgressReporter {
  const tty = Boolean(stream.isTTY);
  const started = Date.now();
  let lastLine = 0;
  let wrote = false;
  return {
    update(p) {
      const secs = ((Date.now() - started) / 1000).toFixed(1);
      const text = `${label}: ${p.stage} ${p.done}/${p.total}${p.detail ? ` ${p.detail}` : ''} (${secs}s)`;
      if (tty) {
        stream.write(`\r${text.slice(0, (stream.columns || 100) - 1).padEnd((stream.columns || 100) - 1)}`);
        wrote = true;
      } else if (Date.now() - lastLine >= 1000) {
        stream.write(`${text}\n`);
        lastLine = Date.now();
      }
    },
    finish() {
      if (tty && wrote) stream.write('\n');
    },
  };
}
