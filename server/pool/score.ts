/**
 * `dcw pool score`: fills a pool's CLIP score columns and writes its `.npz` embeddings with a scoring model
 * trained here (src/core/pipeline/score-pool.ts: a Data Filtering Network trained on a trusted subset).
 *
 *   {pool}/metadata/<stem>.parquet   the same file with clip_b32/l14_similarity_score set (float32, both the scorer's)
 *   {pool}/metadata/<stem>.npz       b32_img, b32_txt, l14_img, l14_txt: float16, rows × the scorer's width
 *   {pool}/scorer/                   a `dcw evaluate`-able training folder: info.json, checkpoints/epoch_latest.*,
 *                                    scorer.json (recipe, trusted rule and size, files), report.json / report.md
 *                                    (mean score per ground-truth noise kind, when ground_truth/truth.parquet exists)
 *
 * All-or-nothing: every new file is written into a staging folder beside metadata/ first; only when all of
 * them exist are they renamed into place (the files they replace kept as hard links until the last rename,
 * and put back if a rename fails). A pool that already has scores, embeddings or a scorer/ is refused unless
 * `overwrite` is set. The ground truth is read for the report only, after scoring, never by the scorer.
 */
import { existsSync } from 'node:fs';
import { link, mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { ALL_BASELINES, type BaselineName } from '../../src/core/filters/baselines.ts';
import { parseRecipe, RecipeError } from '../../src/core/filters/recipe.ts';
import { FormatError } from '../../src/core/formats/errors.ts';
import { ParquetFile } from '../../src/core/formats/parquet.ts';
import {
  DEFAULT_TRUSTED, describeTrusted, embeddingsNpz, MissingSamplesError, SCORE_COLUMNS, scoredParquet, scorePool, separationReport,
  type ScorePoolOptions, type ScorePoolResult, type SeparationReport, type TrustedRule,
} from '../../src/core/pipeline/score-pool.ts';
import type { BackendTensor } from '../../src/core/gpu/backend.ts';
import { stateBytes } from '../../src/core/train/checkpoint.ts';
import { isScaleName, SCORER_SCALES, scaleConfig, type ScaleConfig } from '../../src/core/train/scales.ts';
import { UserError } from '../cli/errors.ts';
import { listMetadataFiles } from '../filters/metadata-dir.ts';
import { loadFastTextDetector } from '../filters/langid-fasttext.ts';
import type { DawnBackend } from '../gpu/dawn.ts';
import { SharpImageCodec } from '../io/image-codec.ts';
import { writeFileAtomic } from '../io/streams.ts';
import { writeInfo, type TrainInfo } from '../train/checkpoints.ts';
import { FileShardStore } from '../train/shard-store.ts';
import { openTrainingBackend } from '../train/train.ts';

export const SCORER_DIR = 'scorer';
export const SCORER_FORMAT = 'dcw-scorer-v1';
const STAGING_PREFIX = '.dcw-score.';

/** scorePool's options (src/core/pipeline/score-pool.ts) that pass through unchanged, and the folder-level ones. */
export interface PoolScoreOptions extends Pick<ScorePoolOptions<BackendTensor>, 'seed' | 'tokenizer' | 'allowMissing' | 'batchSize' | 'logEvery' | 'log' | 'onTrainProgress' | 'onEmbedProgress'> {
  /** Pool folder (CommonPool layout: metadata/, shards/). */
  pool: string;
  /** A scorer recipe name (scorer-cpu, scorer-gpu), or a ScaleConfig (tests). */
  scale: string | ScaleConfig;
  /** A baseline name or a recipe file; default basic_filter. */
  trusted?: string;
  gpu?: DawnBackend;
  overwrite?: boolean;
}

export interface PoolScoreOutcome {
  result: ScorePoolResult;
  /** Files now in place (absolute paths). */
  written: string[];
  report: ScoreReport | null;
  device: string;
}

export interface ScoreReport {
  caption_kind: SeparationReport;
  image_kind: SeparationReport;
}

function scorerScale(s: string | ScaleConfig): ScaleConfig {
  if (typeof s !== 'string') return s;
  if (!isScaleName(s) || !(SCORER_SCALES as readonly string[]).includes(s)) throw new UserError(`--scale ${s}: the scorer's recipe is one of ${SCORER_SCALES.join(', ')}`);
  return scaleConfig(s);
}

/** `--trusted`: a baseline by name or a recipe file. */
async function trustedRule(value: string | undefined): Promise<TrustedRule> {
  if (value === undefined) return DEFAULT_TRUSTED;
  if ((ALL_BASELINES as readonly string[]).includes(value)) {
    if (value === 'clip_score') throw new UserError('--trusted clip_score needs --arch and --fraction: write it as a recipe file ({"recipe": 1, "subsets": {"t": {"baseline": "clip_score", "arch": "l14", "fraction": 0.3}}, "result": "t"})');
    return { kind: 'baseline', spec: { name: value as BaselineName } };
  }
  if (!existsSync(value)) throw new UserError(`--trusted ${value}: neither a baseline (${ALL_BASELINES.join(', ')}) nor a recipe file`);
  try {
    return { kind: 'recipe', recipe: parseRecipe(await readFile(value, 'utf8'), value), file: value };
  } catch (err) {
    if (err instanceof RecipeError) throw new UserError(err.message);
    throw err;
  }
}

function needsLanguage(rule: TrustedRule): boolean {
  if (rule.kind === 'baseline') return rule.spec.name === 'basic_filter' || rule.spec.name === 'laion2b';
  return /basic_filter|laion2b|lang\s*\(/.test(JSON.stringify(rule.recipe));
}

/** What of a previous scoring (or of the pool's own scores) is there: one line each, empty when none. */
async function existingScores(pool: string, parquets: readonly { name: string; source: unknown }[]): Promise<string[]> {
  const found: string[] = [];
  if (existsSync(join(pool, SCORER_DIR))) found.push(`${join(pool, SCORER_DIR)} exists`);
  for (const m of parquets) {
    const npz = m.name.replace(/\.parquet$/, '.npz');
    if (existsSync(npz)) found.push(`${npz} exists`);
    const pq = await ParquetFile.open(m.source as Parameters<typeof ParquetFile.open>[0], m.name);
    const present = SCORE_COLUMNS.filter((c) => pq.columnNames.includes(c));
    if (!present.length) continue;
    const t = await pq.read({ columns: present });
    for (const c of present) {
      const col = t.getChild(c)!;
      if (col.nullCount < col.length) found.push(`${m.name}: ${c} holds ${col.length - col.nullCount} scores`);
    }
  }
  return found;
}

/** Staging folders of runs that were killed before they finished. */
async function removeStaleStaging(pool: string): Promise<void> {
  for (const name of await readdir(pool)) {
    if (name.startsWith(STAGING_PREFIX)) await rm(join(pool, name), { recursive: true, force: true });
  }
}

/** Reads the ground truth's uid → caption_kind, image_kind (for the report only). */
async function readTruth(path: string): Promise<Map<string, [string, string]> | undefined> {
  if (!existsSync(path)) return undefined;
  const pq = await ParquetFile.open(new Uint8Array(await readFile(path)), path);
  const want = ['uid', 'caption_kind', 'image_kind'];
  if (!want.every((c) => pq.columnNames.includes(c))) return undefined;
  const t = await pq.read({ columns: want });
  const [uid, cap, img] = want.map((c) => t.getChild(c)!);
  const out = new Map<string, [string, string]>();
  for (let i = 0; i < t.numRows; i++) out.set(String(uid!.get(i)), [String(cap!.get(i)), String(img!.get(i))]);
  return out;
}

function scoreReport(result: ScorePoolResult, truth: Map<string, [string, string]>): ScoreReport | null {
  const scores: number[] = [];
  const caption: string[] = [];
  const image: string[] = [];
  for (const f of result.files) {
    for (let i = 0; i < f.rows; i++) {
      const kinds = truth.get(f.uids[i]!);
      if (!kinds) continue;
      scores.push(f.scores[i]!);
      caption.push(kinds[0]);
      image.push(kinds[1]);
    }
  }
  if (!scores.length) return null;
  return {
    caption_kind: separationReport(scores, caption, { positive: 'clean', negative: 'mismatched' }),
    image_kind: separationReport(scores, image, { positive: 'clean', negative: 'tiny' }),
  };
}

export function formatReport(report: ScoreReport, trustedRule: string): string {
  const section = (title: string, r: SeparationReport) => [
    `### ${title} (${r.rows} rows)`, '',
    `| kind | rows | mean score | median | share of pool | share of the top ${Math.round(r.topFraction * 100)}% |`,
    '|---|---|---|---|---|---|',
    ...Object.entries(r.byLabel).map(([k, g]) => `| ${k} | ${g.rows} | ${g.mean.toFixed(4)} | ${g.median.toFixed(4)} | ${(g.shareOfPool * 100).toFixed(1)}% | ${(g.shareOfTop * 100).toFixed(1)}% |`),
    '',
    r.auc ? `AUC ${r.auc.positive} vs ${r.auc.negative}: **${r.auc.value.toFixed(3)}** (0.5: no separation; 1: every ${r.auc.positive} row above every ${r.auc.negative} row)` : '',
    '',
  ].join('\n');
  return [
    '# dcw pool score: how the scorer ranks the ground-truth noise kinds', '',
    `Trusted subset: ${trustedRule}. The ground truth (ground_truth/truth.parquet) is read for this report only.`,
    'Top fraction: the rows `dcw filter --name clip_score --arch l14 --fraction 0.3` keeps (ties aside).', '',
    section('caption kind', report.caption_kind),
    section('image kind', report.image_kind),
  ].join('\n');
}

/** Renames every staged file into place, or none: the files replaced are kept as hard links until the end. */
async function commit(moves: readonly { from: string; to: string }[], backupDir: string): Promise<void> {
  await mkdir(backupDir, { recursive: true });
  const done: { to: string; backup?: string }[] = [];
  try {
    for (const [i, m] of moves.entries()) {
      let backup: string | undefined;
      if (existsSync(m.to)) {
        backup = join(backupDir, `${i}-${basename(m.to)}`);
        // a folder (scorer/) is moved aside; a file is linked, so it stays in place until the rename replaces it
        if ((await stat(m.to)).isDirectory()) await rename(m.to, backup);
        else await link(m.to, backup);
      }
      done.push({ to: m.to, backup });
      await rename(m.from, m.to);
    }
  } catch (err) {
    for (const d of done.reverse()) {
      try {
        if (d.backup) {
          if ((await stat(d.backup)).isDirectory()) await rm(d.to, { recursive: true, force: true });
          await rename(d.backup, d.to);
        } else await rm(d.to, { recursive: true, force: true });
      } catch {
        // best effort: report the first error
      }
    }
    throw err;
  }
}

export async function scorePoolDir(o: PoolScoreOptions): Promise<PoolScoreOutcome> {
  const log = o.log ?? (() => {});
  const scale = scorerScale(o.scale);
  if (!(Number.isSafeInteger(o.seed) && o.seed >= 0)) throw new UserError(`--seed must be a non-negative integer, got ${o.seed}`);
  const pool = resolve(o.pool);
  for (const need of ['metadata', 'shards']) {
    if (!existsSync(join(pool, need))) throw new UserError(`--pool ${o.pool}: no ${need}/ (build the embedded default with 'dcw pool build')`);
  }
  const rule = await trustedRule(o.trusted);
  const listing = await listMetadataFiles(join(pool, 'metadata'));
  try {
    // the official scripts read every name containing ".parquet"; only <stem>.parquet has an npz partner
    const odd = listing.files.filter((m) => !m.name.endsWith('.parquet'));
    if (odd.length) throw new UserError(`${odd[0]!.name}: not a <stem>.parquet name, but the filters read it as metadata; move it out of metadata/`);
    const found = await existingScores(pool, listing.files);
    if (found.length && !o.overwrite) throw new UserError(`--pool ${o.pool} already has scores (${found[0]}${found.length > 1 ? `, and ${found.length - 1} more` : ''}); pass --overwrite to replace them`);
    await removeStaleStaging(pool);
    const detector = needsLanguage(rule) ? await loadFastTextDetector().catch((err: Error) => { throw new UserError(`pool score: ${err.message}`); }) : undefined;

    const device = await openTrainingBackend(o.gpu);
    let result: ScorePoolResult;
    try {
      log(`scoring ${pool} with ${scale.name} (seed ${o.seed}) on ${device.device}; trusted subset: ${describeTrusted(rule)}`);
      result = await scorePool({
        backend: device.backend, scale, seed: o.seed, metadata: listing.files, poolShards: new FileShardStore(join(pool, 'shards')),
        codec: new SharpImageCodec(), tokenizer: o.tokenizer, trusted: rule, detector, allowMissing: o.allowMissing,
        batchSize: o.batchSize, logEvery: o.logEvery, log, onTrainProgress: o.onTrainProgress, onEmbedProgress: o.onEmbedProgress,
      });
    } catch (err) {
      if (err instanceof MissingSamplesError) throw new UserError(`${err.message} (--allow-missing scores such rows null)`);
      if (err instanceof RecipeError || (err instanceof RangeError && !(err instanceof FormatError))) throw new UserError(`pool score: ${err.message}`);
      throw err;
    } finally {
      device.close();
    }

    // stage every new file, then move them all into place
    const staging = join(pool, `${STAGING_PREFIX}${process.pid}-${randomBytes(4).toString('hex')}`);
    try {
      const moves: { from: string; to: string }[] = [];
      const enc = new TextEncoder();
      for (const f of result.files) {
        const stem = basename(f.name).replace(/\.parquet$/, '');
        const source = listing.files.find((m) => m.name === f.name)!;
        for (const [name, bytes] of [[`${stem}.parquet`, await scoredParquet(source, f.scores)], [`${stem}.npz`, embeddingsNpz(f)]] as const) {
          const staged = join(staging, 'metadata', name);
          await mkdir(join(staging, 'metadata'), { recursive: true });
          await writeFileAtomic(staged, bytes);
          moves.push({ from: staged, to: join(pool, 'metadata', name) });
        }
      }
      const scorer = join(staging, SCORER_DIR);
      await mkdir(join(scorer, 'checkpoints'), { recursive: true });
      await writeFileAtomic(join(scorer, 'checkpoints', 'epoch_latest.safetensors'), result.weights);
      await writeFileAtomic(join(scorer, 'checkpoints', 'epoch_latest.json'), stateBytes(result.state));
      const info: TrainInfo = {
        scale: scale.name, checkpoint: join('checkpoints', 'epoch_latest.safetensors'), scale_config: scale,
        data_dir: join(pool, 'shards'), model: result.model, seed: o.seed, num_checkpoints: scale.numCheckpoints,
      };
      await writeInfo(scorer, info);
      const truth = await readTruth(join(pool, 'ground_truth', 'truth.parquet'));
      const report = truth ? scoreReport(result, truth) : null;
      const record = {
        format: SCORER_FORMAT,
        what: 'a CLIP trained on a trusted subset of this pool; its image-text cosine fills both score columns and its embeddings both npz pairs',
        columns: `${SCORE_COLUMNS.join(' and ')} both hold this scorer's score, and b32_img/l14_img, b32_txt/l14_txt its ${result.dim}-d embeddings (float16): the official names, kept for the official tools; not OpenAI CLIP B/32 or L/14. Official thresholds (0.25, 0.28) do not carry over: filter with --fraction.`,
        scale: scale.name, scale_config: scale, model: result.model, embed_dim: result.dim, seed: o.seed, device: device.device,
        trusted: result.trusted,
        train: { steps: result.state.step, samples_seen: result.state.samplesSeen, losses: result.state.losses.map((l) => [l.step, l.loss]) },
        rows: result.rows, missing: result.missing, unmatched_shard_samples: result.unmatched, repeated_shard_samples: result.repeated,
        files: result.files.map((f) => ({ metadata: `metadata/${basename(f.name)}`, npz: `metadata/${basename(f.name).replace(/\.parquet$/, '.npz')}`, rows: f.rows, missing: f.missing })),
        seconds: Object.fromEntries(Object.entries(result.seconds).map(([k, v]) => [k, Math.round(v * 10) / 10])),
      };
      await writeFileAtomic(join(scorer, 'scorer.json'), enc.encode(`${JSON.stringify(record, null, 2)}\n`));
      if (report) {
        await writeFileAtomic(join(scorer, 'report.json'), enc.encode(`${JSON.stringify(report, null, 2)}\n`));
        await writeFileAtomic(join(scorer, 'report.md'), enc.encode(formatReport(report, result.trusted.rule)));
      }
      moves.push({ from: scorer, to: join(pool, SCORER_DIR) });
      await commit(moves, join(staging, 'replaced'));
      return { result, written: moves.map((m) => m.to), report, device: device.device };
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  } finally {
    await listing.close();
  }
}
