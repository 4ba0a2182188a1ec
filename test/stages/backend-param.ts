import { defineStage } from '../../src/engine/stage.ts';

/** A stage with a `backend` param: outputs the backend it was given. */
export default defineStage<{ backend: string }>({
  kind: 'test-backend-param',
  version: 1,
  paramsSchema: {
    type: 'object',
    additionalProperties: false,
    properties: { backend: { enum: ['auto', 'tensorflow-gpu', 'tensorflow', 'webgpu', 'cpu'], default: 'auto' } },
  },
  outputs: { report: 'report' },
  environment: (p) => ({ backend: p.backend }),
  async run(ctx) {
    return { report: { backend: ctx.params.backend } };
  },
});
