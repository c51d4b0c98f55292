// One recurring task: what each module's factory hands to the background runner (src/background/task-runner.ts
// runs each on one process at a time, under a PostgreSQL advisory lock named after the task).
// Names are `<module>.<verb-noun>`, unique within a deployment (some carry a key-space suffix).
export interface RecurringTask {
  name: string;
  intervalMs: number;
  /** `signal` aborts on stop() and when the task's lock is lost: the task must then stop touching state. */
  run(signal: AbortSignal): Promise<unknown>;
}
