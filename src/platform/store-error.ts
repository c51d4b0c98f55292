// The typed store errors: what each store's one translation (at its boundary in stores/) makes of a driver
// failure. A StoreError is an AppError whose catalogue code follows from its kind, so code that only knows the
// catalogue keeps working; a module that means something by a kind (a unique violation is "name taken") maps
// it to its own domain error by `kind` and `constraint`, never by a driver's code.
import { AppError, type ErrorCode } from './errors.js';

export type StoreName = 'postgres' | 'mongo' | 'redis' | 'rabbitmq';

export type StoreErrorKind =
  | 'unique_violation'
  | 'foreign_key_violation'
  | 'check_violation'
  | 'out_of_range'
  | 'invalid_format'
  | 'serialization_failure'
  | 'deadlock'
  | 'statement_timeout'
  | 'unavailable';

/** The catalogue code of each kind (a check violation is an invariant of ours a write broke: a bug). */
const catalogueCodeOf: Record<StoreErrorKind, ErrorCode> = {
  unique_violation: 'already_exists',
  foreign_key_violation: 'not_found',
  check_violation: 'internal',
  out_of_range: 'invalid_amount',
  invalid_format: 'invalid_request',
  serialization_failure: 'store_unavailable',
  deadlock: 'store_unavailable',
  statement_timeout: 'store_unavailable',
  unavailable: 'store_unavailable',
};

export class StoreError extends AppError {
  readonly store: StoreName;
  readonly kind: StoreErrorKind;
  /** The constraint or index the server named (PostgreSQL constraint name), when it named one. */
  readonly constraint: string | undefined;

  constructor(
    s: { store: StoreName; kind: StoreErrorKind; constraint?: string | undefined },
    message: string,
    details: Record<string, unknown> | undefined,
    options: { cause: unknown },
  ) {
    super(catalogueCodeOf[s.kind], message, details, options);
    this.name = 'StoreError';
    this.store = s.store;
    this.kind = s.kind;
    this.constraint = s.constraint;
  }
}

export function isStoreError(err: unknown, kind?: StoreErrorKind): err is StoreError {
  return err instanceof StoreError && (kind === undefined || err.kind === kind);
}
