/**
 * The training metrics log: JSON Lines, one object per step (step, loss terms, lr, crops/s, step
 * time…). Each record is written with its newline in one append, so a crash leaves at most one
 * torn line at the end, which the next open drops.
 */
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

export class MetricsError extends Error {
  override name = 'MetricsError';
}

/** One log line. Values must be JSON: NaN and ±Infinity are written as null. */
export interface MetricsRecord {
  step: number;
  [key: string]: unknown;
}

export interface ParsedMetrics {
  records: MetricsRecord[];
  /** Lines dropped from the end because a crash cut them short. */
  tornLines: number;
}

/**
 * Parses metrics text. Unparseable lines at the end (a torn write, or the zeros a filesystem may
 * leave after a power cut) are dropped; a bad line followed by good ones is an error.
 */
export function parseMetrics(text: string, file = 'metrics log'): ParsedMetrics {
  const lines = text.split('\n');
  // A last line without its newline was cut mid-write even if it happens to parse.
  const unterminated = lines.pop() !== '' ? 1 : 0;
  const parsed: Array<MetricsRecord | Error> = lines.map((line) => {
    try {
      const v = JSON.parse(line) as unknown;
      if (typeof v !== 'object' || v === null || Array.isArray(v) || typeof (v as MetricsRecord).step !== 'number') {
        return new Error('not an object with a numeric "step"');
      }
      return v as MetricsRecord;
    } catch (e) {
      return new Error(`not JSON: ${(e as Error).message}`);
    }
  });
  let good = parsed.length;
  while (good > 0 && parsed[good - 1] instanceof Error) good--;
  const records: MetricsRecord[] = [];
  for (let i = 0; i < good; i++) {
    const r = parsed[i]!;
    if (r instanceof Error) throw new MetricsError(`${file}: line ${i + 1} is damaged (${r.message}) but later lines are not`);
    records.push(r);
  }
  return { records, tornLines: parsed.length - good + unterminated };
}

/** Reads a metrics log, dropping a torn tail. */
export function readMetrics(path: string): MetricsRecord[] {
  if (!existsSync(path)) throw new MetricsError(`metrics log ${path} does not exist`);
  return parseMetrics(readFileSync(path, 'utf8'), path).records;
}

function serialize(records: readonly MetricsRecord[]): string {
  return records.map((r) => `${JSON.stringify(r)}\n`).join('');
}

function rewriteSync(path: string, text: string): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    unlinkSync(tmp);
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, path);
}

export interface MetricsOpenOptions {
  /** On resume: drop records of steps after this one (the checkpoint's step). */
  truncateAfterStep?: number;
  /** fsync after this many appends (default 50); `flush()` and `close()` always fsync. */
  fsyncEvery?: number;
}

export class MetricsLog {
  private fd: number | undefined;
  private unsynced = 0;
  private _count: number;
  private _lastStep: number | undefined;

  private constructor(
    readonly path: string,
    records: readonly MetricsRecord[],
    /** What open() removed: a torn tail, and records after `truncateAfterStep`. */
    readonly dropped: { tornLines: number; afterStep: number },
    private readonly fsyncEvery: number,
  ) {
    this._count = records.length;
    this._lastStep = records.at(-1)?.step;
    this.fd = openSync(path, 'a');
  }

  /** Opens (creating if needed) a log for appending, repairing a torn tail and truncating on resume. */
  static open(path: string, opts: MetricsOpenOptions = {}): MetricsLog {
    const fsyncEvery = opts.fsyncEvery ?? 50;
    if (!Number.isSafeInteger(fsyncEvery) || fsyncEvery < 1) throw new MetricsError(`metrics log ${path}: fsyncEvery must be a positive integer`);
    const text = existsSync(path) ? readFileSync(path, 'utf8') : '';
    const { records, tornLines } = parseMetrics(text, path);
    const limit = opts.truncateAfterStep;
    const kept = limit === undefined ? records : records.filter((r) => r.step <= limit);
    const afterStep = records.length - kept.length;
    if (tornLines > 0 || afterStep > 0) rewriteSync(path, serialize(kept));
    return new MetricsLog(path, kept, { tornLines, afterStep }, fsyncEvery);
  }

  /** Records in the log (kept at open plus appended since). */
  get count(): number {
    return this._count;
  }

  get lastStep(): number | undefined {
    return this._lastStep;
  }

  append(record: MetricsRecord): void {
    if (this.fd === undefined) throw new MetricsError(`metrics log ${this.path} is closed`);
    if (typeof record.step !== 'number' || !Number.isFinite(record.step)) {
      throw new MetricsError(`metrics log ${this.path}: a record needs a finite numeric step, got ${JSON.stringify(record.step)}`);
    }
    writeSync(this.fd, `${JSON.stringify(record)}\n`);
    this._count++;
    this._lastStep = record.step;
    if (++this.unsynced >= this.fsyncEvery) this.flush();
  }

  /** Makes every appended record durable. */
  flush(): void {
    if (this.fd === undefined || this.unsynced === 0) return;
    fsyncSync(this.fd);
    this.unsynced = 0;
  }

  close(): void {
    if (this.fd === undefined) return;
    this.flush();
    closeSync(this.fd);
    this.fd = undefined;
  }
}
