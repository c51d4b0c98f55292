// Parsing of numeric command-line flags, with errors that name the flag.

/** An integer flag ≥ `min` (`name` without the leading dashes). */
export function intFlag(name: string, value: string, min: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer ≥ ${min}, got ${value}`);
  return n;
}

/** A probability flag in [0, 1]. */
export function rateFlag(name: string, value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0 || n > 1)
    throw new Error(`--${name} must be a number in [0, 1], got ${value}`);
  return n;
}
