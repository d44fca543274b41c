//! An error with its causes on one line (`outer: cause: root cause`), as
//! alarms and logs show it: transport errors (gRPC, DICOM) keep the useful
//! part ("Connection refused") in their sources.

/// `e` and each of its sources, joined by ": ".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
