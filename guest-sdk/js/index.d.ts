// Types of riposte-guest (index.js). The WIT types come from the declarations `riposte plugin
// build` generates from ../../wit with `jco guest-types` (target/plugin-build/js/wit-types).

export type MalopRecord = import('riposte:plugin/types@0.2.0').Malop;
export type Machine = import('riposte:plugin/types@0.2.0').Machine;
export type Suspect = import('riposte:plugin/types@0.2.0').Suspect;
export type FileItem = import('riposte:plugin/types@0.2.0').FileItem;
export type User = import('riposte:plugin/types@0.2.0').User;
export type RootCause = import('riposte:plugin/types@0.2.0').RootCause;
export type ElementKind = import('riposte:plugin/types@0.2.0').ElementKind;
export type ManagementStatus = import('riposte:plugin/types@0.2.0').ManagementStatus;
export type Priority = import('riposte:plugin/types@0.2.0').Priority;
export type MalopPart = import('riposte:plugin/types@0.2.0').MalopPart;
export type Disposition = import('riposte:plugin/types@0.2.0').Disposition;
export type ReceiptRecord = import('riposte:plugin/types@0.2.0').Receipt;
export type WitError = import('riposte:plugin/types@0.2.0').Error;
export type WitInfo = import('riposte:plugin/plugin@0.2.0').Info;
export type Target = import('riposte:plugin/remediation@0.2.0').Target;
export type ActionKind = import('riposte:plugin/remediation@0.2.0').ActionKind;
export type Progress = import('riposte:plugin/remediation@0.2.0').Progress;
export type ReputationKey = import('riposte:plugin/reputation@0.2.0').ReputationKey;
export type Verdict = import('riposte:plugin/reputation@0.2.0').Verdict;
export type Level = import('riposte:plugin/log@0.2.0').Level;

export type ErrorKind = WitError['tag'];

export class RiposteError extends Error {
  constructor(kind: ErrorKind, detail: string);
  readonly kind: ErrorKind;
  readonly detail: string;
  readonly isPolicy: boolean;
  readonly payload: WitError;
  readonly tag: ErrorKind;
  readonly val: string;
}
export class Denied extends RiposteError { constructor(detail: string); }
export class BudgetExhausted extends RiposteError { constructor(detail: string); }
export class ProtectedTarget extends RiposteError { constructor(detail: string); }
export class NotFound extends RiposteError { constructor(detail: string); }
export class ServerError extends RiposteError { constructor(detail: string); }
export class InvalidArgument extends RiposteError { constructor(detail: string); }
export class Failed extends RiposteError { constructor(detail: string); }
export class OutOfScope extends RiposteError { constructor(detail: string); }
export class QuotaExceeded extends RiposteError { constructor(detail: string); }
export const ERROR_CLASSES: Readonly<Record<ErrorKind, new (detail: string) => RiposteError>>;
export function errorFromWit(value: unknown): RiposteError | unknown;

export class Info {
  constructor(name: string, version: string);
  description(text: string): this;
  activityTypes(types: Iterable<string>): this;
  detectionTypes(types: Iterable<string>): this;
  elementKinds(kinds: Iterable<ElementKind>): this;
  intervalSeconds(seconds: number): this;
  toWit(): WitInfo;
}

export interface Malop extends MalopRecord {}
export class Malop {
  constructor(record: MalopRecord);
  hasActivity(activity: string): boolean;
  isDetection(detection: string): boolean;
  isRansomware(): boolean;
  isLogonSession(): boolean;
  isClosed(): boolean;
  connectedMachines(): Machine[];
  offlineMachines(): Machine[];
  machine(guid: string): Machine | undefined;
  isConnected(guid: string): boolean;
  suspectsOn(machineGuid: string): Suspect[];
  suspectsByMachine(): Map<string, Suspect[]>;
  guidsOf(machines: Machine[]): string[];
  userNames(): string[];
  rootCauseHashes(): string[];
  isComplete(): boolean;
  lacks(part: MalopPart): boolean;
}

export class Receipt {
  constructor(record: ReceiptRecord);
  readonly actionId: string;
  readonly disposition: Disposition;
  readonly detail: string;
  endedWithoutEffect(): boolean;
  error(): ServerError | Denied | undefined;
  intoResult(): this;
  toString(): string;
}

export function target(kind: ActionKind, machineGuid: string, targetGuid: string): Target;
export function kill(suspect: Suspect): Target;
export function quarantine(file: FileItem): Target;
export function fileHashKey(value: string): ReputationKey;
export function ipKey(value: string): ReputationKey;
export function domainKey(value: string): ReputationKey;

export const malops: {
  listMalops(since: bigint | number, until: bigint | number): Malop[];
  getMalop(id: string): Malop;
};
export const remediation: {
  remediate(malopId: string | undefined, targets: Target[], reason: string): Receipt;
  status(actionId: string): Progress;
};
export const isolation: {
  isolate(malopId: string | undefined, machineGuids: string[], reason: string): Receipt;
  unisolate(malopId: string | undefined, machineGuids: string[], reason: string): Receipt;
};
export const reputation: {
  setReputation(keys: ReputationKey[], verdict: Verdict, prevent: boolean, reason: string): Receipt;
  removeReputation(keys: ReputationKey[], reason: string): Receipt;
};
export const bookkeeping: {
  setStatus(malopId: string, status: ManagementStatus): void;
  addComment(malopId: string, text: string): void;
};
export const kv: {
  get(key: string): Uint8Array | undefined;
  set(key: string, value: Uint8Array): void;
  delete(key: string): void;
  getString(key: string): string | undefined;
  setString(key: string, value: string): void;
};
export const config: {
  get(key: string): string | undefined;
  all(): Array<[string, string]>;
  getOr(key: string, fallback: string): string;
  list(key: string): string[];
  flag(key: string, fallback: boolean): boolean;
};
export function splitList(value: string): string[];
export function parseFlag(value: string): boolean | undefined;

export function log(level: Level, message: string): void;
export function trace(message: string): void;
export function debug(message: string): void;
export function info(message: string): void;
export function warn(message: string): void;
export function error(message: string): void;

export abstract class Rule {
  abstract describe(): Info;
  onMalop(malop: Malop): void;
  onInterval(now: bigint): void;
}
export function exportRule(rule: new () => Rule): {
  describe(): WitInfo;
  onMalop(malop: MalopRecord): void;
  onInterval(now: bigint): void;
};
