// The price table of a network config version (pure): its `prices` section parsed and checked (a bad table is
// refused at publish with the field named), and the price of one job from it (the most specific entry wins).
//
// Shape (micro-credits per 1,000 tokens, integers):
//   "prices": {
//     "default": { "inputMicroPer1kTokens": 20000, "outputMicroPer1kTokens": 20000 },
//     "models": [
//       { "model": "llama3-8b", "inputMicroPer1kTokens": 100, "outputMicroPer1kTokens": 300 },
//       { "model": "llama3-8b", "environment": "testnet", "inputMicroPer1kTokens": 0, "outputMicroPer1kTokens": 0 },
//       { "model": "llama3-8b", "subcloud": "<subcloud id>", "inputMicroPer1kTokens": 50, "outputMicroPer1kTokens": 150 }
//     ]
//   }
// An entry names a model and optionally an environment and/or a Subcloud; for a job the matching entry with a
// Subcloud beats one with only an environment, which beats the model alone; a model no entry matches pays
// `default`. A config without `prices` prices every job at the flat PRICE_PER_TOKEN_MICRO (× 1000 per 1k).
import { z } from 'zod';
import { AppError } from '../../platform/errors.js';
import { ENVIRONMENTS, environmentSchema } from '../../config/vocabulary.js';
import { MAX_PRICE_MICRO_PER_1K as MAX_PRICE_PER_1K } from '../routing/index.js';

export interface Prices {
  inputMicroPer1kTokens: number;
  outputMicroPer1kTokens: number;
}

/** One job's price: the config version it comes from and its prices (what the job message carries). */
export interface QuotedPrice extends Prices {
  version: number;
}

interface Entry extends Prices {
  model: string;
  environment?: string | undefined;
  subcloud?: string | undefined;
}

/** A parsed table: per model, its entries most specific first. */
export interface PriceTable {
  version: number;
  default: Prices;
  byModel: Map<string, Entry[]>;
}

const per1k = z.number().int().min(0).max(MAX_PRICE_PER_1K);
const name = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,99}$/);
const prices = { inputMicroPer1kTokens: per1k, outputMicroPer1kTokens: per1k };
const tableSchema = z.strictObject({
  default: z.strictObject(prices),
  models: z
    .array(
      z.strictObject({
        model: name,
        environment: environmentSchema.optional(),
        subcloud: name.optional(),
        ...prices,
      }),
    )
    .max(10_000)
    .default([]),
});

const expected: Record<string, string> = {
  inputMicroPer1kTokens: `must be an integer from 0 to ${MAX_PRICE_PER_1K} (micro-credits per 1,000 input tokens)`,
  outputMicroPer1kTokens: `must be an integer from 0 to ${MAX_PRICE_PER_1K} (micro-credits per 1,000 output tokens)`,
  model: 'must be a model name (A-Z a-z 0-9 . _ : / @ + -, at most 100)',
  environment: `must be one of ${ENVIRONMENTS.join(', ')}`,
  subcloud: 'must be a Subcloud id',
  default:
    'is required: an object with inputMicroPer1kTokens and outputMicroPer1kTokens for models not listed',
  models: 'must be an array of price entries (at most 10,000)',
};

const fieldPath = (path: ReadonlyArray<PropertyKey>): string =>
  path.reduce<string>((s, p) => (typeof p === 'number' ? `${s}[${p}]` : `${s}.${String(p)}`), 'body.prices');

function refuse(field: string, what: string): never {
  throw new AppError('invalid_request', `${field} ${what}`, { param: field });
}

/**
 * Checks the `prices` section of a config body (undefined: none, the flat price applies). Throws a 400 naming
 * the first bad field (`body.prices.models[1].inputMicroPer1kTokens must be …`).
 */
export function checkPriceSection(section: unknown): void {
  if (section === undefined) return;
  parseSection(section);
}

function parseSection(section: unknown): z.infer<typeof tableSchema> {
  if (typeof section !== 'object' || section === null || Array.isArray(section))
    refuse('body.prices', 'must be an object with default and models');
  const r = tableSchema.safeParse(section);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    if (issue.code === 'unrecognized_keys') {
      const allowed =
        issue.path.length === 0
          ? 'default, models'
          : issue.path.length === 1
            ? 'inputMicroPer1kTokens, outputMicroPer1kTokens'
            : 'model, environment, subcloud, inputMicroPer1kTokens, outputMicroPer1kTokens';
      refuse(fieldPath([...issue.path, issue.keys[0]!]), `is not a price table key (allowed: ${allowed})`);
    }
    const last = [...issue.path].reverse().find((p) => typeof p === 'string');
    refuse(fieldPath(issue.path), expected[String(last)] ?? issue.message);
  }
  const seen = new Map<string, number>();
  r.data.models.forEach((e, i) => {
    const key = `${e.model}\u0000${e.environment ?? ''}\u0000${e.subcloud ?? ''}`;
    const first = seen.get(key);
    if (first !== undefined)
      refuse(
        `body.prices.models[${i}]`,
        `repeats models[${first}] (the same model, environment and Subcloud)`,
      );
    seen.set(key, i);
  });
  return r.data;
}

const specificity = (e: Entry) => (e.subcloud ? 2 : 0) + (e.environment ? 1 : 0);

/** The table of config `version` from its body's `prices` section (absent: `flat` for every model). */
export function priceTableOf(version: number, section: unknown, flat: Prices): PriceTable {
  if (section === undefined) return { version, default: flat, byModel: new Map() };
  const t = parseSection(section);
  const byModel = new Map<string, Entry[]>();
  for (const e of t.models) {
    const list = byModel.get(e.model) ?? [];
    list.push(e);
    byModel.set(e.model, list);
  }
  for (const list of byModel.values()) list.sort((a, b) => specificity(b) - specificity(a));
  return { version, default: t.default, byModel };
}

/** The price of a job of `model` on `environment` (in `subcloud`, if any): the most specific matching entry. */
export function priceOf(
  t: PriceTable,
  model: string,
  environment: string,
  subcloud: string | null,
): QuotedPrice {
  const hit = t.byModel
    .get(model)
    ?.find(
      (e) =>
        (e.environment === undefined || e.environment === environment) &&
        (e.subcloud === undefined || e.subcloud === subcloud),
    );
  const p = hit ?? t.default;
  return {
    version: t.version,
    inputMicroPer1kTokens: p.inputMicroPer1kTokens,
    outputMicroPer1kTokens: p.outputMicroPer1kTokens,
  };
}
