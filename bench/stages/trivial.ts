import { defineStage } from '../../src/engine/stage.ts';

/** 10,000-item stage whose items do (almost) nothing: measures the engine's own overhead. */
export default defineStage<{ count: number }>({
  kind: 'bench-trivial',
  version: 1,
  paramsSchema: { type: 'object', additionalProperties: false, properties: { count: { type: 'integer', minimum: 1 } }, required: ['count'] },
  outputs: { values: 'numbers' },
  fingerprint: (ctx) => ({ count: ctx.params.count }),
  items: {
    list: (ctx) => Array.from({ length: ctx.params.count }, (_, i) => ({ id: `item-${i}`, fingerprint: i, data: i })),
    run: (ctx) => ({ value: (ctx.item.data as number) * 2 }),
    itemParams: () => null,
  },
});
