import type { AddressInfo } from 'node:net';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { poolStatus, startAppServer } from '../../http/app-server.ts';
import { UserError } from '../errors.ts';
import { findDefaultBpe } from './tokenize.ts';
import { WNIDS_FILE, WNIDS_URL, wordNetPackage } from '../../filters/wordnet.ts';

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
    .option('--wordnet_ids <file>', "text_based: DataComp's imagenet21k_wordnet_ids.txt, served to the page at /api/wordnet-ids (default: $DCW_ASSETS/imagenet21k_wordnet_ids.txt)")
    .option('--centroids <file>', 'image_based: pool centroids (.pt or .npy), served to the page at /api/image-assets')
    .option('--image_targets <files...>', 'image_based: target features (.pt "image_features" or .npy), served to the page at /api/image-assets')
    .action(async (opts: {
      host: string; port: number; pool: string; eval: string; buildPool?: boolean; rebuild?: boolean; bpe?: string;
      wordnet_ids?: string; centroids?: string; image_targets?: string[];
    }) => {
      if (opts.bpe !== undefined && !existsSync(opts.bpe)) throw new UserError(`${opts.bpe}: no such file (--bpe names open_clip's bpe_simple_vocab_16e6.txt.gz)`);
      for (const [flag, file] of [['--wordnet_ids', opts.wordnet_ids], ['--centroids', opts.centroids], ...(opts.image_targets ?? []).map((f) => ['--image_targets', f])] as const) {
        if (file !== undefined && !existsSync(file)) throw new UserError(`${flag} ${file}: no such file`);
      }
      // the same resolution as dcw filter: the flag, else $DCW_ASSETS/imagenet21k_wordnet_ids.txt when it is there
      const wnids = opts.wordnet_ids ?? (process.env.DCW_ASSETS ? join(process.env.DCW_ASSETS, WNIDS_FILE) : undefined);
      const wordnetIdsFile = wnids && existsSync(wnids) ? resolve(wnids) : undefined;
      let wordnet;
      try {
        wordnet = wordNetPackage();
      } catch {
        wordnet = undefined; // the page then asks for the files
      }
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
        server = await startAppServer({ appDir, poolDir, evalDir: resolve(opts.eval), bpeFile: bpeFile && resolve(bpeFile),
          wordnet, wordnetIdsFile, imageAssets: { centroids: opts.centroids && resolve(opts.centroids), targets: opts.image_targets?.map((f) => resolve(f)) }, host: opts.host, port: opts.port });
      } catch (err) {
        throw new UserError(`dcw serve: cannot listen on ${opts.host}:${opts.port}: ${(err as Error).message}`);
      }
      const { port } = server.address() as AddressInfo;
      console.log(`DataComp Workbench at http://${opts.host}:${port}/`);
      console.log(poolStatus(poolDir).message);
      console.log(wordnetIdsFile ? `ImageNet-21k WordNet id list ${wordnetIdsFile} at /api/wordnet-ids` : `no ImageNet-21k WordNet id list (--wordnet_ids, $DCW_ASSETS): text_based asks for ${WNIDS_FILE} in the page (${WNIDS_URL})`);
      if (opts.centroids || opts.image_targets) console.log(`image_based assets at /api/image-assets: ${[opts.centroids, ...(opts.image_targets ?? [])].filter(Boolean).join(', ')}`);
      console.log(bpeFile ? `CLIP vocabulary ${bpeFile} at /api/bpe` : 'no CLIP vocabulary found (--bpe, $DCW_BPE, open_clip): the page asks for the file before training');
    });
}

