import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { glob } from 'tinyglobby';

/**
 * Where a dataset's volumes are: a folder + glob, or a MONAI datalist JSON (the
 * `dataset_0.json` shape: `training` / `validation` lists of `{image, label}` with paths
 * relative to the JSON).
 */
export type DatasetSpec =
  | { folder: string; glob?: string; labels?: { folder?: string; suffix?: string; required?: boolean } }
  | { datalist: string; sections?: string[]; base_dir?: string };

export interface DatasetEntry {
  /** Stable item id: the image path relative to the dataset root. */
  id: string;
  image: string;
  label?: string;
  section?: string;
}

export class DatasetError extends Error {
  constructor(
    message: string,
    readonly file: string,
    readonly field?: string,
  ) {
    super(`${file}${field ? ` ${field}` : ''}: ${message}`);
    this.name = 'DatasetError';
  }
}

const NIFTI_EXT = /(\.nii(\.gz)?|\.hdr(\.gz)?)$/;

function stripNiftiExt(name: string): { stem: string; ext: string } {
  const m = NIFTI_EXT.exec(name);
  return m ? { stem: name.slice(0, -m[0].length), ext: m[0] } : { stem: name, ext: '' };
}

/** Lists a dataset's items, sorted by id. Paths in the spec are relative to `baseDir`. */
export async function listDataset(spec: DatasetSpec, baseDir: string): Promise<DatasetEntry[]> {
  if ('datalist' in spec) return listDatalist(spec, baseDir);
  const folder = resolve(baseDir, spec.folder);
  if (!existsSync(folder) || !statSync(folder).isDirectory()) throw new DatasetError('dataset folder not found', folder, 'dataset.folder');
  const pattern = spec.glob ?? '**/*.nii.gz';
  const files = (await glob(pattern, { cwd: folder, onlyFiles: true })).sort();
  const labelSuffix = spec.labels?.suffix;
  const labelFolder = spec.labels?.folder ? resolve(baseDir, spec.labels.folder) : undefined;
  const entries: DatasetEntry[] = [];
  const labelPaths = new Set<string>();
  if (spec.labels) {
    for (const f of files) {
      const { stem, ext } = stripNiftiExt(basename(f));
      if (labelSuffix) labelPaths.add(resolve(labelFolder ?? join(folder, dirname(f)), `${stem}${labelSuffix}${ext}`));
    }
  }
  for (const f of files) {
    const image = join(folder, f);
    if (labelPaths.has(image)) continue; // a label map matched by the same glob is not an image
    const entry: DatasetEntry = { id: f, image };
    if (spec.labels) {
      const { stem, ext } = stripNiftiExt(basename(f));
      const label = resolve(labelFolder ?? join(folder, dirname(f)), `${stem}${labelSuffix ?? ''}${ext}`);
      if (existsSync(label)) entry.label = label;
      else if (spec.labels.required !== false) throw new DatasetError(`no label map for this image (looked for ${label})`, image, 'dataset.labels');
    }
    entries.push(entry);
  }
  if (entries.length === 0) throw new DatasetError(`no files match "${pattern}"`, folder, 'dataset.glob');
  return entries;
}

function listDatalist(spec: { datalist: string; sections?: string[]; base_dir?: string }, baseDir: string): DatasetEntry[] {
  const file = resolve(baseDir, spec.datalist);
  if (!existsSync(file)) throw new DatasetError('datalist not found', file, 'dataset.datalist');
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new DatasetError(`not valid JSON: ${(e as Error).message}`, file);
  }
  const root = spec.base_dir ? resolve(dirname(file), spec.base_dir) : dirname(file);
  const sections = spec.sections ?? ['training'];
  const entries: DatasetEntry[] = [];
  const seen = new Set<string>();
  for (const section of sections) {
    const list = json[section];
    if (!Array.isArray(list)) {
      throw new DatasetError(`has no "${section}" list (it has: ${Object.keys(json).join(', ') || 'nothing'})`, file, section);
    }
    list.forEach((raw, i) => {
      const field = `${section}[${i}]`;
      const item = typeof raw === 'string' ? { image: raw } : (raw as { image?: unknown; label?: unknown });
      if (!item || typeof item.image !== 'string') throw new DatasetError('entry has no "image" path', file, field);
      const image = isAbsolute(item.image) ? item.image : resolve(root, item.image);
      if (!existsSync(image)) throw new DatasetError(`image not found: ${image}`, file, `${field}.image`);
      let label: string | undefined;
      if (item.label !== undefined) {
        if (typeof item.label !== 'string') throw new DatasetError('"label" must be a path', file, `${field}.label`);
        label = isAbsolute(item.label) ? item.label : resolve(root, item.label);
        if (!existsSync(label)) throw new DatasetError(`label not found: ${label}`, file, `${field}.label`);
      }
      const id = relative(root, image);
      if (seen.has(id)) return; // the same volume listed in two sections is one item
      seen.add(id);
      entries.push({ id, image, label, section });
    });
  }
  if (entries.length === 0) throw new DatasetError(`lists no volumes in ${sections.join(', ')}`, file);
  return entries;
}
