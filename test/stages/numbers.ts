import { defineStage } from '../../src/engine/stage.ts';
import { record, sleep } from './record.ts';

interface Params {
  count: number;
  factor: number;
  delayMs: number;
  failOn?: number;
  marker?: string;
  on_error: 'fail' | 'skip';
}

/** Item-level test stage: item n → n × factor, after an optional delay. */
export default defineStage<Params>({
  kind: 'test-numbers',
  version: 1,
  paramsSchema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      count: { type: 'integer', minimum: 0 },
      factor: { type: 'number', default: 1 },
      delayMs: { type: 'integer', minimum: 0, default: 0 },
      failOn: { type: 'integer' },
      marker: { type: 'string' },
      on_error: { enum: ['fail', 'skip'], default: 'fail' },
    },
    required: ['count'],
  },
  outputs: { numbers: 'numbers' },
  items: {
    list: (ctx) => Array.from({ length: ctx.params.count }, (_, n) => ({ id: `n${String(n).padStart(5, '0')}`, fingerprint: { n }, data: n })),
    async run(ctx) {
      const n = ctx.item.data as number;
      if (ctx.params.delayMs) await sleep(ctx.params.delayMs);
      if (ctx.params.failOn === n) throw new Error(`item ${n} is broken on purpose`);
      record(ctx.params.marker, { stage: ctx.stageName, item: ctx.item.id });
      return { value: n * ctx.params.factor, draw: ctx.rng().float() };
    },
    onError: (p) => p.on_error,
    itemParams: (p) => ({ factor: p.factor, failOn: p.failOn ?? null }),
  },
});
