//! The notifier's decision: which state reports become a notification to the owner.
//! An unlock is a state report with `action` `unlock` and `lock_state` 1, reported by
//! the lock itself once it obeyed a command (so a refused command notifies nobody).

use crate::channel::Notification;
use crate::config::LockConfig;
use crate::envelope::StateReport;

/// The notification for this report of `lock_id`, if it reports an unlock.
pub fn unlock_notification(lock_id: &str, lock: &LockConfig, report: &StateReport, ts: i64) -> Option<Notification> {
    if report.action != "unlock" || report.lock_state != serde_json::json!(1) {
        return None;
    }
    Some(Notification {
        lock_id: lock_id.into(),
        owner: lock.owner.clone(),
        contact: lock.contact.clone(),
        subject: "unlocked".into(),
        text: format!("{}, your lock {lock_id} was unlocked remotely (process {})", lock.owner, report.process_id),
        ts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(action: &str, lock_state: i64) -> StateReport {
        StateReport {
            process_id: "42".into(),
            action: action.into(),
            battery: 80.0,
            lock_state: lock_state.into(),
            version: 1.1,
            client_id: "L1".into(),
        }
    }

    #[test]
    fn only_an_unlock_reported_as_unlocked_notifies_the_owner() {
        let lock = LockConfig { owner: "Ada".into(), contact: "ada@example.org".into(), secret: "s".into() };
        let n = unlock_notification("L1", &lock, &report("unlock", 1), 7).expect("unlock notifies");
        assert_eq!((n.contact.as_str(), n.subject.as_str(), n.ts), ("ada@example.org", "unlocked", 7));
        assert!(n.text.contains("L1") && n.text.contains("42"), "{}", n.text);
        assert_eq!(unlock_notification("L1", &lock, &report("report", 1), 7), None);
        assert_eq!(unlock_notification("L1", &lock, &report("unlock", 0), 7), None);
    }
}
