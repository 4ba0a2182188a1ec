import { closeSync, openSync, writeSync } from 'node:fs';
import type { Observer, TimedEvent } from '../events.ts';

/**
 * Appends every event of a run to `<cache>/runs/<runId>.ndjson`, one JSON object per line. Each
 * line is written with one write call, so a crash loses at most the line being written.
 */
export function ndjsonLogObserver(pathForRun: (runId: string) => string): { observer: Observer; close(): void } {
  let fd: number | undefined;
  let pending: TimedEvent[] = [];
  const observer: Observer = (event) => {
    if (event.type === 'run-started') {
      fd = openSync(pathForRun(event.runId), 'a');
      for (const e of pending) writeSync(fd, `${JSON.stringify(e)}\n`);
      pending = [];
    }
    if (fd === undefined) {
      pending.push(event);
      return;
    }
    writeSync(fd, `${JSON.stringify(event)}\n`);
    if (event.type === 'run-finished') {
      closeSync(fd);
      fd = undefined;
    }
  };
  return {
    observer,
    close() {
      if (fd !== undefined) closeSync(fd);
      fd = undefined;
    },
  };
}
