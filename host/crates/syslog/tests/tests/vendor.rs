//! Message shapes from shared/cybereason-api.md section 7: the vendor's "Syslog Examples"
//! (CEF:1, empty device version, class `Malop`, no syslog header, `rt` as local-zone text,
//! values with spaces and commas), the CEF forwarder's samples (CEF:0, version 1.0, a number
//! in the class field, `cs1Label=MalopId` at the end, `rt` in epoch ms), and user-action
//! messages with an RFC 3164-style prefix. Ids are real-shaped; the rest is as published.

pub const CREATED_ID: &str = "11.-7780537507363356527";
pub const MACHINE_ID: &str = "11.4718101284717793977";
pub const CONNECTION_ID: &str = "11.1323449861766643222";
pub const INBOX_ID: &str = "AAAA0ws7O-MUgDmB";

/// The vendor's "Malop creation" example, on one line.
pub fn vendor_created() -> String {
    format!(
        "CEF:1|Cybereason|Cybereason||Malop|Malop Created|10|cs1Label=malopId cs1={CREATED_ID} \
         cs2Label=malopDetectionType cs2=MalopProcess cs3Label=malopActivityType cs3=LATERAL_MOVEMENT \
         cs4Label=malopSuspect cs4=mimikatz.exe cs5Label=malopKeySuspicion cs5=Credential Theft Malop \
         cs6Label=linkToMalop cs6=localhost:8080/#/malop/{CREATED_ID} cn1Label=affectedMachinesCount cn1=1 \
         cn2Label=affectedUsers cn2=1 cn3Label=isSigned cn3=0 start=Dec 19 2017, 15:58:14 IST \
         rt=Dec 19 2017, 15:58:14 IST requestContext=mimikatz.exe reason=blacklist"
    )
}

/// The vendor's "MalOp machine details updated" example, on one line (note the double space).
pub fn vendor_machine_information() -> String {
    format!(
        "CEF:1|Cybereason|Cybereason||Malop|Malop Machine Information|10|cs1Label=malopId cs1={MACHINE_ID} \
         cs2Label=affectedMachine cs2=desktop-j60ivd0 cn1Label=affectedMachinesCount cn1=1 \
         cs3Label=parentProcess cs3=1724 cs4Label=childrenProcess cs4=[] cs5Label=OSVersion cs5=Windows_10 \
         cn2Label=isOnline cn2=1 cn3Label=isOriginalMachine cn3=1 rt=Dec 19 2017, 15:58:14 IST \
         suser=ieuser  dvc=10.0.2.15"
    )
}

/// A CEF forwarder sample: `Malop Connection Added`.
pub fn forwarder_connection_added() -> String {
    format!(
        "CEF:0|Cybereason|Cybereason|1.0|5|Malop Connection Added|5|CybereasonCEFgeneratorBatchId1=58bc2665-b22f-4345-bd90-3f84be47c8b6 \
         cs1={CONNECTION_ID} CybereasonCEFgeneratorcountry1Name=None dst=3.226.77.3 dpt=443 rt=1629500007043 cs1Label=MalopId"
    )
}

/// A CEF forwarder sample with escaped backslashes in a value (`request`), an event name
/// this crate does not know (`Malop Process Added`) and a 16-character id.
pub fn forwarder_process_added() -> String {
    format!(
        "CEF:0|Cybereason|Cybereason|1.0|2|Malop Process Added|5|cs1={INBOX_ID} \
         request=\"C:\\\\Users\\\\chand\\\\Downloads\\\\BT_21.40.5_32_Win7.pdf.exe\" flexString2=True \
         rt=1629700682928 cs1Label=MalopId flexString2Label=isMalicious"
    )
}

/// A user-action message with the RFC 3164-style prefix: not a Malop event.
pub fn user_action_login() -> String {
    "May 16 03:10:41 admin-host auditSyslogLogger CEF:0|Cybereason|Cybereason||UserAction|General/Login|0|\
     cs1Label=username cs1=analyst@example.com cn1Label=actionSuccess cn1=1 deviceCustomDate1Label=userActionTime \
     deviceCustomDate1=May 16 2023, 03:10:41 UTC cs2Label=loginMethod cs2=CERTIFICATE"
        .to_owned()
}
