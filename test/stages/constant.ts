import { defineStage } from '../../src/engine/stage.ts';
import { record, sleep } from './record.ts';

interface Params {
  value: number;
  note?: string;
  marker?: string;
  delayMs: number;
}

/** Outputs `value` as a numbers manifest; `note` changes the key but not the output (early cutoff). */
export default defineStage<Params>({
  kind: 'test-constant',
  version: 1,
  paramsSchema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      value: { type: 'number' },
      note: { type: 'string' },
      marker: { type: 'string' },
      delayMs: { type: 'integer', minimum: 0, default: 0 },
    },
    required: ['value'],
  },
  outputs: { numbers: 'numbers' },
  async run(ctx) {
    record(ctx.params.marker, { stage: ctx.stageName, event: 'start' });
    if (ctx.params.delayMs) await sleep(ctx.params.delayMs);
    record(ctx.params.marker, { stage: ctx.stageName, event: 'end' });
    return { numbers: { items: [{ id: 'only', output: { value: ctx.params.value } }] } };
  },
});
