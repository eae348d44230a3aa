// Module hooks for testing riposte rules and the SDK under plain Node.js: `riposte:plugin/*`
// imports resolve to fakes that forward every call to `globalThis.riposteHost` (set by the
// test), `riposte-guest` resolves to the SDK, as `riposte plugin build` bundles it, and
// `riposte-guest/testing` to its test builders.

const SDK = {
  'riposte-guest': new URL('../index.js', import.meta.url).href,
  'riposte-guest/testing': new URL('../testing.js', import.meta.url).href,
};

// The functions of each WIT interface the world imports (checked against wit/ by sdk.test.mjs).
export const INTERFACES = {
  malops: ['listMalops', 'getMalop'],
  remediation: ['remediate', 'status'],
  isolation: ['isolate', 'unisolate'],
  reputation: ['setReputation', 'removeReputation'],
  bookkeeping: ['setStatus', 'addComment'],
  log: ['log'],
  kv: ['get', 'set', 'delete'],
  config: ['get', 'all'],
};

export async function resolve(specifier, context, next) {
  if (Object.hasOwn(SDK, specifier)) return { url: SDK[specifier], shortCircuit: true };
  if (specifier.startsWith('riposte:plugin/')) {
    return { url: `riposte-fake:${specifier.slice('riposte:plugin/'.length)}`, shortCircuit: true };
  }
  return next(specifier, context);
}

export async function load(url, context, next) {
  if (!url.startsWith('riposte-fake:')) return next(url, context);
  const [iface] = url.slice('riposte-fake:'.length).split('@');
  const functions = INTERFACES[iface];
  if (!functions) throw new Error(`no fake for the WIT interface ${iface}`);
  // `delete` is a reserved word: export it by name from a local binding.
  const source = functions
    .map((f, i) => `const f${i} = (...args) => globalThis.riposteHost.call(${JSON.stringify(iface)}, ${JSON.stringify(f)}, args);\nexport { f${i} as ${f} };`)
    .join('\n');
  return { format: 'module', source, shortCircuit: true };
}
