import { defineStage } from '../../src/engine/stage.ts';

/** Writes a blob and outputs a `checkpoint` artifact referencing it. */
export default defineStage<{ text: string }>({
  kind: 'test-blob-writer',
  version: 1,
  paramsSchema: { type: 'object', additionalProperties: false, properties: { text: { type: 'string' } }, required: ['text'] },
  outputs: { checkpoint: 'checkpoint' },
  async run(ctx) {
    const ref = await ctx.store.putBlob(new TextEncoder().encode(ctx.params.text));
    return { checkpoint: { weights: ref } };
  },
});
