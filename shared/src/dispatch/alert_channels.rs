//! The alerts destination: renders each message and sends it to the WeCom
//! robot, to email through SES, or to both.
//!
//! Each channel is a part of the delivery: a channel that succeeded is not
//! sent again when the other one fails and the message is retried.

use std::sync::Arc;

use async_trait::async_trait;

use super::alert_text::{AlertLocale, RenderedAlert, render_document_alert, render_operational_alert};
use super::budget::BudgetScope;
use super::destination::{Delivered, Delivery, DeliveryItem, Destination};
use super::error::DispatchError;
use super::ports::{MailError, MailSender};
use super::wecom::WeComRobot;

/// Email recipients of alerts.
pub struct EmailChannel {
    pub mailer: Arc<dyn MailSender>,
    pub from: String,
    pub to: Vec<String>,
}

/// The alerts destination.
pub struct AlertChannels {
    pub locale: AlertLocale,
    pub wecom: Option<Arc<WeComRobot>>,
    pub email: Option<EmailChannel>,
}

impl AlertChannels {
    fn render(&self, delivery: &Delivery) -> RenderedAlert {
        match &delivery.item {
            DeliveryItem::Routed { message, document } => render_document_alert(message, document, self.locale),
            DeliveryItem::Operational(alert) => render_operational_alert(alert, self.locale),
        }
    }
}

#[async_trait]
impl Destination for AlertChannels {
    fn kind(&self) -> &'static str {
        "alerts"
    }

    async fn budget(&self) -> Result<Option<BudgetScope>, DispatchError> {
        // NOTE: the robot's budget covers the whole delivery, so email-only
        // retries also wait for it when both channels are configured.
        match &self.wecom {
            Some(robot) => Ok(Some(robot.budget_scope().await?)),
            None => Ok(None),
        }
    }

    async fn deliver(&self, delivery: &Delivery) -> Result<Delivered, DispatchError> {
        if self.wecom.is_none() && self.email.is_none() {
            return Err(DispatchError::permanent(
                "no alert channel is configured: set a WeCom robot secret or email addresses",
            ));
        }
        let rendered = self.render(delivery);
        let mut sent = Vec::new();

        if let Some(robot) = &self.wecom {
            if !delivery.part_done("wecom") {
                delivery.spend_request().await?;
                robot.send_markdown(&rendered.markdown).await?;
                delivery.mark_part_done("wecom");
            }
            sent.push("wecom".to_owned());
        }
        if let Some(email) = &self.email {
            if !delivery.part_done("email") {
                let id = email
                    .mailer
                    .send(&email.from, &email.to, &rendered.subject, &rendered.text)
                    .await
                    .map_err(|error| match error {
                        MailError::Retryable(reason) => {
                            DispatchError::retryable(format!("SES SendEmail failed: {reason}"))
                        }
                        MailError::Rejected(reason) => {
                            DispatchError::permanent(format!("SES rejected the alert email: {reason}"))
                        }
                    })?;
                tracing::info!(ses_message_id = %id, "alert email sent");
                delivery.mark_part_done("email");
            }
            sent.push("email".to_owned());
        }

        Ok(Delivered {
            remote_id: sent.join("+"),
            detail: format!("alert sent by {}: {}", sent.join(" and "), rendered.subject),
        })
    }
}
