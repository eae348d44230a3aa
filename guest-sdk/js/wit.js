// The WIT imports of riposte:plugin, world `rule`, in one place: the rest of the SDK imports
// them from here. componentize-js binds these specifiers to the component's imports; the
// version in them must be the version of ../../wit (a test checks it).
export * as malops from 'riposte:plugin/malops@0.2.0';
export * as remediation from 'riposte:plugin/remediation@0.2.0';
export * as isolation from 'riposte:plugin/isolation@0.2.0';
export * as reputation from 'riposte:plugin/reputation@0.2.0';
export * as bookkeeping from 'riposte:plugin/bookkeeping@0.2.0';
export * as log from 'riposte:plugin/log@0.2.0';
export * as kv from 'riposte:plugin/kv@0.2.0';
export * as config from 'riposte:plugin/config@0.2.0';
