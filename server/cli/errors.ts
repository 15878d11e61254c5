/** An error meant for the user: printed as one line, without a stack trace, with a non-zero exit status. */
export class UserError extends Error {
  override readonly name = 'UserError';
  constructor(message: string, readonly exitCode = 1) {
    super(message);
  }
}
