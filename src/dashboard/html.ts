/**
 * Server-side HTML for the dashboard: a tagged template that escapes every interpolated value
 * (customer text never reaches these pages — the script fills data in with textContent — but ids
 * from the URL and names do), and the page layout.
 */

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => ENTITIES[c]!);
}

/** Markup that is already safe (built by `html` itself). */
export class SafeHtml {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

type Part = SafeHtml | string | number | boolean | null | undefined | readonly Part[];

function render(part: Part): string {
  if (part === null || part === undefined || part === false) return '';
  if (part instanceof SafeHtml) return part.value;
  if (Array.isArray(part)) return part.map(render).join('');
  return escapeHtml(part);
}

/** `html\`<p>${value}</p>\``: values are escaped unless they are `SafeHtml` (nested templates). */
export function html(strings: TemplateStringsArray, ...values: Part[]): SafeHtml {
  let out = strings[0]!;
  values.forEach((v, i) => {
    out += render(v) + strings[i + 1]!;
  });
  return new SafeHtml(out);
}

export interface LayoutOptions {
  title: string;
  /** Which script behaviour the page gets (`data-page`). */
  page: string;
  /** Extra data attributes for the script (ids only). */
  data?: Record<string, string>;
  nav?: SafeHtml;
  main: SafeHtml;
  assets: { js: string; css: string };
}

export function layout({ title, page, data = {}, nav, main, assets }: LayoutOptions): string {
  const attrs = Object.entries(data).map(([k, v]) => html` data-${k}="${v}"`);
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${title} · Switchboard</title>
<link rel="stylesheet" href="${assets.css}">
<script src="${assets.js}" defer></script>
</head>
<body data-page="${page}"${attrs}>
<a class="skip" href="#main">Skip to content</a>
${nav ?? ''}
<main id="main" tabindex="-1">
${main}
</main>
</body>
</html>
`.value;
}
