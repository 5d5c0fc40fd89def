/**
 * The one clock workflow code reads. Temporal's sandbox pins `Date` to the time of the workflow
 * task being run, so this is replay-safe; the purity test (test/unit/workflow-purity.test.ts)
 * bans `Date.now()` elsewhere so every read of time in workflow code is visibly this one.
 */
export function workflowNow(): number {
  return new Date().getTime();
}
