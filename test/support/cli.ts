import { spawn } from 'node:child_process';
import { ROOT } from './paths';
import { TEST_APP_SECRET, TEST_VERIFY_TOKEN } from './stack';

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the operator CLI as an operator would: `node --import tsx src/cli.ts …` in a child process,
 * with the test settings every command needs plus `env`, and `stdin` piped in.
 */
export function runCli(args: string[], opts: { databaseUrl: string; masterKeys: string; env?: Record<string, string>; stdin?: string }): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], {
      cwd: ROOT,
      env: {
        ...process.env,
        NODE_ENV: 'test',
        LOG_LEVEL: 'silent',
        DATABASE_URL: opts.databaseUrl,
        META_APP_SECRET: TEST_APP_SECRET,
        META_VERIFY_TOKEN: TEST_VERIFY_TOKEN,
        MASTER_KEYS: opts.masterKeys,
        TEMPORAL_ADDRESS: process.env.TEST_TEMPORAL_ADDRESS ?? 'localhost:7233',
        ...opts.env,
      },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(opts.stdin ?? '');
  });
}
