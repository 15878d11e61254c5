/** An error meant for the user: printed as one line, without a stack trace, with a non-zero exit status. */
export class UserError extends Error {
  override readonly name = 'UserError';
  constructor(message: string, readonly exitCode = 1) {
    super(message);
  }
}

/** For subcommands whose flags exist but whose work lands with a later issue. */
export function notYet(command: string, issue: number, what: string): never {
  throw new UserError(`${command}: ${what} is not available yet (tracked in issue #${issue})`, 3);
}
