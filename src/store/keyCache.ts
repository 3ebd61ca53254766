import { LRUCache } from 'lru-cache';

/**
 * An LRU cache of at most `maxKeys` entries that grows as keys come. lru-cache's `max` would allocate room for every
 * key at once (about 40 bytes each: 4 MB per limit at 100,000 keys, held by an idle service); a size of 1 per entry
 * against `maxSize` bounds it the same way without that.
 */
export function keyCache<V extends NonNullable<unknown>>(
  maxKeys: number,
  options: Omit<LRUCache.Options<string, V, unknown>, 'max' | 'maxSize' | 'sizeCalculation'> = {},
): LRUCache<string, V> {
  return new LRUCache<string, V>({ ...options, maxSize: maxKeys, sizeCalculation: () => 1 });
}
