import { defineStage } from '../../src/engine/stage.ts';
import { record, sleep } from './record.ts';

interface Params {
  marker?: string;
  delayMs: number;
  scale: number;
}

/** Whole-stage test stage: sums the numbers of its input manifest. */
export default defineStage<Params>({
  kind: 'test-sum',
  version: 1,
  paramsSchema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      marker: { type: 'string' },
      delayMs: { type: 'integer', minimum: 0, default: 0 },
      scale: { type: 'number', default: 1 },
    },
  },
  inputs: { numbers: 'numbers' },
  outputs: { total: 'report' },
  async run(ctx) {
    record(ctx.params.marker, { stage: ctx.stageName, event: 'start' });
    if (ctx.params.delayMs) await sleep(ctx.params.delayMs);
    const items = (ctx.inputs.numbers!.value as { items: Array<{ output: { value: number } }> }).items;
    const sum = items.reduce((s, i) => s + i.output.value, 0) * ctx.params.scale;
    record(ctx.params.marker, { stage: ctx.stageName, event: 'end' });
    return { total: { sum } };
  },
});
