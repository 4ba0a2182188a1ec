/** SwinUNETR (MONAI 1.4, use_v2) in TensorFlow.js — public API. */
export {
  captureInto,
  createSwinUnetr,
  disposeSwinUnetr,
  encoderVariableNames,
  resolveConfig,
  swinUnetrEncoderFeatures,
  swinUnetrForward,
  swinUnetrParamDefs,
  swinUnetrVariableSpec,
  swinViTForward,
  type SwinUnetr,
  type SwinUnetrConfig,
  type SwinUnetrOptions,
} from './swinunetr.ts';
export type { Capture } from './swin-transformer.ts';
export { assignVariables, disposeVariables, type ModelVariables, type VariableLayout, type VariableSpec } from './params.ts';
export { MERGING_OFFSETS, MERGING_V2_OFFSETS } from './patch-merging.ts';
export { relativePositionIndex } from './window-attention.ts';
