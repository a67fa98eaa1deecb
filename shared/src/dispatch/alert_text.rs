//! Alert texts in English and Simplified Chinese, for WeCom and email.
//!
//! [`render_document_alert`] renders an export the routing rules sent to a
//! person (a low-confidence extraction, say); [`render_operational_alert`]
//! renders every [`OperationalAlert`] kind in [`crate::alerts::kind`]. The
//! dead-letter consumer uses the same functions.

use rust_decimal::Decimal;

use crate::alerts::{OperationalAlert, kind};
use crate::message::RoutedMessage;
use crate::payload::ExportDocument;

/// The alert language, from `ALERT_LOCALE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AlertLocale {
    #[default]
    En,
    ZhCn,
}

impl std::str::FromStr for AlertLocale {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "" | "en" | "en-US" | "en-GB" => Ok(AlertLocale::En),
            "zh-CN" | "zh" | "zh-Hans" => Ok(AlertLocale::ZhCn),
            other => Err(format!("invalid ALERT_LOCALE {other:?}: use `en` or `zh-CN`")),
        }
    }
}

/// One alert in the three forms the channels take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedAlert {
    /// One line: the email subject and the first line of a message.
    pub subject: String,
    /// WeCom markdown (uncut; see [`truncate_utf8`]).
    pub markdown: String,
    /// Plain text for email.
    pub text: String,
}

/// Cuts `text` to at most `max_bytes` bytes of UTF-8 on a character
/// boundary, ending with `…` when anything was cut.
pub fn truncate_utf8(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_owned();
    }
    let marker = "…";
    let budget = max_bytes.saturating_sub(marker.len());
    let mut end = budget.min(text.len());
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut cut = text[..end].to_owned();
    if marker.len() <= max_bytes {
        cut.push_str(marker);
    }
    cut
}

/// Labels and sentences of one language.
struct Words {
    document: &'static str,
    vendor: &'static str,
    amount: &'static str,
    score: &'static str,
    reasoning: &'static str,
    rules: &'static str,
    open: &'static str,
    unknown: &'static str,
    low_confidence_title: &'static str,
    review_title: &'static str,
}

const EN: Words = Words {
    document: "Document",
    vendor: "Vendor",
    amount: "Amount",
    score: "Confidence score",
    reasoning: "RecordEngine's reasoning",
    rules: "Rules",
    open: "Open in RecordEngine",
    unknown: "unknown",
    low_confidence_title: "Low-confidence extraction: check before booking",
    review_title: "Document needs review",
};

const ZH: Words = Words {
    document: "单据",
    vendor: "供应商",
    amount: "金额",
    score: "置信度",
    reasoning: "RecordEngine 说明",
    rules: "规则",
    open: "在 RecordEngine 中打开",
    unknown: "未知",
    low_confidence_title: "识别置信度低：入账前请人工核对",
    review_title: "单据需要人工审核",
};

fn words(locale: AlertLocale) -> &'static Words {
    match locale {
        AlertLocale::En => &EN,
        AlertLocale::ZhCn => &ZH,
    }
}

/// The routing rule that sends low-confidence documents to the alert channel.
pub const LOW_CONFIDENCE_RULE: &str = "low-confidence";

/// Renders an export that was routed to the alert channel.
pub fn render_document_alert(message: &RoutedMessage, document: &ExportDocument, locale: AlertLocale) -> RenderedAlert {
    let w = words(locale);
    let low_confidence = message
        .decision
        .rules_fired
        .iter()
        .any(|rule| rule == LOW_CONFIDENCE_RULE);
    let title = if low_confidence {
        w.low_confidence_title
    } else {
        w.review_title
    };

    let name = document.display_filename().unwrap_or(w.unknown);
    let document_line = format!("#{} {name}", document.id);
    let vendor = document.vendor_name().unwrap_or(w.unknown).to_owned();
    let amount = match (document.fields.total_amount, document.currency_code()) {
        (Some(total), Some(currency)) => format!("{} {currency}", crate::money::round_to_cents(total)),
        (Some(total), None) => crate::money::round_to_cents(total).to_string(),
        (None, _) => w.unknown.to_owned(),
    };
    let score = document
        .confidence_score
        .map(|score: Decimal| match &document.confidence_label {
            Some(label) => format!("{} / 100 ({label})", score.normalize()),
            None => format!("{} / 100", score.normalize()),
        })
        .unwrap_or_else(|| w.unknown.to_owned());
    let reasoning = document
        .confidence_reasoning
        .clone()
        .unwrap_or_else(|| w.unknown.to_owned());
    let rules = message.decision.rules_fired.join(", ");

    let rows = [
        (w.document, document_line),
        (w.vendor, vendor),
        (w.amount, amount),
        (w.score, score),
        (w.reasoning, reasoning),
        (w.rules, rules),
    ];
    let subject = format!("{title}: #{} {name}", document.id);
    render(
        &subject,
        title,
        &rows,
        document.doc_url.as_deref().map(|url| (w.open, url)),
    )
}

/// Renders an operational alert; unknown kinds list their parameters.
pub fn render_operational_alert(alert: &OperationalAlert, locale: AlertLocale) -> RenderedAlert {
    let param = |name: &str| {
        alert
            .params
            .get(name)
            .cloned()
            .unwrap_or_else(|| words(locale).unknown.to_owned())
    };
    let object = || format!("s3://{}/{}", param("bucket"), param("key"));
    let zh = locale == AlertLocale::ZhCn;

    let (title, rows): (String, Vec<(&str, String)>) = match alert.kind.as_str() {
        kind::UPLOAD_REJECTED => (
            if zh {
                "文件未上传到 RecordEngine"
            } else {
                "File not uploaded to RecordEngine"
            }
            .into(),
            vec![
                (if zh { "文件" } else { "File" }, object()),
                (if zh { "原因" } else { "Reason" }, param("reason")),
            ],
        ),
        kind::UPLOAD_FAILED => (
            if zh {
                "上传到 RecordEngine 失败"
            } else {
                "Upload to RecordEngine failed"
            }
            .into(),
            vec![
                (if zh { "文件" } else { "File" }, object()),
                (if zh { "错误" } else { "Error" }, param("error")),
            ],
        ),
        kind::UPLOAD_AMBIGUOUS => (
            if zh {
                "上传结果未知：RecordEngine 可能已收到该文件"
            } else {
                "Upload outcome unknown: RecordEngine may have the file"
            }
            .into(),
            vec![
                (if zh { "文件" } else { "File" }, object()),
                (if zh { "关联键" } else { "Correlation key" }, param("correlation_key")),
                (if zh { "错误" } else { "Error" }, param("error")),
                (
                    if zh { "处理" } else { "Next step" },
                    if zh {
                        "重新上传前请先在 RecordEngine 中按关联键查找".into()
                    } else {
                        "look the document up in RecordEngine by correlation key before uploading again".into()
                    },
                ),
            ],
        ),
        kind::RECORDENGINE_UNAUTHORIZED => (
            if zh {
                "RecordEngine 拒绝了 API 令牌"
            } else {
                "RecordEngine rejected the API token"
            }
            .into(),
            vec![
                (if zh { "错误" } else { "Error" }, param("error")),
                (
                    if zh { "处理" } else { "Next step" },
                    if zh {
                        "令牌可能已重新生成，请将新令牌存入 Secrets Manager".into()
                    } else {
                        "the token was probably regenerated; store the new one in Secrets Manager".into()
                    },
                ),
            ],
        ),
        kind::DISPATCH_FAILED => (
            if zh {
                format!("发送到 {} 失败", param("destination"))
            } else {
                format!("Delivery to {} failed", param("destination"))
            },
            vec![
                (
                    if zh { "单据" } else { "Document" },
                    format!("#{}", param("document_id")),
                ),
                (if zh { "错误类别" } else { "Error class" }, param("error_class")),
                (if zh { "错误" } else { "Error" }, param("error")),
            ],
        ),
        kind::FAILURE_DIGEST => (
            if zh {
                format!("{} 个失败待处理", param("count"))
            } else {
                format!("{} failures need attention", param("count"))
            },
            vec![(if zh { "摘要" } else { "Summary" }, param("summary"))],
        ),
        kind::UNREADABLE_MESSAGE => (
            if zh {
                "死信队列中有无法读取的消息"
            } else {
                "Unreadable message in a dead-letter queue"
            }
            .into(),
            vec![
                (if zh { "队列" } else { "Queue" }, param("source_queue")),
                (if zh { "消息 ID" } else { "Message id" }, param("message_id")),
                (if zh { "错误" } else { "Error" }, param("error")),
            ],
        ),
        other => (
            if zh {
                format!("运行告警：{other}")
            } else {
                format!("Operational alert: {other}")
            },
            alert
                .params
                .iter()
                .map(|(name, value)| (name.as_str(), value.clone()))
                .collect(),
        ),
    };

    let severity = match (alert.severity.as_str(), zh) {
        ("error", true) => "错误",
        ("warning", true) => "警告",
        ("error", false) => "Error",
        ("warning", false) => "Warning",
        (_, true) => "通知",
        (_, false) => "Notice",
    };
    let title = format!("[{severity}] {title}");
    let mut rows: Vec<(&str, String)> = rows;
    if let Some(document_id) = alert.document_id
        && alert.kind != kind::DISPATCH_FAILED
    {
        rows.insert(0, (if zh { "单据" } else { "Document" }, format!("#{document_id}")));
    }
    if let Some(failure_id) = &alert.failure_id {
        rows.push((if zh { "失败记录" } else { "Failure record" }, failure_id.clone()));
    }
    rows.push((if zh { "时间" } else { "Time" }, alert.created_at.clone()));
    let rows: Vec<(&str, String)> = rows;
    render(&title, &title, &rows, None)
}

fn render(subject: &str, title: &str, rows: &[(&str, String)], link: Option<(&str, &str)>) -> RenderedAlert {
    let mut markdown = format!("### {title}\n");
    let mut text = format!("{title}\n\n");
    for (label, value) in rows {
        markdown.push_str(&format!("> **{label}:** {value}\n"));
        text.push_str(&format!("{label}: {value}\n"));
    }
    if let Some((label, url)) = link {
        markdown.push_str(&format!("\n[{label}]({url})\n"));
        text.push_str(&format!("\n{label}: {url}\n"));
    }
    RenderedAlert {
        subject: subject.replace('\n', " "),
        markdown,
        text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::Node;
    use crate::message::{ArchivePointer, MESSAGE_VERSION};
    use crate::payload::{WebhookEvent, classify};
    use crate::rules::{Approval, Decision};

    const DOCUMENTED: &str = include_str!("../../../tests/fixtures/recordengine/document-exported.json");

    fn low_confidence() -> (RoutedMessage, ExportDocument) {
        let mut root = Node::parse(DOCUMENTED).unwrap();
        if let Node::Object(object) = &mut root {
            object.insert("confidence_score".into(), Node::Number("42".into()));
            object.insert("confidence_label".into(), Node::String("Low".into()));
            object.insert(
                "confidence_reasoning".into(),
                Node::String("Total could not be matched to the line items.".into()),
            );
        }
        let WebhookEvent::Export(document) = classify(root.clone()).unwrap() else {
            panic!("export");
        };
        let message = RoutedMessage {
            message_version: MESSAGE_VERSION,
            document_id: 847,
            fingerprint: "f".into(),
            destination: "alerts".into(),
            idempotency_key: "0".repeat(40),
            approval: Approval::Required,
            decision: Decision {
                ruleset_version: "v".into(),
                rules_fired: vec![LOW_CONFIDENCE_RULE.into()],
                routes: Vec::new(),
                annotations: Vec::new(),
            },
            origin: None,
            archive: ArchivePointer {
                bucket: "b".into(),
                key: "k".into(),
            },
            received_at: "2026-12-04T08:00:00Z".into(),
            payload: Some(root),
        };
        (message, *document)
    }

    #[test]
    fn low_confidence_alert_names_everything() {
        let (message, document) = low_confidence();

        for locale in [AlertLocale::En, AlertLocale::ZhCn] {
            let alert = render_document_alert(&message, &document, locale);
            for expected in [
                "847",
                "acme-invoice-nov-2025.pdf",
                "Acme Corporation",
                "18500.00 CNY",
                "42 / 100 (Low)",
                "Total could not be matched to the line items.",
                "https://YOUR-INSTANCE/documents/847",
            ] {
                assert!(
                    alert.markdown.contains(expected),
                    "{locale:?} markdown lacks {expected}: {}",
                    alert.markdown
                );
                assert!(alert.text.contains(expected), "{locale:?} text lacks {expected}");
            }
        }
        let zh = render_document_alert(&message, &document, AlertLocale::ZhCn);
        assert!(zh.subject.starts_with("识别置信度低"), "{}", zh.subject);
        let en = render_document_alert(&message, &document, AlertLocale::En);
        assert!(en.subject.starts_with("Low-confidence extraction"), "{}", en.subject);
    }

    #[test]
    fn every_operational_kind_renders_in_both_languages() {
        let kinds = [
            (kind::UPLOAD_REJECTED, "unsupported type", "文件未上传"),
            (kind::UPLOAD_FAILED, "HTTP 500", "上传到 RecordEngine 失败"),
            (kind::UPLOAD_AMBIGUOUS, "timed out", "上传结果未知"),
            (kind::RECORDENGINE_UNAUTHORIZED, "HTTP 401", "拒绝了 API 令牌"),
            (
                kind::DISPATCH_FAILED,
                "2500 Invalid Reference",
                "发送到 accounting 失败",
            ),
            (kind::FAILURE_DIGEST, "3 failures", "个失败待处理"),
            (kind::UNREADABLE_MESSAGE, "not JSON", "无法读取"),
        ];
        for (alert_kind, value, chinese_title) in kinds {
            let alert = OperationalAlert::new(alert_kind, "error", "d")
                .param("bucket", "inbox")
                .param("key", "a.pdf")
                .param("reason", value)
                .param("error", value)
                .param("summary", value)
                .param("count", "3")
                .param("destination", "accounting")
                .param("document_id", "847");

            let en = render_operational_alert(&alert, AlertLocale::En);
            let zh = render_operational_alert(&alert, AlertLocale::ZhCn);

            assert!(en.markdown.contains(value), "{alert_kind} en: {}", en.markdown);
            assert!(zh.markdown.contains(value), "{alert_kind} zh: {}", zh.markdown);
            assert!(
                zh.subject.contains(chinese_title),
                "{alert_kind} zh subject: {}",
                zh.subject
            );
            assert!(en.subject.starts_with("[Error]"), "{alert_kind}: {}", en.subject);
            assert!(zh.subject.starts_with("[错误]"), "{alert_kind}: {}", zh.subject);
            assert_ne!(en.subject, zh.subject);
        }
    }

    #[test]
    fn unknown_kind_lists_parameters() {
        let alert = OperationalAlert::new("disk_full", "warning", "d").param("volume", "/tmp");

        let rendered = render_operational_alert(&alert, AlertLocale::En);

        assert!(rendered.subject.contains("disk_full"));
        assert!(rendered.markdown.contains("**volume:** /tmp"), "{}", rendered.markdown);
    }

    #[test]
    fn truncation_keeps_utf8_within_the_limit() {
        let chinese = "发".repeat(1400);

        let cut = truncate_utf8(&chinese, 4096);

        assert!(cut.len() <= 4096, "{} bytes", cut.len());
        assert!(cut.ends_with('…'));
        assert!(std::str::from_utf8(cut.as_bytes()).is_ok());
        assert_eq!(truncate_utf8("short", 4096), "short");
        assert_eq!(
            truncate_utf8("发发", 4),
            "…",
            "no whole character fits beside the marker"
        );
    }

    #[test]
    fn locales_parse() {
        assert_eq!("en".parse::<AlertLocale>(), Ok(AlertLocale::En));
        assert_eq!("zh-CN".parse::<AlertLocale>(), Ok(AlertLocale::ZhCn));
        assert!("fr".parse::<AlertLocale>().is_err());
    }
}
