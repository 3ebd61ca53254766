/** An error that leaves the service as a Matrix-style JSON body `{errcode, error}`. */
export class MatrixError extends Error {
  readonly status: number;
  readonly errcode: string;
  readonly headers: Readonly<Record<string, string>>;

  constructor(status: number, errcode: string, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.name = 'MatrixError';
    this.status = status;
    this.errcode = errcode;
    this.headers = headers;
  }

  toJSON(): { errcode: string; error: string } {
    return { errcode: this.errcode, error: this.message };
  }
}

export const invalidParam = (message: string): MatrixError => new MatrixError(400, 'M_INVALID_PARAM', message);
export const missingParam = (message: string): MatrixError => new MatrixError(400, 'M_MISSING_PARAM', message);
export const badJson = (message: string): MatrixError => new MatrixError(400, 'M_BAD_JSON', message);
export const forbidden = (message: string): MatrixError => new MatrixError(403, 'M_FORBIDDEN', message);
export const userInUse = (message: string): MatrixError => new MatrixError(409, 'M_USER_IN_USE', message);
