import { appendFileSync } from 'node:fs';

/** Appends one JSON line to a marker file, so tests (and parent processes) can count executions. */
export function record(marker: string | undefined, entry: Record<string, unknown>): void {
  if (marker) appendFileSync(marker, `${JSON.stringify({ ...entry, pid: process.pid, t: Date.now() })}\n`);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
