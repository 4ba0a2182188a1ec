/** Everything the scheduler reports. Renderers, logs and run records are observers of these. */
export type EngineEvent =
  | { type: 'run-started'; runId: string; pipeline: string; name: string; stages: string[]; cacheDir: string }
  | { type: 'stage-planned'; stage: string; action: 'cached' | 'run' | 'skip'; reasons: string[] }
  | { type: 'stage-started'; stage: string; key: string; reasons: string[] }
  | { type: 'stage-cached'; stage: string; key: string }
  | { type: 'items-listed'; stage: string; total: number; cached: number }
  | { type: 'item-done'; stage: string; item: string; durationMs: number; done: number; total: number }
  | { type: 'item-failed'; stage: string; item: string; error: string; skipped: boolean }
  | { type: 'stage-progress'; stage: string; done: number; total?: number; note?: string }
  | { type: 'stage-finished'; stage: string; key: string; durationMs: number; outputs: Record<string, string> }
  | { type: 'stage-failed'; stage: string; error: string; durationMs: number }
  | { type: 'stage-skipped'; stage: string; reason: string }
  | { type: 'log'; stage?: string; level: 'info' | 'warn' | 'debug'; message: string }
  | { type: 'run-finished'; runId: string; status: 'succeeded' | 'failed' | 'interrupted'; durationMs: number };

export type TimedEvent = EngineEvent & { t: string };

export type Observer = (event: TimedEvent) => void;

export class EventBus {
  private readonly observers: Observer[] = [];

  subscribe(observer: Observer): () => void {
    this.observers.push(observer);
    return () => {
      const i = this.observers.indexOf(observer);
      if (i >= 0) this.observers.splice(i, 1);
    };
  }

  emit(event: EngineEvent): void {
    const timed = { ...event, t: new Date().toISOString() } as TimedEvent;
    for (const o of this.observers) o(timed);
  }
}
