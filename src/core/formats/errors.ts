/**
 * Every reader reports bad input the same way: one line naming the file and what is wrong with it,
 * so that a user who points the workbench at a broken download knows which file to fetch again.
 */
export class FormatError extends Error {
  override readonly name = 'FormatError';
  constructor(
    /** The file (or stream) the problem is in, as the user named it. */
    readonly file: string,
    /** What is wrong, in a few words, without the file name. */
    readonly problem: string,
  ) {
    super(`${file}: ${problem}`);
  }
}
