// The error catalogue: every error the system returns has a stable code, an HTTP status and a retry hint.

export const errorCatalogue = {
  invalid_request: { status: 400, retryable: false, type: 'invalid_request_error' },
  invalid_amount: { status: 400, retryable: false, type: 'invalid_request_error' },
  unauthorized: { status: 401, retryable: false, type: 'authentication_error' },
  insufficient_credits: { status: 402, retryable: false, type: 'insufficient_quota' },
  forbidden: { status: 403, retryable: false, type: 'permission_error' },
  not_found: { status: 404, retryable: false, type: 'not_found_error' },
  method_not_allowed: { status: 405, retryable: false, type: 'invalid_request_error' },
  namespace_not_found: { status: 404, retryable: false, type: 'not_found_error' },
  hold_not_found: { status: 404, retryable: false, type: 'not_found_error' },
  idempotency_conflict: { status: 409, retryable: false, type: 'conflict_error' },
  hold_not_pending: { status: 409, retryable: false, type: 'conflict_error' },
  settle_exceeds_hold: { status: 422, retryable: false, type: 'invalid_request_error' },
  already_exists: { status: 409, retryable: false, type: 'conflict_error' },
  bonus_held: { status: 409, retryable: true, type: 'conflict_error' },
  invalid_filter: { status: 400, retryable: false, type: 'invalid_request_error' },
  invalid_cursor: { status: 400, retryable: false, type: 'invalid_request_error' },
  export_verification_failed: { status: 500, retryable: true, type: 'server_error' },
  payload_too_large: { status: 413, retryable: false, type: 'invalid_request_error' },
  unsupported_media_type: { status: 415, retryable: false, type: 'invalid_request_error' },
  headers_too_large: { status: 431, retryable: false, type: 'invalid_request_error' },
  node_not_registered: { status: 403, retryable: false, type: 'permission_error' },
  lease_not_found: { status: 409, retryable: false, type: 'conflict_error' },
  lease_stale: { status: 409, retryable: false, type: 'conflict_error' },
  rate_limited: { status: 429, retryable: true, type: 'rate_limit_error' },
  precondition_failed: { status: 409, retryable: false, type: 'conflict_error' },
  integrity_failed: { status: 422, retryable: false, type: 'invalid_request_error' },
  chain_broken: { status: 422, retryable: false, type: 'invalid_request_error' },
  store_unavailable: { status: 503, retryable: true, type: 'server_error' },
  /** The live model catalog is being rebuilt after a Redis loss: the model may well be served; retry. */
  catalog_recovering: { status: 503, retryable: true, type: 'server_error' },
  /** A finished job whose result is past its namespace's retention (the job row stays; its output is gone). */
  result_expired: { status: 410, retryable: false, type: 'not_found_error' },
  model_not_found: { status: 404, retryable: false, type: 'invalid_request_error' },
  no_capacity: { status: 503, retryable: true, type: 'server_error' },
  timeout: { status: 504, retryable: true, type: 'server_error' },
  job_failed: { status: 502, retryable: true, type: 'server_error' },
  /** The job was cancelled while it ran (its client asked): charged for the prompt and output delivered. */
  job_cancelled: { status: 409, retryable: false, type: 'invalid_request_error' },
  internal: { status: 500, retryable: true, type: 'server_error' },
} as const satisfies Record<string, { status: number; retryable: boolean; type: string }>;

export type ErrorCode = keyof typeof errorCatalogue;

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly retryable: boolean;
  readonly details: Record<string, unknown> | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    details?: Record<string, unknown>,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'AppError';
    this.code = code;
    this.status = errorCatalogue[code].status;
    this.retryable = errorCatalogue[code].retryable;
    this.details = details;
  }

  /** OpenAI-style error body. */
  toBody(): { error: { message: string; type: string; code: ErrorCode; param: null } } {
    return {
      error: { message: this.message, type: errorCatalogue[this.code].type, code: this.code, param: null },
    };
  }
}

export function isAppError(err: unknown, code?: ErrorCode): err is AppError {
  return err instanceof AppError && (code === undefined || err.code === code);
}
