/**
 * Stand-alone entry for the pool commands (`node --import tsx server/pool/cli.ts pool build …`), used by the
 * tests and by `npm start` before `dcw` itself; the same commands as `dcw pool build` and `dcw contamination`.
 */
import { Command, CommanderError } from 'commander';
import { FormatError } from '../../src/core/formats/errors.ts';
import { registerContamination, registerPoolBuild } from '../cli/commands/pool.ts';
import { UserError } from '../cli/errors.ts';

const program = new Command('dcw').exitOverride();
registerPoolBuild(program.command('pool').description('build the embedded default pool'));
registerContamination(program);
try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) process.exitCode = err.exitCode;
  else if (err instanceof UserError || err instanceof FormatError) {
    console.error(`dcw: ${err.message}`);
    process.exitCode = 1;
  } else throw err;
}
