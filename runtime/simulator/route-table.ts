/** Path templates in the protocol's spelling, e.g. `/channels/{channel_id}/messages`. */
export interface RouteMatch<H> {
  handler: H;
  params: Record<string, string>;
  /** `METHOD /template`, the key rate-limit faults name */
  key: string;
}

interface Route<H> { method: string; template: string; segments: string[]; handler: H }

export class RouteTable<H> {
  readonly #routes: Route<H>[] = [];

  add(method: string, template: string, handler: H): this {
    this.#routes.push({ method, template, segments: template.split('/').slice(1), handler });
    return this;
  }

  /** `found: false` with `pathKnown: true` means 405 rather than 404. */
  match(method: string, path: string): { found: RouteMatch<H> | undefined; pathKnown: boolean } {
    const parts = path.split('/').slice(1);
    let pathKnown = false;
    for (const route of this.#routes) {
      const params = matchSegments(route.segments, parts);
      if (!params) continue;
      pathKnown = true;
      if (route.method === method) return { found: { handler: route.handler, params, key: `${method} ${route.template}` }, pathKnown };
    }
    return { found: undefined, pathKnown };
  }

  /** Accepts `METHOD /template`, with or without the method. */
  has(key: string): boolean {
    const [a, b] = key.trim().split(/\s+/);
    const method = b === undefined ? undefined : a;
    const template = b === undefined ? a : b;
    return this.#routes.some((r) => r.template === template && (method === undefined || r.method === method));
  }
}

function matchSegments(template: string[], parts: string[]): Record<string, string> | undefined {
  if (template.length !== parts.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < template.length; i++) {
    const t = template[i]!;
    const p = parts[i]!;
    if (t.startsWith('{') && t.endsWith('}')) {
      if (p === '') return undefined;
      try {
        params[t.slice(1, -1)] = decodeURIComponent(p);
      } catch {
        return undefined;
      }
    } else if (t !== p) {
      return undefined;
    }
  }
  return params;
}
