import { parseArgs } from 'node:util';
import type { z } from 'zod';

/**
 * The command line of the in-process benches (`bench:onboarding`, `bench:token-rotation`): the
 * same flag handling and exit codes for both, so a script driving them can rely on them
 * (0 target met, 3 not met, 1 the run failed, 2 bad flags).
 */

const camel = (flag: string) => flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/**
 * Reads `--<flag> VALUE` for each of `flags` (plus `--help`) into `schema`, each under its
 * camel-case name (`--ig-share` → `igShare`). `--help` prints `usage` and exits 0; values the
 * schema refuses are printed with `usage` and exit 2; an unknown flag throws (parseArgs, strict).
 */
export function parseBenchFlags<S extends z.ZodType>(usage: string, flags: readonly string[], schema: S): z.output<S> {
  const parsed = parseArgs({
    options: { ...Object.fromEntries(flags.map((f) => [f, { type: 'string' as const }])), help: { type: 'boolean', short: 'h' } },
    strict: true,
    allowPositionals: false,
  });
  if (parsed.values.help) {
    process.stdout.write(`${usage}\n`);
    process.exit(0);
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  const result = schema.safeParse(Object.fromEntries(flags.map((f) => [camel(f), values[f]])));
  if (!result.success) {
    process.stderr.write(`${result.error.issues.map((i) => `--${String(i.path[0])}: ${i.message}`).join('\n')}\n${usage}\n`);
    process.exit(2);
  }
  return result.data;
}

/** Runs a bench to its exit code; a throw is exit 1 with its stack. */
export function runBench(name: string, main: () => Promise<number>): void {
  main().then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`${name} failed: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
