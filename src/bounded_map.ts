/**
 * @module
 * A map with a bound on its size that drops its oldest entry first, for the
 * caches keyed by what clients name (resolved host names, Mooncake bootstrap
 * servers): a flood of new keys costs a bounded amount of memory.
 */

/** A map of at most a limit's entries. */
export interface BoundedMap<V> {
  get(key: string): V | undefined;
  /** Stores `value` as the newest entry, dropping the oldest past the limit. */
  set(key: string, value: V): void;
  delete(key: string): void;
  readonly size: number;
}

/** Options of `createBoundedMap`. */
export interface BoundedMapOptions {
  /** A read makes the entry the newest (least recently used dropped first). */
  readonly touchOnGet?: boolean;
}

/** Creates an empty map of at most `limit` entries. */
export function createBoundedMap<V>(
  limit: number,
  options: BoundedMapOptions = {},
): BoundedMap<V> {
  // A Map iterates in insertion order: the first key is the oldest.
  const entries = new Map<string, V>();
  return {
    get(key) {
      const value = entries.get(key);
      if (options.touchOnGet && value !== undefined) {
        entries.delete(key);
        entries.set(key, value);
      }
      return value;
    },
    set(key, value) {
      entries.delete(key);
      entries.set(key, value);
      if (entries.size <= limit) return;
      const oldest = entries.keys().next();
      if (!oldest.done) entries.delete(oldest.value);
    },
    delete(key) {
      entries.delete(key);
    },
    get size() {
      return entries.size;
    },
  };
}
