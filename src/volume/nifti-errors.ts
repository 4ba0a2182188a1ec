/**
 * The one error type of the NIfTI reader and writer.
 *
 * Every problem with an input or output file is reported as a single `NiftiError` whose message
 * names the file and says what is wrong, e.g.
 *
 *   NIfTI file "/data/ct.nii.gz": gzip stream ends early (truncated file?) after 1048576 of the
 *   3312000 bytes the header needs
 *
 * `file` is the path as given (or the partner file of a .hdr/.img pair when that is the one at
 * fault), `field` names the header field or part of the file at fault (`'file'`, `'gzip'`,
 * `'sizeof_hdr'`, `'magic'`, `'dim'`, `'datatype'`, `'vox_offset'`, `'scl_inter'`,
 * `'extensions'`, `'data'`, `'img'`, `'affine'`, `'volume'`, `'write'`), and `problem` is the
 * message without the file prefix.
 */
export class NiftiError extends Error {
  readonly file: string;
  readonly field: string;
  readonly problem: string;

  constructor(file: string, field: string, problem: string, options?: { cause?: unknown }) {
    super(`NIfTI file "${file}": ${problem}`, options);
    this.name = 'NiftiError';
    this.file = file;
    this.field = field;
    this.problem = problem;
  }
}

export function isNiftiError(e: unknown): e is NiftiError {
  return e instanceof NiftiError;
}
