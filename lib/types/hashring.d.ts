// Minimal typings for the `hashring` package (it ships none).
declare module 'hashring' {
  type ServerSpec = string | string[] | Record<string, number | { weight?: number; vnodes?: number }>;
  interface HashRingOptions {
    'vnode count'?: number;
    'max cache size'?: number;
    compatibility?: 'hash_ring';
    replicas?: number;
  }
  class HashRing {
    /** `algorithm`: a crypto hash name, or a function returning the key's digest bytes (used in its place). */
    constructor(servers?: ServerSpec, algorithm?: string | ((key: string) => Buffer), options?: HashRingOptions);
    get(key: string): string;
    range(key: string, size?: number, unique?: boolean): string[];
    has(server: string): boolean;
    add(servers: ServerSpec): this;
    remove(server: string): this;
    reset(): this;
    end(): this;
  }
  export = HashRing;
}
