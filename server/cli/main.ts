import { Command, CommanderError } from 'commander';
import { FormatError } from '../../src/core/formats/errors.ts';
import { registerEvaluate } from './commands/evaluate.ts';
import { registerCluster } from './commands/cluster.ts';
import { registerFilter } from './commands/filter.ts';
import { registerInspect } from './commands/inspect.ts';
import { registerContamination, registerPoolBuild } from './commands/pool.ts';
import { registerReshard } from './commands/reshard.ts';
import { registerResults, registerRun } from './commands/run.ts';
import { registerServe } from './commands/serve.ts';
import { registerTokenize } from './commands/tokenize.ts';
import { registerTrain } from './commands/train.ts';
import { registerUids } from './commands/uids.ts';
import { UserError } from './errors.ts';

const program = new Command('dcw')
  .description('DataComp Workbench: pools, filters, subsets, shards, training and evaluation, in the official formats')
  .version('0.1.0')
  .showHelpAfterError('(run with --help for usage)')
  .exitOverride();

registerServe(program);
registerUids(program);
registerInspect(program);
registerPoolBuild(program.command('pool').description('build the embedded default pool (and its held-out evaluation suite)'));
registerContamination(program);
registerTokenize(program);
registerFilter(program);
registerCluster(program);
registerReshard(program);
registerTrain(program);
registerEvaluate(program);
registerRun(program);
registerResults(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // Commander already printed its message (or the help / version text).
    process.exitCode = err.exitCode;
  } else if (err instanceof UserError || err instanceof FormatError) {
    console.error(`dcw: ${err.message}`);
    process.exitCode = err instanceof UserError ? err.exitCode : 1;
  } else {
    const e = err as NodeJS.ErrnoException;
    // File-system errors are the user's to fix: one line, no stack ("ENOENT: no such file …, open 'x'" → "x: no such file …").
    if (e?.code && e.path) console.error(`dcw: ${e.path}: ${e.message.replace(/^[A-Z]+: /, '').replace(/, \w+ '.*'$/, '')}`);
    else console.error(`dcw: unexpected error: ${e?.stack ?? String(err)}`);
    process.exitCode = 1;
  }
}
