import { defineStage } from '../../src/engine/stage.ts';

/** Passes a numbers manifest through unchanged (used to build cycles and chains). */
export default defineStage({
  kind: 'test-passthrough',
  version: 1,
  paramsSchema: { type: 'object', additionalProperties: false, properties: {} },
  inputs: { numbers: 'numbers' },
  outputs: { numbers: 'numbers' },
  async run(ctx) {
    return { numbers: ctx.inputs.numbers!.value };
  },
});
