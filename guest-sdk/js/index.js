// riposte-guest for JavaScript and TypeScript: write riposte rules the way the Rust SDK does.
//
// A rule is a class extending `Rule` with `describe()`, `onMalop(malop)` and optionally
// `onInterval(now)`; `exportRule(MyRule)` turns it into the component's exports. Host calls are
// grouped by concern (`isolation`, `remediation`, `reputation`, `bookkeeping`, `malops`, `kv`,
// `config`); a refused call throws a typed `RiposteError` (`Denied`, `BudgetExhausted`,
// `OutOfScope`, ...), and an action call returns a `Receipt` saying where the action stands
// (`receipt.intoResult()` throws the typed error for one that ended without effect).
// `malop.lacks(part)` tells a part the host could not read. `riposte-guest/testing` builds
// records for a rule's unit tests.
// `riposte plugin build` bundles this module into the plugin (it is imported as
// `riposte-guest`) and builds the component with jco and componentize-js.

import * as wit from './wit.js';

// ---------------------------------------------------------------------------------------------
// Errors

/** Why a host call did not happen, or the rule's own failure: the WIT `error` variant. */
export class RiposteError extends Error {
  /**
   * @param {string} kind the WIT variant, e.g. `denied`
   * @param {string} detail the human-readable detail every variant carries
   */
  constructor(kind, detail) {
    super(`${kind}: ${detail}`);
    this.name = new.target.name;
    this.kind = kind;
    this.detail = String(detail);
  }

  /**
   * Whether the host's policy refused the call (denied, budget, protected target, out of scope,
   * quota): the rule may want to log it and carry on with its other actions.
   */
  get isPolicy() {
    return POLICY_KINDS.has(this.kind);
  }

  /** The WIT value (`{ tag, val }`) componentize-js lowers when the rule throws this. */
  get payload() {
    return { tag: this.kind, val: this.detail };
  }

  /** The variant's tag, so that the error itself is also shaped as the WIT value. */
  get tag() {
    return this.kind;
  }

  /** The variant's payload (the detail). */
  get val() {
    return this.detail;
  }
}

/** The operator did not grant this operation or action kind. */
export class Denied extends RiposteError {
  constructor(detail) { super('denied', detail); }
}
/** An action budget is spent, or a target is cooling down. */
export class BudgetExhausted extends RiposteError {
  constructor(detail) { super('budget-exhausted', detail); }
}
/** The target is a protected asset. */
export class ProtectedTarget extends RiposteError {
  constructor(detail) { super('protected-target', detail); }
}
/** The Malop, machine or action does not exist. */
export class NotFound extends RiposteError {
  constructor(detail) { super('not-found', detail); }
}
/** The Cybereason server failed or answered something unusable. */
export class ServerError extends RiposteError {
  constructor(detail) { super('server-error', detail); }
}
/** The arguments are malformed. */
export class InvalidArgument extends RiposteError {
  constructor(detail) { super('invalid-argument', detail); }
}
/** The rule's own failure. */
export class Failed extends RiposteError {
  constructor(detail) { super('failed', detail); }
}
/**
 * The target is not one the Malop being handled names (or the call comes from `onInterval`),
 * and the operator granted no wider scope.
 */
export class OutOfScope extends RiposteError {
  constructor(detail) { super('out-of-scope', detail); }
}
/** A quota that protects the host or the server is spent (queries, argument sizes, kv writes). */
export class QuotaExceeded extends RiposteError {
  constructor(detail) { super('quota-exceeded', detail); }
}

const POLICY_KINDS = new Set(['denied', 'budget-exhausted', 'protected-target', 'out-of-scope', 'quota-exceeded']);
/** The typed error class of each WIT `error` case, by its tag. */
export const ERROR_CLASSES = Object.freeze({
  denied: Denied,
  'budget-exhausted': BudgetExhausted,
  'protected-target': ProtectedTarget,
  'not-found': NotFound,
  'server-error': ServerError,
  'invalid-argument': InvalidArgument,
  failed: Failed,
  'out-of-scope': OutOfScope,
  'quota-exceeded': QuotaExceeded,
});

/**
 * The typed error for a WIT error value (`{ tag, val }`), or for what an import threw (a
 * ComponentError whose `payload` is that value). Anything else is returned unchanged.
 */
export function errorFromWit(value) {
  const payload = value && typeof value === 'object' && 'payload' in value ? value.payload : value;
  if (payload && typeof payload === 'object' && typeof payload.tag === 'string') {
    const cls = Object.hasOwn(ERROR_CLASSES, payload.tag) ? ERROR_CLASSES[payload.tag] : undefined;
    if (cls) return new cls(payload.val);
  }
  return value;
}

/** Calls a WIT import, turning its WIT error into a typed `RiposteError`. */
function call(fn, ...args) {
  try {
    return fn(...args);
  } catch (e) {
    throw errorFromWit(e);
  }
}

// ---------------------------------------------------------------------------------------------
// Describe

/** What the rule tells the host about itself; build it with the chained setters. */
export class Info {
  #record;
  constructor(name, version) {
    this.#record = {
      name,
      version,
      description: '',
      subscription: { elementKinds: [], activityTypes: [], detectionTypes: [] },
      intervalSeconds: undefined,
    };
  }
  /** Sets the one-line description. */
  description(text) { this.#record.description = text; return this; }
  /** Subscribes to Malops with any of these activity types (e.g. `RANSOMWARE`). */
  activityTypes(types) { this.#record.subscription.activityTypes = [...types]; return this; }
  /** Subscribes to Malops with any of these detection types (e.g. `KNOWN_MALWARE`). */
  detectionTypes(types) { this.#record.subscription.detectionTypes = [...types]; return this; }
  /** Subscribes to Malops of these element kinds only (`process`, `logon-session`). */
  elementKinds(kinds) { this.#record.subscription.elementKinds = [...kinds]; return this; }
  /** Asks for `onInterval` every `seconds` seconds. */
  intervalSeconds(seconds) { this.#record.intervalSeconds = seconds; return this; }
  /** The plain WIT record. */
  toWit() {
    const r = this.#record;
    return {
      ...r,
      subscription: {
        elementKinds: [...r.subscription.elementKinds],
        activityTypes: [...r.subscription.activityTypes],
        detectionTypes: [...r.subscription.detectionTypes],
      },
    };
  }
}

// ---------------------------------------------------------------------------------------------
// The Malop

/** A Malop as the host offers it (every WIT field, camelCase), with helpers. */
export class Malop {
  constructor(record) {
    Object.assign(this, record);
  }
  /** Whether the Malop has activity type `activity` (case-insensitive). */
  hasActivity(activity) {
    const wanted = activity.toUpperCase();
    return this.activityTypes.some((a) => a.toUpperCase() === wanted);
  }
  /** Whether the detection type is `detection` (case-insensitive). */
  isDetection(detection) {
    return this.detectionType.toUpperCase() === detection.toUpperCase();
  }
  /** Whether an activity or the detection type names ransomware. */
  isRansomware() {
    return [...this.activityTypes, this.detectionType].some((t) => t.toUpperCase().includes('RANSOMWARE'));
  }
  /** Whether this is a `MalopLogonSession` (lateral movement, credential theft). */
  isLogonSession() {
    return this.kind === 'logon-session';
  }
  /** Whether an analyst closed the Malop or marked it a false positive. */
  isClosed() {
    return this.managementStatus === 'closed' || this.managementStatus === 'false-positive';
  }
  /** The affected machines whose sensor is connected now. */
  connectedMachines() {
    return this.machines.filter((m) => m.connected);
  }
  /** The affected machines whose sensor is not connected now. */
  offlineMachines() {
    return this.machines.filter((m) => !m.connected);
  }
  /** The machine with element guid `guid`, or undefined. */
  machine(guid) {
    return this.machines.find((m) => m.guid === guid);
  }
  /** Whether machine `guid` is one of the Malop's and connected. */
  isConnected(guid) {
    return this.machine(guid)?.connected === true;
  }
  /** The suspects on machine `machineGuid`. */
  suspectsOn(machineGuid) {
    return this.suspects.filter((s) => s.machineGuid === machineGuid);
  }
  /** The suspects grouped by machine guid, in the order machines first appear. */
  suspectsByMachine() {
    const out = new Map();
    for (const s of this.suspects) {
      if (!out.has(s.machineGuid)) out.set(s.machineGuid, []);
      out.get(s.machineGuid).push(s);
    }
    return out;
  }
  /** The machine guids of `machines`, as the isolation calls take them. */
  guidsOf(machines) {
    return machines.map((m) => m.guid);
  }
  /** The affected users' names, without duplicates, in order. */
  userNames() {
    return [...new Set(this.users.map((u) => u.name).filter((n) => n.trim() !== ''))];
  }
  /** Every root-cause file hash, lower-cased, without duplicates, in order. */
  rootCauseHashes() {
    const hashes = this.rootCauses.flatMap((rc) => rc.hashes).map((h) => h.trim().toLowerCase());
    return [...new Set(hashes.filter((h) => h !== ''))];
  }
  /** Whether every part of the Malop could be read (see `lacks`). */
  isComplete() {
    return this.unreadable.length === 0;
  }
  /**
   * Whether `part` (`suspects`, `files`, `network`, `sensors`) could not be read this time: its
   * fields hold only what crimes/unified gave. The host offers the Malop again once it can be read.
   */
  lacks(part) {
    return this.unreadable.includes(part);
  }
}

// ---------------------------------------------------------------------------------------------
// Receipts

/** Why an action ended without effect, by disposition: the typed error and the words. */
const WITHOUT_EFFECT = {
  failed: [ServerError, 'failed'],
  denied: [Denied, 'was denied by an operator'],
  expired: [Denied, 'expired before approval'],
};

/**
 * The host's answer to an accepted action: `actionId`, `disposition` (where the action stands:
 * `submitted`, `succeeded`, `failed`, `queued`, `outcome-unknown`, `timed-out`, `shadowed`,
 * `awaiting-approval`, `approved`, `denied`, `expired`, `undone`) and `detail` (why it failed,
 * timed out or was refused; empty otherwise).
 */
export class Receipt {
  constructor(record) {
    this.actionId = record.actionId;
    this.disposition = record.disposition;
    this.detail = record.detail ?? '';
  }
  /** Whether the action failed, an operator denied it, or its approval expired. */
  endedWithoutEffect() {
    return Object.hasOwn(WITHOUT_EFFECT, this.disposition);
  }
  /**
   * The typed error for an action that ended without effect (`ServerError` for a failure,
   * `Denied` for an operator's refusal or an expired approval); undefined otherwise.
   */
  error() {
    if (!this.endedWithoutEffect()) return undefined;
    const [cls, what] = WITHOUT_EFFECT[this.disposition];
    return new cls(`action ${this.actionId} ${what}: ${this.detail}`);
  }
  /**
   * This receipt, or throws `error()` when the action ended without effect, so a rule can
   * write `isolation.isolate(...).intoResult()`.
   */
  intoResult() {
    const failure = this.error();
    if (failure) throw failure;
    return this;
  }
  /** `<action-id> (<disposition>)`, with the detail when there is one. */
  toString() {
    const text = `${this.actionId} (${this.disposition})`;
    return this.detail ? `${text}: ${this.detail}` : text;
  }
}

/** Calls an action import and wraps its receipt. */
function act(fn, ...args) {
  return new Receipt(call(fn, ...args));
}

// ---------------------------------------------------------------------------------------------
// Targets and keys

/** A remediation target: `kind` (e.g. `kill-process`) of `targetGuid` on `machineGuid`. */
export function target(kind, machineGuid, targetGuid) {
  return { machineGuid, targetGuid, kind };
}
/** The target that kills suspect `suspect` on its machine. */
export function kill(suspect) {
  return target('kill-process', suspect.machineGuid, suspect.guid);
}
/** The target that quarantines file `file` on its machine. */
export function quarantine(file) {
  return target('quarantine-file', file.machineGuid, file.guid);
}
/** A file-hash reputation key, lower-cased. */
export function fileHashKey(value) {
  return { kind: 'file-hash', value: value.trim().toLowerCase() };
}
/** An IP-address reputation key. */
export function ipKey(value) {
  return { kind: 'ip-address', value: value.trim() };
}
/** A domain reputation key, lower-cased, without a trailing dot. */
export function domainKey(value) {
  return { kind: 'domain', value: value.trim().replace(/\.$/, '').toLowerCase() };
}

// ---------------------------------------------------------------------------------------------
// Host calls

/** Reading Malops. */
export const malops = {
  /** Malops created or updated in `[since, until)` (ms, as bigint or number). */
  listMalops: (since, until) => call(wit.malops.listMalops, BigInt(since), BigInt(until)).map((m) => new Malop(m)),
  /** The full detail of one Malop. */
  getMalop: (id) => new Malop(call(wit.malops.getMalop, id)),
};

/** Remediating items of a Malop. Returns the host's `Receipt`. */
export const remediation = {
  remediate: (malopId, targets, reason) => act(wit.remediation.remediate, malopId ?? undefined, targets, reason),
  status: (actionId) => call(wit.remediation.status, actionId),
};

/** Network isolation of machines, by machine element guid. Returns the host's `Receipt`. */
export const isolation = {
  isolate: (malopId, machineGuids, reason) => act(wit.isolation.isolate, malopId ?? undefined, machineGuids, reason),
  unisolate: (malopId, machineGuids, reason) => act(wit.isolation.unisolate, malopId ?? undefined, machineGuids, reason),
};

/** Custom reputations. Returns the host's `Receipt`. */
export const reputation = {
  setReputation: (keys, verdict, prevent, reason) => act(wit.reputation.setReputation, keys, verdict, prevent, reason),
  removeReputation: (keys, reason) => act(wit.reputation.removeReputation, keys, reason),
};

/** Malop status and comments. */
export const bookkeeping = {
  setStatus: (malopId, status) => call(wit.bookkeeping.setStatus, malopId, status),
  addComment: (malopId, text) => call(wit.bookkeeping.addComment, malopId, text),
};

/** The plugin's key-value store, kept across invocations. */
export const kv = {
  get: (key) => wit.kv.get(key),
  set: (key, value) => call(wit.kv.set, key, value),
  delete: (key) => wit.kv.delete(key),
  /** `key` as UTF-8 text, or undefined. */
  getString: (key) => {
    const bytes = wit.kv.get(key);
    return bytes === undefined ? undefined : new TextDecoder().decode(bytes);
  },
  /** Stores `value` as UTF-8 text. */
  setString: (key, value) => call(wit.kv.set, key, new TextEncoder().encode(value)),
};

/** Splits a comma-separated list, trimming items and dropping empty ones. */
export function splitList(value) {
  return value.split(',').map((s) => s.trim()).filter((s) => s !== '');
}

/** `true`/`yes`/`on`/`1` or `false`/`no`/`off`/`0` (any case); undefined otherwise. */
export function parseFlag(value) {
  const v = value.trim().toLowerCase();
  if (['true', 'yes', 'on', '1'].includes(v)) return true;
  if (['false', 'no', 'off', '0'].includes(v)) return false;
  return undefined;
}

/** The operator's configuration values for this plugin. */
export const config = {
  get: (key) => wit.config.get(key),
  all: () => wit.config.all(),
  /** The value of `key`, or `fallback`. */
  getOr: (key, fallback) => wit.config.get(key) ?? fallback,
  /** A comma-separated list value; empty when unset. */
  list: (key) => splitList(wit.config.get(key) ?? ''),
  /** A boolean value; `fallback` when unset or not a boolean. */
  flag: (key, fallback) => {
    const value = wit.config.get(key);
    return value === undefined ? fallback : parseFlag(value) ?? fallback;
  },
};

// ---------------------------------------------------------------------------------------------
// Logging

/** Writes `message` at `level` (`trace`, `debug`, `info`, `warn`, `error`). */
export function log(level, message) {
  wit.log.log(level, String(message));
}
export const trace = (message) => log('trace', message);
export const debug = (message) => log('debug', message);
export const info = (message) => log('info', message);
export const warn = (message) => log('warn', message);
export const error = (message) => log('error', message);

// ---------------------------------------------------------------------------------------------
// The rule

/** A detection-to-remediation rule. Each call runs in a fresh instance: keep state in `kv`. */
export class Rule {
  /** @returns {Info} */
  describe() {
    throw new Failed(`${this.constructor.name} does not implement describe()`);
  }
  /** Handles one new or changed Malop. Throw a `RiposteError` to report a failure. */
  onMalop(_malop) {}
  /** The periodic hook; `now` is ms since the epoch (a bigint). Does nothing by default. */
  onInterval(_now) {}
}

/** A thrown value as the WIT error the host receives: typed errors keep their kind. */
function failure(e) {
  const typed = errorFromWit(e);
  if (typed instanceof RiposteError) return typed;
  return new Failed(e instanceof Error ? `${e.name}: ${e.message}` : String(e));
}

/**
 * The component's exports for a `Rule` subclass:
 * `export const { describe, onMalop, onInterval } = exportRule(MyRule);`
 */
export function exportRule(RuleClass) {
  const rule = new RuleClass();
  const guard = (fn) => {
    try {
      fn();
    } catch (e) {
      throw failure(e);
    }
  };
  return {
    describe: () => {
      const info = rule.describe();
      return info instanceof Info ? info.toWit() : info;
    },
    onMalop: (record) => guard(() => rule.onMalop(new Malop(record))),
    onInterval: (now) => guard(() => rule.onInterval(now)),
  };
}
