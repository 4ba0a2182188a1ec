import { describe, expect, it } from 'vitest';
import { appendFileSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MetricsLog, parseMetrics, readMetrics } from '../../src/train/metrics.ts';
import { tempDir } from '../helpers.ts';

const rec = (step: number) => ({ step, loss: 1 / (step + 1), lossInter: 0.5, lr: 1e-4, cropsPerSec: 4.8, stepMs: 210 + step });

describe('metrics log', () => {
  it('appends one JSON object per line and reads them back', () => {
    const path = join(tempDir(), 'metrics.jsonl');
    const log = MetricsLog.open(path);
    for (let s = 1; s <= 5; s++) log.append(rec(s));
    log.close();
    expect(readFileSync(path, 'utf8').split('\n')).toHaveLength(6);
    expect(readMetrics(path)).toEqual([1, 2, 3, 4, 5].map(rec));
    expect(log.count).toBe(5);
    expect(log.lastStep).toBe(5);
    expect(() => log.append(rec(6))).toThrow(/metrics log .*metrics\.jsonl is closed/);
  });

  it('continues an existing log on reopen', () => {
    const path = join(tempDir(), 'metrics.jsonl');
    const a = MetricsLog.open(path);
    a.append(rec(1));
    a.close();
    const b = MetricsLog.open(path, { fsyncEvery: 1 });
    expect(b.count).toBe(1);
    b.append(rec(2));
    b.close();
    expect(readMetrics(path).map((r) => r.step)).toEqual([1, 2]);
  });

  it('on resume drops steps after the checkpoint, so the resumed log equals the uninterrupted one', () => {
    const dir = tempDir();
    const full = join(dir, 'full.jsonl');
    const crashed = join(dir, 'crashed.jsonl');
    const u = MetricsLog.open(full);
    for (let s = 1; s <= 10; s++) u.append(rec(s));
    u.close();
    // The crashed run logged up to step 7 (and half of step 8); its checkpoint is at step 5.
    const c = MetricsLog.open(crashed);
    for (let s = 1; s <= 7; s++) c.append(rec(s));
    c.close();
    appendFileSync(crashed, JSON.stringify(rec(8)).slice(0, 20));

    const r = MetricsLog.open(crashed, { truncateAfterStep: 5 });
    expect(r.dropped).toEqual({ tornLines: 1, afterStep: 2 });
    expect(r.count).toBe(5);
    expect(r.lastStep).toBe(5);
    for (let s = 6; s <= 10; s++) r.append(rec(s));
    r.close();
    expect(readFileSync(crashed, 'utf8')).toBe(readFileSync(full, 'utf8'));
  });

  it('drops a torn last line, even one that parses, and a zero-filled tail', () => {
    const path = join(tempDir(), 'metrics.jsonl');
    writeFileSync(path, `${JSON.stringify(rec(1))}\n${JSON.stringify(rec(2))}`);
    expect(readMetrics(path).map((r) => r.step)).toEqual([1]);
    writeFileSync(path, `${JSON.stringify(rec(1))}\n${'\0'.repeat(30)}\n\0\0\0`);
    const log = MetricsLog.open(path);
    expect(log.dropped).toEqual({ tornLines: 2, afterStep: 0 });
    log.append(rec(2));
    log.close();
    expect(readFileSync(path, 'utf8')).toBe(`${JSON.stringify(rec(1))}\n${JSON.stringify(rec(2))}\n`);
  });

  it('refuses damage in the middle of the log, naming the file and line', () => {
    const path = join(tempDir(), 'metrics.jsonl');
    writeFileSync(path, `${JSON.stringify(rec(1))}\n{oops\n${JSON.stringify(rec(3))}\n`);
    expect(() => readMetrics(path)).toThrow(/metrics\.jsonl: line 2 is damaged \(not JSON: .*\) but later lines are not/);
    expect(() => MetricsLog.open(path)).toThrow(/line 2 is damaged/);
    expect(() => parseMetrics('[1]\n{"step":2}\n', 'm.jsonl')).toThrow(/m\.jsonl: line 1 is damaged \(not an object with a numeric "step"\)/);
  });

  it('needs a numeric step; writes NaN as null; reports a missing file', () => {
    const path = join(tempDir(), 'metrics.jsonl');
    const log = MetricsLog.open(path);
    expect(() => log.append({ step: Number.NaN })).toThrow(/needs a finite numeric step/);
    log.append({ step: 1, loss: Number.NaN });
    log.close();
    expect(readMetrics(path)).toEqual([{ step: 1, loss: null }]);
    expect(() => readMetrics(join(tempDir(), 'none.jsonl'))).toThrow(/metrics log .*none\.jsonl does not exist/);
    expect(parseMetrics('')).toEqual({ records: [], tornLines: 0 });
  });

  it('does not rewrite an intact log on open', () => {
    const path = join(tempDir(), 'metrics.jsonl');
    writeFileSync(path, `${JSON.stringify(rec(1))}\n`);
    const inode = statSync(path).ino;
    const log = MetricsLog.open(path, { truncateAfterStep: 3 });
    log.close();
    expect(log.dropped).toEqual({ tornLines: 0, afterStep: 0 });
    expect(statSync(path).ino).toBe(inode); // a rewrite would have renamed a new file into place
    MetricsLog.open(path, { truncateAfterStep: 0 }).close();
    expect(statSync(path).ino).not.toBe(inode);
    expect(readMetrics(path)).toEqual([]);
    expect(() => MetricsLog.open(path, { fsyncEvery: 0 })).toThrow(/fsyncEvery must be a positive integer/);
  });
});
