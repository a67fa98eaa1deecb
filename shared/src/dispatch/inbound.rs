//! Reading one SQS record into what the engine dispatches.

use sha2::{Digest, Sha256};

use crate::alerts::{AlertsQueueMessage, OperationalAlert};
use crate::message::{IDEMPOTENCY_KEY_LEN, MESSAGE_VERSION, RoutedMessage};

/// A message body the engine understood.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    Routed(Box<RoutedMessage>),
    /// Only on the `alerts` queue.
    Operational(OperationalAlert),
}

impl Inbound {
    /// Parses a body. Operational alerts are accepted only when `accept_alerts`
    /// is set (the alerts dispatcher); elsewhere they are unreadable.
    pub fn parse(body: &str, accept_alerts: bool) -> Result<Inbound, String> {
        let inbound = if accept_alerts {
            match AlertsQueueMessage::parse(body)? {
                AlertsQueueMessage::Routed(message) => Inbound::Routed(message),
                AlertsQueueMessage::Operational(alert) => Inbound::Operational(alert),
            }
        } else {
            let message: RoutedMessage =
                serde_json::from_str(body).map_err(|error| format!("invalid routed message: {error}"))?;
            Inbound::Routed(Box::new(message))
        };

        if let Inbound::Routed(message) = &inbound {
            if message.message_version != MESSAGE_VERSION {
                return Err(format!(
                    "message_version {} is not supported; this dispatcher reads version {MESSAGE_VERSION}",
                    message.message_version
                ));
            }
            let key = &message.idempotency_key;
            if key.len() != IDEMPOTENCY_KEY_LEN || !key.bytes().all(|byte| byte.is_ascii_hexdigit()) {
                return Err(format!(
                    "idempotency_key {key:?} is not {IDEMPOTENCY_KEY_LEN} hexadecimal characters"
                ));
            }
        }
        Ok(inbound)
    }

    /// Returns the key of the dispatch record and the destination's idempotency header.
    pub fn idempotency_key(&self) -> String {
        match self {
            Inbound::Routed(message) => message.idempotency_key.clone(),
            Inbound::Operational(alert) => alert_idempotency_key(&alert.dedupe_key),
        }
    }

    pub fn document_id(&self) -> Option<i64> {
        match self {
            Inbound::Routed(message) => Some(message.document_id),
            Inbound::Operational(alert) => alert.document_id,
        }
    }

    /// Returns the destination the message was sent to. Operational alerts always go to `alerts`.
    pub fn destination(&self) -> &str {
        match self {
            Inbound::Routed(message) => &message.destination,
            Inbound::Operational(_) => "alerts",
        }
    }
}

/// Derives the idempotency key of an operational alert, so alerts with the same dedupe key are sent once.
pub fn alert_idempotency_key(dedupe_key: &str) -> String {
    let mut key = hex::encode(Sha256::digest(format!("recordengine-bridge/alert/v1|{dedupe_key}")));
    key.truncate(IDEMPOTENCY_KEY_LEN);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_bodies_name_the_problem() {
        assert!(
            Inbound::parse("{", false)
                .unwrap_err()
                .contains("invalid routed message")
        );
        assert!(Inbound::parse("{}", false).unwrap_err().contains("missing field"));
    }

    #[test]
    fn operational_alerts_only_on_the_alerts_queue() {
        let alert = OperationalAlert::new("upload_failed", "error", "dedupe-1");
        let body = serde_json::to_string(&alert).unwrap();

        assert!(Inbound::parse(&body, false).is_err());
        let Ok(Inbound::Operational(parsed)) = Inbound::parse(&body, true) else {
            panic!("the alerts dispatcher reads operational alerts");
        };
        assert_eq!(parsed.dedupe_key, "dedupe-1");
        assert_eq!(alert_idempotency_key("dedupe-1").len(), IDEMPOTENCY_KEY_LEN);
        assert_ne!(alert_idempotency_key("dedupe-1"), alert_idempotency_key("dedupe-2"));
    }
}
