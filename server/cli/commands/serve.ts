import type { AddressInfo } from 'node:net';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { poolStatus, startAppServer } from '../../http/app-server.ts';
import { UserError } from '../errors.ts';
import { findDefaultBpe } from './tokenize.ts';

const REPO = resolve(import.meta.dirname, '../../..');

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('serve the workbench in the browser (builds the app first when needed)')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <n>', 'port (0 picks a free one)', (v) => parseInt(v, 10), 5173)
    .option('--pool <dir>', 'pool directory (CommonPool layout)', 'data/pool')
    .option('--eval <dir>', 'evaluation suite directory (clip_benchmark layout)', 'data/eval')
    .option('--build-pool', 'build the embedded default pool first if the pool directory has none (npm start does)')
    .option('--rebuild', 'rebuild the app even if dist/ exists')
    .option('--bpe <file>', "open_clip's bpe_simple_vocab_16e6.txt.gz, served to the page at /api/bpe for training (default: $DCW_BPE or the copy in an installed open_clip)")
    .action(async (opts: { host: string; port: number; pool: string; eval: string; buildPool?: boolean; rebuild?: boolean; bpe?: string }) => {
      if (opts.bpe !== undefined && !existsSync(opts.bpe)) throw new UserError(`${opts.bpe}: no such file (--bpe names open_clip's bpe_simple_vocab_16e6.txt.gz)`);
      const bpeFile = opts.bpe ?? findDefaultBpe();
      if (opts.buildPool && !poolStatus(resolve(opts.pool)).ready) {
        console.error(`no pool at ${opts.pool} yet: building the embedded default once (about 2–3 minutes on 2 cores)…`);
        const { buildPool } = await import('../../pool/build.ts');
        await buildPool({ out: opts.pool, evalOut: opts.eval, log: (line) => console.error(`pool build: ${line}`) });
      }
      const appDir = join(REPO, 'dist');
      if (opts.rebuild || !existsSync(join(appDir, 'index.html'))) {
        console.error('building the app (vite build)…');
        const { build } = await import('vite');
        await build({ root: REPO, configFile: join(REPO, 'vite.config.ts'), logLevel: 'warn' });
      }
      const poolDir = resolve(opts.pool);
      let server;
      try {
        server = await startAppServer({ appDir, poolDir, evalDir: resolve(opts.eval), bpeFile: bpeFile && resolve(bpeFile), host: opts.host, port: opts.port });
      } catch (err) {
        throw new UserError(`dcw serve: cannot listen on ${opts.host}:${opts.port}: ${(err as Error).message}`);
      }
      const { port } = server.address() as AddressInfo;
      console.log(`DataComp Workbench at http://${opts.host}:${port}/`);
      console.log(poolStatus(poolDir).message);
      console.log(bpeFile ? `CLIP vocabulary ${bpeFile} at /api/bpe` : 'no CLIP vocabulary found (--bpe, $DCW_BPE, open_clip): the page asks for the file before training');
    });
}
