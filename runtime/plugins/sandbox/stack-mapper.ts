/**
 * Rewrites `bundle:line:col` positions in stack text to the plugin's own `file:line:col`, using
 * the esbuild source map. Stacks are plain text made inside the isolate.
 */
import { TraceMap, originalPositionFor } from '@jridgewell/trace-mapping';

export interface StackMapper {
  map(text: string): string;
  /** first `file:line:col` inside the plugin's own sources, for one-line error messages */
  firstLocation(text: string): string | undefined;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export function createStackMapper(bundleFilename: string, sourceMap: string | undefined): StackMapper {
  let trace: TraceMap | undefined;
  if (sourceMap) {
    try {
      trace = new TraceMap(sourceMap);
    } catch {
      trace = undefined;
    }
  }
  const pattern = new RegExp(`${escapeRegExp(bundleFilename)}:(\\d+):(\\d+)`, 'g');
  const translate = (line: number, column: number): string | undefined => {
    if (!trace) return undefined;
    const pos = originalPositionFor(trace, { line, column: Math.max(0, column - 1) });
    if (pos.source === null || pos.line === null) return undefined;
    return `${pos.source}:${pos.line}:${(pos.column ?? 0) + 1}`;
  };
  return {
    map(text) {
      return text.replace(pattern, (whole, l: string, c: string) => translate(Number(l), Number(c)) ?? whole);
    },
    firstLocation(text) {
      for (const m of text.matchAll(pattern)) {
        const loc = translate(Number(m[1]), Number(m[2]));
        if (loc) return loc;
      }
      const raw = pattern.exec(text);
      pattern.lastIndex = 0;
      return raw ? raw[0] : undefined;
    },
  };
}
