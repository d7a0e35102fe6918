/** Stable error codes: part of the public API; branch on `err.code`, not on messages. */
export const RECA_ERROR_CODES = [
  'E_INVALID_ARGUMENT',
  'E_SHAPE',
  'E_DTYPE',
  'E_DISPOSED',
  'E_OUT_OF_MEMORY',
  'E_DEVICE',
  'E_CUDA',
  'E_CHECKPOINT',
  'E_IO',
  'E_NUMERIC',
  'E_BUSY',
  'E_LOAD',
  'E_INTERNAL',
] as const;

export type RecaErrorCode = (typeof RECA_ERROR_CODES)[number];

/**
 * Every failure the engine reports, from TypeScript or from native code (the
 * addon constructs this class itself), is a RecaError with a stable `code`.
 */
export class RecaError extends Error {
  readonly code: RecaErrorCode;

  constructor(code: RecaErrorCode, message: string) {
    super(message);
    this.name = 'RecaError';
    this.code = code;
  }
}

export function isRecaError(e: unknown, code?: RecaErrorCode): e is RecaError {
  return e instanceof RecaError && (code === undefined || e.code === code);
}

/** The E_INVALID_ARGUMENT error of a bad call from JS. */
export function invalidArgument(message: string): RecaError {
  return new RecaError('E_INVALID_ARGUMENT', message);
}
