// A recording host for tests: answers each WIT call from `answers` (a function per
// `iface.function`) and records every call.

/** A WIT error as componentize-js throws it from an import (a ComponentError with a payload). */
export function witError(tag, val) {
  const e = new Error(`${tag}: ${val}`);
  e.payload = { tag, val };
  return e;
}

export class FakeHost {
  constructor(answers = {}) {
    this.answers = answers;
    this.calls = [];
  }
  call(iface, fn, args) {
    const name = `${iface}.${fn}`;
    this.calls.push({ name, args });
    const answer = this.answers[name];
    return answer ? answer(...args) : undefined;
  }
  /** The calls except log lines. */
  actions() {
    return this.calls.filter((c) => c.name !== 'log.log');
  }
  /** The logged messages. */
  logs() {
    return this.calls.filter((c) => c.name === 'log.log').map((c) => c.args[1]);
  }
}

/** Installs a fake host for one test. */
export function useHost(answers) {
  const host = new FakeHost(answers);
  globalThis.riposteHost = host;
  return host;
}
