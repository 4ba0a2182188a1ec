import { createHash } from 'node:crypto';
import canonicalize from 'canonicalize';

/** JSON-compatible value: what cache keys, records and artifact descriptors are made of. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** RFC 8785 canonical JSON: the same value always gives the same bytes, whatever the key order. */
export function canonicalJson(value: unknown): string {
  const text = canonicalize(value);
  if (text === undefined) throw new Error('value cannot be serialised as canonical JSON');
  return text;
}

export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** sha256 of the canonical JSON of a value, as `sha256:<hex>`. */
export function hashJson(value: unknown): string {
  return `sha256:${sha256Hex(canonicalJson(value))}`;
}

/** Shortens a `sha256:<hex>` hash for display. */
export function shortHash(hash: string, length = 10): string {
  return hash.replace(/^sha256:/, '').slice(0, length);
}
