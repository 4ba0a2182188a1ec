import { createLogUpdate } from 'log-update';
import type { Observer, TimedEvent } from '../events.ts';
import { shortHash } from '../../util/hash.ts';

interface StageView {
  state: 'waiting' | 'running' | 'cached' | 'done' | 'failed' | 'skipped';
  done: number;
  total?: number;
  cachedItems: number;
  startedAt?: number;
  note?: string;
  durationMs?: number;
  error?: string;
}

export interface ConsoleOptions {
  stream?: NodeJS.WriteStream;
  /** Live redrawing view; defaults to whether the stream is a TTY. */
  live?: boolean;
  verbose?: boolean;
}

const SPIN = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

function fmtDuration(ms: number): string {
  if (!Number.isFinite(ms)) return '?';
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

function rateAndEta(v: StageView, now: number): string {
  if (!v.startedAt || v.total === undefined) return '';
  const fresh = v.done - v.cachedItems;
  const elapsed = now - v.startedAt;
  if (fresh <= 0 || elapsed <= 0) return '';
  const rate = (fresh * 1000) / elapsed;
  const eta = ((v.total - v.done) / rate) * 1000;
  return ` ${rate >= 10 ? rate.toFixed(0) : rate.toFixed(2)} it/s ETA ${fmtDuration(eta)}`;
}

/**
 * Shows a run as it happens: on a TTY a live view with one line per stage (items, rate, ETA);
 * otherwise plain lines, with item progress at most every 10% or 10 seconds.
 */
export function consoleObserver(opts: ConsoleOptions = {}): { observer: Observer; stop(): void } {
  const stream = opts.stream ?? process.stderr;
  const live = opts.live ?? Boolean(stream.isTTY);
  const views = new Map<string, StageView>();
  const order: string[] = [];
  const print = (line: string) => stream.write(`${line}\n`);
  const lastPlain = new Map<string, { at: number; pct: number }>();
  let tick = 0;
  const update = live ? createLogUpdate(stream) : undefined;

  const render = () => {
    if (!update) return;
    const now = Date.now();
    tick++;
    const lines = order.map((name) => {
      const v = views.get(name)!;
      const items = v.total !== undefined ? ` ${v.done}/${v.total} items${v.cachedItems ? ` (${v.cachedItems} cached)` : ''}` : '';
      switch (v.state) {
        case 'waiting':
          return `  · ${name}`;
        case 'running':
          return `  ${SPIN[tick % SPIN.length]} ${name}${items}${rateAndEta(v, now)}${v.note ? ` ${v.note}` : ''} [${fmtDuration(now - (v.startedAt ?? now))}]`;
        case 'cached':
          return `  ✔ ${name} cached`;
        case 'done':
          return `  ✔ ${name}${items} ${fmtDuration(v.durationMs ?? 0)}`;
        case 'failed':
          return `  ✖ ${name} failed: ${v.error?.split('\n')[0]}`;
        case 'skipped':
          return `  - ${name} skipped: ${v.error}`;
      }
    });
    update(lines.join('\n'));
  };
  const timer = live ? setInterval(render, 120) : undefined;
  timer?.unref();

  const view = (stage: string): StageView => {
    let v = views.get(stage);
    if (!v) {
      v = { state: 'waiting', done: 0, cachedItems: 0 };
      views.set(stage, v);
      if (!order.includes(stage)) order.push(stage);
    }
    return v;
  };

  const observer: Observer = (e: TimedEvent) => {
    const now = Date.now();
    switch (e.type) {
      case 'run-started':
        order.push(...e.stages.filter((s) => !order.includes(s)));
        e.stages.forEach(view);
        if (!live) print(`voco: run ${e.runId} of ${e.name} (cache ${e.cacheDir})`);
        break;
      case 'stage-planned':
        print(`${e.stage.padEnd(20)} ${e.action === 'run' ? 'will run' : e.action === 'cached' ? 'cached' : 'not selected'}${e.reasons.length && e.action === 'run' ? `: ${e.reasons.join('; ')}` : ''}`);
        break;
      case 'stage-started': {
        const v = view(e.stage);
        v.state = 'running';
        v.startedAt = now;
        if (!live) print(`▶ ${e.stage} running (key ${shortHash(e.key)})${e.reasons.length ? `: ${e.reasons.join('; ')}` : ''}`);
        break;
      }
      case 'stage-cached':
        view(e.stage).state = 'cached';
        if (!live) print(`✔ ${e.stage} cached (key ${shortHash(e.key)})`);
        break;
      case 'items-listed': {
        const v = view(e.stage);
        v.total = e.total;
        v.done = e.cached;
        v.cachedItems = e.cached;
        if (!live) print(`  ${e.stage}: ${e.total} items, ${e.cached} already done`);
        break;
      }
      case 'item-done': {
        const v = view(e.stage);
        v.done = e.done;
        v.total = e.total;
        if (!live) {
          const last = lastPlain.get(e.stage) ?? { at: v.startedAt ?? now, pct: 0 };
          const pct = Math.floor((e.done / Math.max(1, e.total)) * 10);
          if (pct > last.pct || now - last.at > 10_000 || e.done === e.total) {
            print(`  ${e.stage}: ${e.done}/${e.total} items${rateAndEta(v, now)}`);
            lastPlain.set(e.stage, { at: now, pct });
          }
        }
        break;
      }
      case 'item-failed':
        print(`  ${e.skipped ? '⚠ skipped' : '✖ failed'} ${e.stage} item ${e.item}: ${e.error}`);
        break;
      case 'stage-progress': {
        const v = view(e.stage);
        v.note = e.note ?? (e.total ? `${e.done}/${e.total}` : `${e.done}`);
        if (!live) {
          const last = lastPlain.get(e.stage) ?? { at: 0, pct: -1 };
          if (now - last.at > 10_000) {
            print(`  ${e.stage}: ${v.note}`);
            lastPlain.set(e.stage, { at: now, pct: last.pct });
          }
        }
        break;
      }
      case 'stage-finished': {
        const v = view(e.stage);
        v.state = 'done';
        v.durationMs = e.durationMs;
        if (!live) print(`✔ ${e.stage} done in ${fmtDuration(e.durationMs)}`);
        break;
      }
      case 'stage-failed': {
        const v = view(e.stage);
        v.state = 'failed';
        v.error = e.error;
        if (!live) print(`✖ ${e.stage} failed: ${e.error}`);
        break;
      }
      case 'stage-skipped': {
        const v = view(e.stage);
        v.state = 'skipped';
        v.error = e.reason;
        if (!live) print(`- ${e.stage} skipped: ${e.reason}`);
        break;
      }
      case 'log':
        if (e.level !== 'debug' || opts.verbose) {
          const line = `${e.level === 'warn' ? '⚠ ' : ''}${e.stage ? `[${e.stage}] ` : ''}${e.message}`;
          if (update) {
            update.clear();
            print(line);
            render();
          } else print(line);
        }
        break;
      case 'run-finished':
        render();
        update?.done();
        print(`voco: run ${e.status} in ${fmtDuration(e.durationMs)}`);
        break;
    }
  };
  return {
    observer,
    stop() {
      if (timer) clearInterval(timer);
      update?.done();
    },
  };
}
