/**
 * `dcw train`: train.py's flags (--scale, --data_dir, --output_dir, --exp_name, --num_checkpoints, --seed,
 * --resume, --precision), the workbench's fixed recipe per scale, open_clip's output layout. Ctrl-C stops after
 * the current step and saves epoch_latest; the same command continues from it (--resume latest, the default).
 */
import { Option, type Command } from 'commander';
import { DAWN_BACKENDS, type DawnBackend } from '../../gpu/dawn.ts';
import { runTraining } from '../../train/train.ts';
import { UserError } from '../errors.ts';
import { createProgress, formatCount } from '../progress.ts';
import { loadTokenizer } from './tokenize.ts';

interface TrainFlags {
  scale: string; data_dir: string; output_dir: string; data_weights?: string; exp_name?: string; num_checkpoints: number;
  seed: number; resume: string; precision: string; bpe?: string; gpu: DawnBackend; log_every?: number;
}

/** The --gpu option shared by train, evaluate and run. */
export function gpuOption(): Option {
  return new Option('--gpu <backend>', 'WebGPU adapter through Dawn: a hardware Vulkan GPU if any, else Mesa llvmpipe (GL ES compat)').choices(DAWN_BACKENDS as unknown as string[]).default('auto');
}

export const bpeHelp = "open_clip's bpe_simple_vocab_16e6.txt.gz (default: $DCW_BPE or the copy in an installed open_clip)";

export function registerTrain(program: Command): Command {
  return program
    .command('train')
    .description('train the fixed CLIP recipe of a scale on shards (flags as train.py)')
    .requiredOption('--scale <scale>', 'competition scale (official or workbench)')
    .requiredOption('--data_dir <dir>', 'shard directory (several joined by ::)')
    .requiredOption('--output_dir <dir>', 'where checkpoints and logs go')
    .option('--data_weights <w>', 'sampling weights per data dir, joined by ::')
    .option('--exp_name <name>', 'experiment name (default: {scale}_scale)')
    .option('--num_checkpoints <n>', 'checkpoints saved during training', (v) => parseInt(v, 10), 5)
    .option('--seed <n>', 'random seed', (v) => parseInt(v, 10), 0)
    .option('--resume <ckpt>', 'checkpoint to resume from', 'latest')
    .option('--precision <p>', 'floating point precision (WebGPU trains in fp32; see README)', 'fp32')
    .option('--bpe <file>', bpeHelp)
    .addOption(gpuOption())
    .option('--log_every <n>', 'read the loss back every n steps (open_clip --log-every-n-steps)', (v) => parseInt(v, 10))
    .action(async (f: TrainFlags) => {
      if (f.precision !== 'fp32') throw new UserError(`train: --precision ${f.precision}: the workbench trains in fp32 only (no amp/bf16 on WebGPU; docs/training.md)`);
      const tokenizer = await loadTokenizer(f.bpe);
      const controller = new AbortController();
      const onSigint = () => {
        if (controller.signal.aborted) process.exit(130);
        process.stderr.write('\nstopping after this step (Ctrl-C again to quit at once)…\n');
        controller.abort();
      };
      process.on('SIGINT', onSigint);
      let progress: ReturnType<typeof createProgress> | undefined;
      let lastLoss = '';
      try {
        const result = await runTraining({
          scale: f.scale, dataDir: f.data_dir, dataWeights: f.data_weights, outputDir: f.output_dir, expName: f.exp_name,
          numCheckpoints: f.num_checkpoints, seed: f.seed, resume: f.resume, tokenizer, gpu: f.gpu, logEvery: f.log_every,
          signal: controller.signal,
          log: (line) => process.stderr.write(`${process.stderr.isTTY ? '\r\x1b[2K' : ''}${line}\n`),
          onProgress: (p) => {
            progress ??= createProgress({ label: 'train', total: p.totalSteps, unit: ' steps' });
            if (p.loss !== undefined) lastLoss = `loss ${p.loss.toFixed(4)}`;
            progress.update(p.step, `${lastLoss}  lr ${p.lr.toExponential(2)}  ${formatCount(p.samplesPerSecond)} samples/s`);
          },
        });
        progress?.done();
        if (result.stopped) {
          process.stderr.write(`stopped at step ${result.state.step}; run the same command to continue\n`);
          process.exitCode = 130;
        } else {
          process.stdout.write(`${result.dir}\n`);
        }
      } finally {
        process.off('SIGINT', onSigint);
      }
    });
}
