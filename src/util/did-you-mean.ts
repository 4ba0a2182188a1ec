import { closest, distance } from 'fastest-levenshtein';

/** The closest candidate to `word`, if it is plausibly a typo of it. */
export function didYouMean(word: string, candidates: readonly string[]): string | undefined {
  if (candidates.length === 0) return undefined;
  const best = closest(word, candidates as string[]);
  const limit = Math.max(2, Math.floor(word.length / 3));
  return distance(word, best) <= limit ? best : undefined;
}

export function didYouMeanHint(word: string, candidates: readonly string[]): string | undefined {
  const best = didYouMean(word, candidates);
  return best ? `did you mean "${best}"?` : undefined;
}
