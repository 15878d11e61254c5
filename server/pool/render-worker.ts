/**
 * A render process (forked by render-pool.ts): takes jobs over IPC, renders each, writes it into the
 * render cache (temp file + rename, so a killed process never leaves half a picture), and reports each job
 * before starting the next, so that the parent knows which input a crash happened on.
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import sharp from 'sharp';
import { encodeFingerprint, fingerprint } from '../../src/core/pool/contamination.ts';
import { renderPicture } from './render.ts';
import type { RenderJob, WorkerMessage } from './render-pool.ts';

sharp.concurrency(1);
sharp.cache(false);

const send = (m: WorkerMessage): Promise<void> => new Promise((resolve) => process.send!(m, () => resolve()));

process.on('message', async (msg: { jobs: RenderJob[] }) => {
  for (const job of msg.jobs) {
    await send({ type: 'start', id: job.id });
    try {
      const out = await renderPicture(job.ref, job.aspect, job.spec);
      mkdirSync(dirname(job.out), { recursive: true });
      // the fingerprint of the encoded picture, as `dcw contamination` computes it from the file
      const { data, info } = await sharp(out.bytes).raw().toBuffer({ resolveWithObject: true });
      const fp = encodeFingerprint(fingerprint(data, info.width, info.height, info.channels));
      const tmpFp = `${job.out}.fp.${process.pid}.tmp`;
      writeFileSync(tmpFp, fp);
      renameSync(tmpFp, `${job.out}.fp`);
      const tmp = `${job.out}.${process.pid}.tmp`;
      writeFileSync(tmp, out.bytes);
      renameSync(tmp, job.out);
      await send({ type: 'done', id: job.id });
    } catch (err) {
      await send({ type: 'error', id: job.id, message: (err as Error).message });
    }
  }
  await send({ type: 'idle' });
});
