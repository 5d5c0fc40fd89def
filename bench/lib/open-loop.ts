/**
 * An open-loop schedule: operation i is due at t0 + i/rate whatever happened to the earlier ones,
 * so a slow system shows up as latency and errors instead of slowing the offered load down (a
 * closed loop would hide it). At most `maxInFlight` operations are outstanding; an operation due
 * while the cap is reached is skipped, not queued (the caller counts it).
 */

export interface OpenLoopRun {
  /** performance.now() and epoch ms of operation 0's due time. */
  t0: number;
  epoch0: number;
  /** From t0 until the last operation was started. */
  sendWindowMs: number;
  /** Resolves when every started operation has settled (each is bounded by its own timeout). */
  settled: Promise<void>;
  /** performance.now() when the last operation settled so far. */
  lastSettled: () => number;
}

export async function openLoop(
  total: number,
  rate: number,
  maxInFlight: number,
  fire: (i: number, dueEpoch: number) => Promise<void>,
  skip: (i: number, dueEpoch: number) => void,
): Promise<OpenLoopRun> {
  const intervalMs = 1000 / rate;
  let next = 0;
  let inFlight = 0;
  let lastSettled = 0;
  let allSettled: () => void = () => undefined;
  const settled = new Promise<void>((r) => (allSettled = r));
  const t0 = performance.now();
  const epoch0 = performance.timeOrigin + t0;
  const start = (i: number) => {
    const dueEpoch = epoch0 + i * intervalMs;
    if (inFlight >= maxInFlight) return skip(i, dueEpoch);
    inFlight++;
    void fire(i, dueEpoch)
      .catch(() => undefined) // fire records its own outcome; a throw must not stall the loop
      .finally(() => {
        lastSettled = performance.now();
        if (--inFlight === 0 && next >= total) allSettled();
      });
  };
  await new Promise<void>((resolve) => {
    const tick = () => {
      const due = Math.min(total, Math.floor((performance.now() - t0) / intervalMs) + 1);
      while (next < due) start(next++);
      if (next >= total) {
        clearInterval(timer);
        resolve();
      }
    };
    const timer = setInterval(tick, 2);
    tick();
  });
  const sendWindowMs = performance.now() - t0;
  if (inFlight === 0) allSettled();
  return { t0, epoch0, sendWindowMs, settled, lastSettled: () => lastSettled };
}
