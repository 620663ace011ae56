/** Runs fn(0..count-1) with `concurrency` workers; returns the errors it threw (none are lost). */
export async function pool(count: number, concurrency: number, fn: (i: number) => Promise<void>): Promise<unknown[]> {
  const errors: unknown[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      await fn(i).catch((err: unknown) => { errors.push(err); });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return errors;
}
