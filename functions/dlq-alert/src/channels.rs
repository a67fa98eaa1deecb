//! Sending rendered alerts straight to the WeCom robot and to email (SES),
//! with the alerts dispatcher's senders.
//!
//! The dead-letter function does not put its alerts on the alerts queue:
//! when that queue's dispatcher is what fails, its dead letters would come
//! back here as new failures and go round for good. Sending directly, under
//! the digest budget, ends that loop after one message per window.

use std::sync::Arc;

use async_trait::async_trait;
use bridge_shared::dispatch::alert_channels::EmailChannel;
use bridge_shared::dispatch::alert_text::RenderedAlert;
use bridge_shared::dispatch::budget::Budgets;
use bridge_shared::dispatch::store::VersionedStore;
use bridge_shared::dispatch::wecom::WeComRobot;
use bridge_shared::dispatch::{DispatchError, ports::MailError};

/// The outcome of sending one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// At least one channel took it; the names of those that did.
    Sent(Vec<String>),
    /// No channel took it, and at least one only waits for its rate budget.
    Deferred(String),
    /// Every channel failed.
    Failed(String),
}

/// Sends one rendered alert through every configured channel.
#[async_trait]
pub trait AlertSender: Send + Sync {
    async fn send(&self, alert: &RenderedAlert) -> SendOutcome;
}

/// The WeCom robot and email, as configured.
pub struct Channels {
    pub wecom: Option<Arc<WeComRobot>>,
    pub email: Option<EmailChannel>,
    /// The document table, for the robot's rate budget shared with the alerts dispatcher.
    pub budgets: Arc<dyn VersionedStore>,
}

#[async_trait]
impl AlertSender for Channels {
    async fn send(&self, alert: &RenderedAlert) -> SendOutcome {
        let mut sent = Vec::new();
        let mut errors = Vec::new();
        let mut deferred = None;

        if let Some(robot) = &self.wecom {
            match self.send_wecom(robot, alert).await {
                Ok(()) => sent.push("wecom".to_owned()),
                Err(DispatchError::Throttled { reason, .. }) => deferred = Some(format!("wecom: {reason}")),
                Err(error) => errors.push(format!("wecom: {error}")),
            }
        }
        if let Some(email) = &self.email {
            match email
                .mailer
                .send(&email.from, &email.to, &alert.subject, &alert.text)
                .await
            {
                Ok(id) => {
                    tracing::info!(ses_message_id = %id, "alert email sent");
                    sent.push("email".to_owned());
                }
                Err(MailError::Retryable(reason)) => errors.push(format!("email: SES SendEmail failed: {reason}")),
                Err(MailError::Rejected(reason)) => errors.push(format!("email: SES rejected the email: {reason}")),
            }
        }

        if !sent.is_empty() {
            if !errors.is_empty() {
                tracing::warn!(sent = ?sent, errors = ?errors, "an alert reached only some of its channels");
            }
            return SendOutcome::Sent(sent);
        }
        if self.wecom.is_none() && self.email.is_none() {
            return SendOutcome::Failed(
                "no alert channel is configured: set WECOM_KEY_SECRET_ARN, or ALERT_EMAIL_FROM and ALERT_EMAIL_TO"
                    .into(),
            );
        }
        match deferred {
            Some(reason) => SendOutcome::Deferred(reason),
            None => SendOutcome::Failed(errors.join("; ")),
        }
    }
}

impl Channels {
    async fn send_wecom(&self, robot: &WeComRobot, alert: &RenderedAlert) -> Result<(), DispatchError> {
        let scope = robot.budget_scope().await?;
        let budgets = Budgets {
            store: self.budgets.as_ref(),
        };
        if let Err((wait, reason)) = budgets.acquire(&scope, None).await? {
            return Err(DispatchError::throttled(reason, wait));
        }
        robot.send_markdown(&alert.markdown).await
    }
}
