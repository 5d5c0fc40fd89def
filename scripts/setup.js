'use strict';
// Runs before `npm start` and `npm test` (npm's prestart/pretest): a fresh clone needs nothing
// installed by hand. Installs npm dependencies when the lock file changed, and the Temporal CLI
// unless an external Temporal (TEMPORAL_ADDRESS) or an existing binary is configured.
const { execFileSync } = require('node:child_process');
const { existsSync, readFileSync } = require('node:fs');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const lock = path.join(ROOT, 'package-lock.json');
const installedLock = path.join(ROOT, 'node_modules', '.package-lock.json');

function dependenciesCurrent() {
  if (!existsSync(installedLock)) return false;
  // npm rewrites node_modules/.package-lock.json on every install; compare the package sets.
  const wanted = JSON.parse(readFileSync(lock, 'utf8')).packages || {};
  const have = JSON.parse(readFileSync(installedLock, 'utf8')).packages || {};
  // Optional packages (other platforms' binaries) are legitimately missing.
  return Object.entries(wanted).every(([k, pkg]) => k === '' || pkg.optional || (have[k] && have[k].version === pkg.version));
}

if (!dependenciesCurrent()) {
  process.stderr.write('installing npm dependencies (npm ci)\n');
  const npm = process.env.npm_execpath ? [process.execPath, [process.env.npm_execpath]] : ['npm', []];
  execFileSync(npm[0], [...npm[1], 'ci', '--no-audit', '--no-fund'], { cwd: ROOT, stdio: 'inherit' });
}

const needsCli = process.argv.includes('--test') || !process.env.TEMPORAL_ADDRESS;
if (needsCli) {
  const { resolveTemporalCli, resolveTestServer } = require('./temporal-cli');
  resolveTemporalCli({ install: true });
  if (process.argv.includes('--test')) resolveTestServer({ install: true });
}
