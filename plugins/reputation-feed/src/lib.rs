//! # reputation-feed
//!
//! Feeds what a malicious Malop teaches into the server's custom reputations:
//! - the root-cause file hashes (md5 / sha1) are blacklisted **with prevent** (execution blocked);
//! - the Malop's remote IP addresses and domains are blacklisted (prevent is not valid for them).
//!
//! A Malop is malicious when it is not closed / false positive and its detection type is
//! `KNOWN_MALWARE` or `BLACKLIST`, or it has the activity type `MALICIOUS_INFECTION` or
//! `RANSOMWARE` (both lists configurable).
//!
//! Keys are **never** touched when they are on the operator's allow-list. Private, loopback and
//! link-local IP addresses are skipped unless configured otherwise (blacklisting an internal
//! address would cut the organisation off from itself). Malformed hashes are skipped.
//!
//! Config (all optional):
//! - `allow-list`: comma-separated keys to never blacklist: hashes (any case), IP addresses, and
//!   domains; a domain entry `*.corp.example` (or `.corp.example`) also covers
//!   `corp.example` and all its subdomains. Example: `allow-list = "8.8.8.8, *.corp.example,
//!   d41d8cd98f00b204e9800998ecf8427e"`.
//! - `detection-types`: comma-separated detection types that make a Malop malicious
//!   (default `KNOWN_MALWARE,BLACKLIST`).
//! - `activity-types`: comma-separated activity types that make a Malop malicious
//!   (default `MALICIOUS_INFECTION,RANSOMWARE`).
//! - `block-network` (bool, default `true`): blacklist IPs and domains too.
//! - `include-private-ips` (bool, default `false`): also blacklist private/loopback IPs.
//!
//! Grants it needs: `set-reputation`.

use std::net::IpAddr;

use riposte_guest::{
    Error, Info, KeyKind, Malop, MalopPart, ReputationKey, Rule, Verdict, config, export_rule,
    info, reputation, warn,
};

/// The operator's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Keys never to touch (see the crate docs for the matching rules).
    pub allow_list: Vec<String>,
    /// Detection types that make a Malop malicious.
    pub detection_types: Vec<String>,
    /// Activity types that make a Malop malicious.
    pub activity_types: Vec<String>,
    /// Blacklist IPs and domains.
    pub block_network: bool,
    /// Also blacklist private, loopback and link-local IPs.
    pub include_private_ips: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            allow_list: Vec::new(),
            detection_types: vec!["KNOWN_MALWARE".into(), "BLACKLIST".into()],
            activity_types: vec!["MALICIOUS_INFECTION".into(), "RANSOMWARE".into()],
            block_network: true,
            include_private_ips: false,
        }
    }
}

impl Options {
    fn from_config() -> Self {
        let d = Options::default();
        let list_or = |key: &str, default: Vec<String>| {
            let v = config::list(key);
            if config::get(key).is_some() {
                v
            } else {
                default
            }
        };
        Options {
            allow_list: config::list("allow-list"),
            detection_types: list_or("detection-types", d.detection_types),
            activity_types: list_or("activity-types", d.activity_types),
            block_network: config::flag("block-network", d.block_network),
            include_private_ips: config::flag("include-private-ips", d.include_private_ips),
        }
    }
}

/// What the rule would do for one Malop.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// File hashes to blacklist with prevent.
    pub prevent_files: Vec<ReputationKey>,
    /// IPs and domains to blacklist without prevent.
    pub block_network: Vec<ReputationKey>,
    /// Keys left alone, with why.
    pub skipped: Vec<(String, &'static str)>,
}

/// Whether `malop` counts as malicious under `opts`.
pub fn is_malicious(malop: &Malop, opts: &Options) -> bool {
    !malop.is_closed()
        && (opts.detection_types.iter().any(|d| malop.is_detection(d))
            || opts.activity_types.iter().any(|a| malop.has_activity(a)))
}

/// Whether `key` is on the allow-list.
pub fn is_allowed(key: &ReputationKey, allow_list: &[String]) -> bool {
    allow_list.iter().any(|entry| {
        let entry = entry.trim();
        match key.kind {
            KeyKind::FileHash => entry.eq_ignore_ascii_case(&key.value),
            KeyKind::IpAddress => match (entry.parse::<IpAddr>(), key.value.parse::<IpAddr>()) {
                (Ok(a), Ok(b)) => a == b,
                _ => entry.eq_ignore_ascii_case(&key.value),
            },
            KeyKind::Domain => {
                let value = key.value.to_ascii_lowercase();
                let entry = entry.trim_end_matches('.').to_ascii_lowercase();
                match entry.strip_prefix("*.").or_else(|| entry.strip_prefix('.')) {
                    Some(suffix) => value == suffix || value.ends_with(&format!(".{suffix}")),
                    None => value == entry,
                }
            }
        }
    })
}

/// Whether `hash` looks like an md5 (32 hex) or sha1 (40 hex).
pub fn is_file_hash(hash: &str) -> bool {
    matches!(hash.len(), 32 | 40) && hash.chars().all(|c| c.is_ascii_hexdigit())
}

/// Whether `ip` is private, loopback, link-local, unspecified or otherwise not a public address.
pub fn is_internal_ip(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                // 100.64.0.0/10, carrier-grade NAT
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// Decides what to blacklist for `malop`. Empty when the Malop is not malicious.
pub fn plan(malop: &Malop, opts: &Options) -> Plan {
    let mut plan = Plan::default();
    if !is_malicious(malop, opts) {
        return plan;
    }
    let push = |key: ReputationKey,
                list: &mut Vec<ReputationKey>,
                skipped: &mut Vec<(String, &'static str)>| {
        if is_allowed(&key, &opts.allow_list) {
            skipped.push((key.value, "on the allow-list"));
        } else if !list.contains(&key) {
            list.push(key);
        }
    };
    for hash in malop.root_cause_hashes() {
        if is_file_hash(&hash) {
            push(
                ReputationKey::file_hash(&hash),
                &mut plan.prevent_files,
                &mut plan.skipped,
            );
        } else {
            plan.skipped.push((hash, "not an md5 or sha1"));
        }
    }
    if opts.block_network {
        for ip in &malop.ip_addresses {
            match ip.trim().parse::<IpAddr>() {
                Ok(addr) if is_internal_ip(&addr) && !opts.include_private_ips => {
                    plan.skipped.push((ip.clone(), "an internal address"))
                }
                Ok(addr) => push(
                    ReputationKey::ip(&addr.to_string()),
                    &mut plan.block_network,
                    &mut plan.skipped,
                ),
                Err(_) => plan.skipped.push((ip.clone(), "not an IP address")),
            }
        }
        for domain in &malop.domains {
            let key = ReputationKey::domain(domain);
            if key.value.is_empty() || key.value.contains(char::is_whitespace) {
                plan.skipped.push((domain.clone(), "not a domain name"));
            } else {
                push(key, &mut plan.block_network, &mut plan.skipped);
            }
        }
    }
    plan
}

struct ReputationFeed;

impl Rule for ReputationFeed {
    fn describe() -> Info {
        Info::new("reputation-feed", env!("CARGO_PKG_VERSION")).description(
            "Blacklists (with prevent) the root-cause hashes of malicious Malops, and their IPs and domains, except allow-listed keys",
        )
    }

    fn on_malop(malop: Malop) -> Result<(), Error> {
        let opts = Options::from_config();
        if !is_malicious(&malop, &opts) {
            info!("{}: not a malicious open Malop, nothing to do", malop.id);
            return Ok(());
        }
        let plan = plan(&malop, &opts);
        if opts.block_network && malop.lacks(MalopPart::Network) {
            warn!(
                "{}: the Malop's connections could not be read; its IPs and domains are not known yet",
                malop.id
            );
        }
        for (key, why) in &plan.skipped {
            info!("{}: leaving {key} alone: {why}", malop.id);
        }
        let mut first_error = None;
        if !plan.prevent_files.is_empty() {
            let reason = format!(
                "root cause of malicious Malop {} ({}, {}): blacklist and prevent execution",
                malop.id, malop.display_name, malop.detection_type
            );
            match reputation::set_reputation(&plan.prevent_files, Verdict::Blacklist, true, &reason)
                .and_then(|r| r.into_result())
            {
                Ok(r) => info!(
                    "{}: prevented {} hash(es): {}",
                    malop.id,
                    plan.prevent_files.len(),
                    r.action_id
                ),
                Err(e) => {
                    warn!(
                        "{}: file blacklist refused: {}: {}",
                        malop.id,
                        e.kind(),
                        e.detail()
                    );
                    first_error.get_or_insert(e);
                }
            }
        }
        if !plan.block_network.is_empty() {
            let reason = format!(
                "contacted by malicious Malop {} ({}, {}): blacklist",
                malop.id, malop.display_name, malop.detection_type
            );
            match reputation::set_reputation(
                &plan.block_network,
                Verdict::Blacklist,
                false,
                &reason,
            )
            .and_then(|r| r.into_result())
            {
                Ok(r) => info!(
                    "{}: blacklisted {} IP(s)/domain(s): {}",
                    malop.id,
                    plan.block_network.len(),
                    r.action_id
                ),
                Err(e) => {
                    warn!(
                        "{}: network blacklist refused: {}: {}",
                        malop.id,
                        e.kind(),
                        e.detail()
                    );
                    first_error.get_or_insert(e);
                }
            }
        }
        if plan.prevent_files.is_empty() && plan.block_network.is_empty() {
            info!("{}: malicious, but no key left to blacklist", malop.id);
        }
        first_error.map_or(Ok(()), Err)
    }
}

export_rule!(ReputationFeed);

#[cfg(test)]
mod tests {
    use super::*;
    use riposte_guest::testing::MalopBuilder;
    use riposte_guest::{ManagementStatus, Priority};

    const SHA1: &str = "e1112174b6dcc6bed54e0e34d8a7272715e73d74";
    const MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";

    fn malware() -> MalopBuilder {
        MalopBuilder::new("11.-6236127201924601217")
            .display_name("invoice.exe")
            .detection_type("KNOWN_MALWARE")
            .activity_types(["MALICIOUS_INFECTION"])
            .management_status(ManagementStatus::Todo)
            .priority(Priority::Medium)
            .root_cause(
                "invoice.exe",
                "File",
                [SHA1.to_uppercase(), MD5.into(), "not-a-hash".into()],
            )
            .ip_addresses(["12.34.56.78", "10.0.0.5", "8.8.8.8"])
            .domains(["Evil.Example.", "cdn.corp.example"])
    }

    #[test]
    fn blacklists_hashes_with_prevent_and_network_without() {
        let opts = Options {
            allow_list: vec![
                "8.8.8.8".into(),
                "*.corp.example".into(),
                MD5.to_uppercase(),
            ],
            ..Options::default()
        };
        let p = plan(&malware().build(), &opts);
        assert_eq!(p.prevent_files, vec![ReputationKey::file_hash(SHA1)]);
        assert_eq!(
            p.block_network,
            vec![
                ReputationKey::ip("12.34.56.78"),
                ReputationKey::domain("evil.example")
            ]
        );
        let skipped: Vec<&str> = p.skipped.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            skipped,
            vec![MD5, "not-a-hash", "10.0.0.5", "8.8.8.8", "cdn.corp.example"]
        );
    }

    #[test]
    fn non_malicious_or_closed_malops_are_left_alone() {
        let m = malware()
            .detection_type("CUSTOM_RULE")
            .activity_types(["LATERAL_MOVEMENT"])
            .build();
        assert_eq!(plan(&m, &Options::default()), Plan::default());
        let m = malware()
            .management_status(ManagementStatus::Closed)
            .build();
        assert_eq!(plan(&m, &Options::default()), Plan::default());
    }

    #[test]
    fn allow_list_matching() {
        let allow = vec![
            "*.corp.example".to_string(),
            "exact.example".into(),
            "::1".into(),
        ];
        assert!(is_allowed(&ReputationKey::domain("corp.example"), &allow));
        assert!(is_allowed(
            &ReputationKey::domain("a.b.corp.example"),
            &allow
        ));
        assert!(!is_allowed(
            &ReputationKey::domain("evilcorp.example"),
            &allow
        ));
        assert!(!is_allowed(
            &ReputationKey::domain("sub.exact.example"),
            &allow
        ));
        assert!(is_allowed(&ReputationKey::ip("0:0:0:0:0:0:0:1"), &allow));
    }

    #[test]
    fn network_blocking_can_be_switched_off() {
        let opts = Options {
            block_network: false,
            ..Options::default()
        };
        let p = plan(&malware().build(), &opts);
        assert!(p.block_network.is_empty());
        assert_eq!(p.prevent_files.len(), 2);
    }

    #[test]
    fn without_the_network_part_the_hashes_are_still_blacklisted() {
        let p = plan(
            &malware().unreadable([MalopPart::Network]).build(),
            &Options::default(),
        );
        assert_eq!(p.prevent_files.len(), 2);
        assert!(p.block_network.is_empty());
    }
}
