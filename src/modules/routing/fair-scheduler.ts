// Local dispatch order of buffered deliveries: smooth weighted round-robin across priority classes, plain
// round-robin across lanes (namespaces) inside a class.
//
// Fairness bound: a job buffered in lane L of class c is started after at most (k - 1) other jobs of class
// c, where k is the number of lanes of c holding buffered jobs at that moment — whatever the depth of the
// other lanes' queues, since each lane has its own prefetch and the broker never puts one namespace's
// backlog in front of another's. Across classes, out of every (sum of weights) starts, a class with
// buffered work gets exactly its weight: urgent goes first, bulk is never starved.
import type { PriorityClass } from '../../config/vocabulary.js';

export type ClassWeights = Record<PriorityClass, number>;

interface ClassState<T> {
  weight: number;
  current: number;
  /** Lanes with buffered items, in round-robin order (head is next). */
  ring: string[];
  items: Map<string, T[]>;
}

export class FairScheduler<T> {
  private readonly classes = new Map<PriorityClass, ClassState<T>>();
  private count = 0;

  constructor(weights: ClassWeights) {
    for (const [c, w] of Object.entries(weights) as Array<[PriorityClass, number]>) {
      if (!(w > 0)) throw new Error(`weight of ${c} must be positive`);
      this.classes.set(c, { weight: w, current: 0, ring: [], items: new Map() });
    }
  }

  get size(): number {
    return this.count;
  }

  push(cls: PriorityClass, lane: string, item: T): void {
    const c = this.classes.get(cls);
    if (!c) throw new Error(`unknown priority class ${cls}`);
    const q = c.items.get(lane);
    if (q) q.push(item);
    else {
      c.items.set(lane, [item]);
      c.ring.push(lane);
    }
    this.count += 1;
  }

  /** The next item to start, or undefined when nothing is buffered. */
  next(): T | undefined {
    let total = 0;
    let best: ClassState<T> | undefined;
    for (const c of this.classes.values()) {
      if (c.ring.length === 0) continue;
      c.current += c.weight;
      total += c.weight;
      if (!best || c.current > best.current) best = c;
    }
    if (!best) return undefined;
    best.current -= total;
    const lane = best.ring.shift()!;
    const q = best.items.get(lane)!;
    const item = q.shift()!;
    if (q.length > 0) best.ring.push(lane);
    else best.items.delete(lane);
    this.count -= 1;
    // A class that runs empty starts from zero next time, so it cannot bank credit while idle.
    if (best.ring.length === 0) best.current = 0;
    return item;
  }

  /** Removes and returns everything buffered (e.g. the channel that delivered it is gone). */
  drain(): T[] {
    const out: T[] = [];
    for (const c of this.classes.values()) {
      for (const lane of c.ring) out.push(...c.items.get(lane)!);
      c.ring = [];
      c.items.clear();
      c.current = 0;
    }
    this.count = 0;
    return out;
  }
}
