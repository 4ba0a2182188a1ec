import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { defineStage } from '../../src/engine/stage.ts';

/** Counts to `steps`, saving progress in the checkpoint directory; throws once at `crashAt` on a fresh start. */
export default defineStage<{ steps: number; crashAt?: number; crashFlag: string }>({
  kind: 'test-resumable',
  version: 1,
  paramsSchema: {
    type: 'object',
    additionalProperties: false,
    properties: { steps: { type: 'integer' }, crashAt: { type: 'integer' }, crashFlag: { type: 'string' } },
    required: ['steps', 'crashFlag'],
  },
  outputs: { report: 'report' },
  async run(ctx) {
    const file = join(ctx.checkpointDir, 'step.json');
    const resumedFrom = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as { step: number }).step : 0;
    for (let step = resumedFrom; step < ctx.params.steps; step++) {
      if (step === ctx.params.crashAt && !existsSync(ctx.params.crashFlag)) {
        writeFileSync(ctx.params.crashFlag, 'crashed');
        throw new Error(`simulated crash at step ${step}`);
      }
      writeFileSync(file, JSON.stringify({ step: step + 1 }));
    }
    return { report: { steps: ctx.params.steps, resumedFrom } };
  },
});
