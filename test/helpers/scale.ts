/**
 * Data sizes of the heavier real-process tests. `npm test` runs a short version of each;
 * `npm run test:full` (KV_TEST_FULL=1) runs the sizes the issues name, e.g. listing and
 * joining a 50,000-key cluster. Both exercise the same paths: the short sizes still cross
 * several listing pages, stream batches and Merkle segments.
 */
export const FULL = process.env['KV_TEST_FULL'] === '1';

/** `full` under KV_TEST_FULL=1, else `short`. */
export function testSize(full: number, short: number): number {
  return FULL ? full : short;
}

/** 50000 → "50,000", for test titles that name their size. */
export function count(n: number): string {
  return n.toLocaleString('en-US');
}
