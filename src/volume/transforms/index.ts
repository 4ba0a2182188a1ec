/**
 * MONAI-equivalent volume transforms as pure functions `(volume, params) → { volume, …meta }`
 * (no I/O; outputs may share the input's data array when nothing changes, so treat volumes as
 * immutable), plus the chain spec, its fingerprint and the dictionary (image + label) form.
 */
export { orientation, applyOrnt, ioOrientation, affineToAxcodes, axcodesToOrnt, orntTransform, orntToAxcodes, normalizeAxcodes } from './orientation.ts';
export type { Ornt, OrientationResult } from './orientation.ts';
export { spacing, spacingGeometry, normalizePixdim, SPACING_SKIP_ATOL } from './spacing.ts';
export type { SpacingMode, SpacingGeometry, SpacingResult } from './spacing.ts';
export { scaleIntensityRange } from './scale-intensity-range.ts';
export type { ScaleIntensityRangeParams } from './scale-intensity-range.ts';
export { cropForeground, cropToBox, foregroundBox } from './crop-foreground.ts';
export type { CropBox, CropForegroundOptions, CropForegroundResult, Triple } from './crop-foreground.ts';
export { resize, resizeAffine, torchLinearTable, torchNearestIndex } from './resize.ts';
export type { ResizeMode, ResizeOptions } from './resize.ts';
export { spatialPad, padWidths } from './spatial-pad.ts';
export type { PadMethod, PadWidth, SpatialPadOptions } from './spatial-pad.ts';
export {
  parseTransformChain,
  applyTransformChain,
  transformChainFingerprint,
  TransformSpecError,
  TRANSFORM_KINDS,
  TRANSFORM_VERSIONS,
  TRANSFORM_CHAIN_FORMAT,
} from './chain.ts';
export type {
  TransformStep,
  TransformKind,
  TransformInput,
  TransformOutput,
  TransformStepRecord,
  TransformChainFingerprint,
  TransformFingerprintStep,
} from './chain.ts';
