// Types of riposte-guest/testing (testing.js): records for a rule's unit tests.
import type {
  Disposition, ElementKind, FileItem, Machine, MalopPart, MalopRecord, ManagementStatus, Priority,
  ReceiptRecord, Suspect,
} from './index.js';

export function machine(
  guid: string,
  name: string,
  options?: { connected?: boolean; isolated?: boolean; os?: string; pylumId?: string },
): Machine;
export function suspect(
  guid: string,
  name: string,
  machineGuid: string,
  options?: { imageSha1?: string; autorunKeys?: Array<[string, string]> },
): Suspect;
export function fileItem(
  guid: string,
  name: string,
  machineGuid: string,
  options?: { md5?: string; sha1?: string },
): FileItem;
export function receipt(actionId: string, disposition: Disposition, detail?: string): ReceiptRecord;

export class MalopBuilder {
  constructor(id: string);
  kind(kind: ElementKind): this;
  displayName(name: string): this;
  detectionType(detection: string): this;
  activityTypes(types: Iterable<string>): this;
  managementStatus(status: ManagementStatus): this;
  priority(priority: Priority): this;
  creationTime(ms: bigint | number): this;
  lastUpdateTime(ms: bigint | number): this;
  rootCause(name: string, elementType: string, hashes?: Iterable<string>): this;
  machine(value: Machine): this;
  suspect(value: Suspect): this;
  file(value: FileItem): this;
  user(guid: string, name: string): this;
  ipAddresses(ips: Iterable<string>): this;
  domains(domains: Iterable<string>): this;
  unreadable(parts: Iterable<MalopPart>): this;
  build(): MalopRecord;
}
