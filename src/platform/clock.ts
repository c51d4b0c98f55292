// Time source passed to services so that tests can control it.
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };
