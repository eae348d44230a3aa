// riposte-guest/testing: records for a rule's unit tests, built without naming every field (the
// Rust SDK's `riposte_guest::testing`). A test names only the fields it is about; every other
// field gets the default stated here, so the tests keep working when the WIT record grows one.
//
//   import { Malop } from 'riposte-guest';
//   import { MalopBuilder, machine, suspect } from 'riposte-guest/testing';
//
//   const record = new MalopBuilder('11.-7780537507363356527')
//     .activityTypes(['RANSOMWARE'])
//     .machine(machine('m1', 'DESKTOP-1'))
//     .machine(machine('m2', 'LAPTOP-2', { connected: false }))
//     .suspect(suspect('p1', 'locker.exe', 'm1'))
//     .build();
//   onMalop(record);          // the WIT record, as the host hands it to the component
//   plan(new Malop(record));  // the SDK's Malop, as `Rule.onMalop` receives it
//
// `unreadable([...])` gives the Malop as the host offers it when a part could not be read:
// `build()` leaves the fields of that part as the host leaves them.

/** The parts of a Malop, in the WIT's order. */
const PARTS = ['suspects', 'files', 'network', 'sensors'];

/**
 * A machine: by default a `WINDOWS` machine whose sensor is connected, not isolated, with no
 * `pylumId`.
 */
export function machine(guid, name, { connected = true, isolated = false, os = 'WINDOWS', pylumId = undefined } = {}) {
  return { guid, name, pylumId, os, connected, isolated };
}

/**
 * A suspect process on `machineGuid`; `autorunKeys` are `[guid, name]` pairs. By default no
 * image hash and no autorun key.
 */
export function suspect(guid, name, machineGuid, { imageSha1 = undefined, autorunKeys = [] } = {}) {
  return {
    guid, name, machineGuid, imageSha1,
    autorunKeys: autorunKeys.map(([g, n]) => ({ guid: g, name: n })),
  };
}

/** A file to remediate on `machineGuid`; by default without hashes. */
export function fileItem(guid, name, machineGuid, { md5 = undefined, sha1 = undefined } = {}) {
  return { guid, name, md5, sha1, machineGuid };
}

/** The WIT receipt a fake host answers an action with. */
export function receipt(actionId, disposition, detail = '') {
  return { actionId, disposition, detail };
}

/**
 * A Malop record. `new MalopBuilder(id)` starts from: kind `process`, empty display name and
 * detection type, no activity type, status `unread`, priority `unknown`, creation and last
 * update time 0n, no root cause, machine, suspect, file, user, IP address or domain, and every
 * part readable. Each setter returns the builder.
 */
export class MalopBuilder {
  #record;
  constructor(id) {
    this.#record = {
      id,
      kind: 'process',
      displayName: '',
      detectionType: '',
      activityTypes: [],
      managementStatus: 'unread',
      priority: 'unknown',
      creationTime: 0n,
      lastUpdateTime: 0n,
      rootCauses: [],
      machines: [],
      suspects: [],
      files: [],
      users: [],
      ipAddresses: [],
      domains: [],
      unreadable: [],
    };
  }
  #set(field, value) { this.#record[field] = value; return this; }
  #add(field, value) { this.#record[field].push(value); return this; }
  /** `process` or `logon-session`. */
  kind(kind) { return this.#set('kind', kind); }
  displayName(name) { return this.#set('displayName', name); }
  detectionType(detection) { return this.#set('detectionType', detection); }
  /** The activity types (replaces any set before). */
  activityTypes(types) { return this.#set('activityTypes', [...types]); }
  managementStatus(status) { return this.#set('managementStatus', status); }
  priority(priority) { return this.#set('priority', priority); }
  /** Creation time, ms since the epoch (a number or a bigint). */
  creationTime(ms) { return this.#set('creationTime', BigInt(ms)); }
  /** Last update time, ms since the epoch (a number or a bigint). */
  lastUpdateTime(ms) { return this.#set('lastUpdateTime', BigInt(ms)); }
  /** Adds a root cause `name` of `elementType` (e.g. `File`) with file `hashes`. */
  rootCause(name, elementType, hashes = []) { return this.#add('rootCauses', { name, elementType, hashes: [...hashes] }); }
  /** Adds a machine (see `machine()`). */
  machine(value) { return this.#add('machines', value); }
  /** Adds a suspect (see `suspect()`). */
  suspect(value) { return this.#add('suspects', value); }
  /** Adds a file to remediate (see `fileItem()`). */
  file(value) { return this.#add('files', value); }
  user(guid, name) { return this.#add('users', { guid, name }); }
  /** The remote IP addresses (replaces any set before). */
  ipAddresses(ips) { return this.#set('ipAddresses', [...ips]); }
  /** The domains (replaces any set before). */
  domains(domains) { return this.#set('domains', [...domains]); }
  /** Marks `parts` as not readable this time (added to any marked before). */
  unreadable(parts) {
    for (const part of parts) {
      if (!PARTS.includes(part)) throw new TypeError(`unknown Malop part ${JSON.stringify(part)}; one of ${PARTS.join(', ')}`);
      this.#record.unreadable.push(part);
    }
    return this;
  }

  /**
   * The WIT record. For each unreadable part, its fields are what the host offers without it:
   * suspects and files keep guid and name, with `machineGuid` the Malop's machine when it has
   * exactly one (else empty) and no hashes or autorun keys (`suspects`, `files`); no IP address
   * or domain (`network`); machines without `pylumId`, with an empty `os` and
   * `connected`/`isolated` false, unknown (`sensors`). `unreadable` comes out in the WIT's order
   * without duplicates, as the host gives it.
   */
  build() {
    const r = structuredClone(this.#record);
    r.unreadable = PARTS.filter((p) => r.unreadable.includes(p));
    const only = r.machines.length === 1 ? r.machines[0].guid : '';
    if (r.unreadable.includes('suspects')) r.suspects = r.suspects.map((s) => suspect(s.guid, s.name, only));
    if (r.unreadable.includes('files')) r.files = r.files.map((f) => fileItem(f.guid, f.name, only));
    if (r.unreadable.includes('network')) [r.ipAddresses, r.domains] = [[], []];
    if (r.unreadable.includes('sensors')) r.machines = r.machines.map((m) => machine(m.guid, m.name, { connected: false, os: '' }));
    return r;
  }
}
