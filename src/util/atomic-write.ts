import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { open, rename, unlink } from 'node:fs/promises';

/**
 * Writes a file so that readers see either the old content or the new, never a partial file:
 * the bytes go to a temp file (in `tmpDir`, which must be on the same filesystem, else beside the
 * destination), are fsynced, and the temp file is renamed over the destination.
 */
export async function writeFileAtomic(dest: string, data: string | Uint8Array, opts: { tmpDir?: string } = {}): Promise<void> {
  const tmp = join(opts.tmpDir ?? dirname(dest), `.${basename(dest)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const fh = await open(tmp, 'wx');
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, dest);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
}
