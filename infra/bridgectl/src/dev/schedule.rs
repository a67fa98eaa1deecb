//! Schedules of the deployed stack: finding them, building the payload a
//! schedule sends, invoking its function, and firing cron schedules in
//! their own time zone, which the emulator does not do.
//!
//! EventBridge Scheduler schedules (`AWS::Scheduler::Schedule`, SAM's
//! `ScheduleV2`) and EventBridge rules with a schedule expression
//! (`AWS::Events::Rule`, SAM's `Schedule`) are both read from the stack.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{InvocationType, LogType};
use aws_sdk_scheduler::types::ScheduleState;
use chrono::{DateTime, Datelike, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::cron::ScheduleExpression;
use super::emulator::{ACCOUNT_ID, REGION};
use super::stack::{DeployedStack, LocalClients};
use bridge_shared::aws::sdk_error_text;

/// The service that runs a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleService {
    /// EventBridge Scheduler (`AWS::Scheduler::Schedule`).
    Scheduler,
    /// An EventBridge rule with a schedule expression (`AWS::Events::Rule`).
    EventsRule,
}

/// One schedule that invokes a function of the stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StackSchedule {
    pub logical_id: String,
    pub name: String,
    pub arn: String,
    pub service: ScheduleService,
    pub expression: String,
    /// IANA time zone of a cron or at() expression.
    pub timezone: String,
    pub enabled: bool,
    /// Name of the function the schedule invokes.
    pub function_name: String,
    /// The target's `Input`, sent as the payload when set.
    pub input: Option<String>,
    /// The target's `InputPath` (EventBridge rules only).
    pub input_path: Option<String>,
    pub uses_input_transformer: bool,
}

impl StackSchedule {
    /// Builds the payload the schedule sends at `time`: the target's `Input`, else a scheduled event.
    // NOTE: AWS documents only that EventBridge Scheduler sends "a default
    // notification" when a target has no Input. This sends the shape of an
    // EventBridge scheduled event, with source aws.scheduler.
    pub fn payload(&self, time: DateTime<Utc>) -> Result<String> {
        if self.uses_input_transformer {
            bail!(
                "schedule {} uses an InputTransformer, which bridgectl does not render; \
                 invoke the function with the payload you expect instead",
                self.logical_id
            );
        }
        if let Some(input) = &self.input {
            return Ok(input.clone());
        }
        let source = match self.service {
            ScheduleService::Scheduler => "aws.scheduler",
            ScheduleService::EventsRule => "aws.events",
        };
        let event = serde_json::json!({
            "version": "0",
            "id": uuid::Uuid::new_v4().to_string(),
            "detail-type": "Scheduled Event",
            "source": source,
            "account": ACCOUNT_ID,
            "time": time.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "region": REGION,
            "resources": [self.arn],
            "detail": {},
        });
        match self.input_path.as_deref() {
            None | Some("$") => Ok(event.to_string()),
            Some(path) => {
                let mut selected = &event;
                for segment in path.trim_start_matches("$.").split('.') {
                    selected = selected
                        .get(segment)
                        .with_context(|| format!("InputPath {path} of schedule {} selects nothing", self.logical_id))?;
                }
                Ok(selected.to_string())
            }
        }
    }

    fn timezone(&self) -> Result<Tz> {
        self.timezone.parse().map_err(|error| {
            anyhow::anyhow!(
                "schedule {}: unknown time zone {:?}: {error}",
                self.logical_id,
                self.timezone
            )
        })
    }

    /// Returns whether the emulator fires this schedule at the right times.
    /// It evaluates cron and at() expressions in UTC, whatever the time zone.
    pub fn emulator_fires_correctly(&self) -> bool {
        if self.service != ScheduleService::Scheduler || self.expression.trim_start().starts_with("rate") {
            return true;
        }
        self.timezone().is_ok_and(|zone| has_zero_offset(&zone))
    }
}

/// Returns whether a zone is at UTC+0 both in January and in July of this year.
fn has_zero_offset(zone: &Tz) -> bool {
    use chrono::Offset;
    let year = Utc::now().year();
    [1, 7].iter().all(|month| {
        Utc.with_ymd_and_hms(year, *month, 1, 12, 0, 0)
            .single()
            .is_some_and(|instant| instant.with_timezone(zone).offset().fix().local_minus_utc() == 0)
    })
}

/// Reads every schedule of the stack that invokes a Lambda function.
pub async fn stack_schedules(clients: &LocalClients, stack: &DeployedStack) -> Result<Vec<StackSchedule>> {
    let mut schedules = Vec::new();
    for resource in stack.resources_of_type("AWS::Scheduler::Schedule") {
        let properties = stack.template_properties(&resource.logical_id);
        let group = properties
            .and_then(|properties| properties.get("GroupName"))
            .and_then(serde_json::Value::as_str)
            .unwrap_or("default");
        let live = clients
            .scheduler
            .get_schedule()
            .name(&resource.physical_id)
            .group_name(group)
            .send()
            .await
            .map_err(|error| anyhow::anyhow!("GetSchedule {}: {}", resource.physical_id, sdk_error_text(&error)))?;
        let Some(target) = live.target() else {
            continue;
        };
        // The emulator drops ScheduleExpressionTimezone when CloudFormation
        // creates a schedule, so the template's value is used unless the
        // emulator reports a zone of its own.
        let template_zone = properties
            .and_then(|properties| properties.get("ScheduleExpressionTimezone"))
            .and_then(|zone| resolve_string(zone, stack));
        let live_zone = live.schedule_expression_timezone().filter(|zone| *zone != "UTC");
        schedules.push(StackSchedule {
            logical_id: resource.logical_id.clone(),
            name: resource.physical_id.clone(),
            arn: live.arn().unwrap_or_default().to_owned(),
            service: ScheduleService::Scheduler,
            expression: live.schedule_expression().unwrap_or_default().to_owned(),
            timezone: live_zone
                .map(str::to_owned)
                .or(template_zone)
                .unwrap_or_else(|| "UTC".to_owned()),
            enabled: live.state() != Some(&ScheduleState::Disabled),
            function_name: function_name_of(target.arn()).unwrap_or_default(),
            input: target.input().map(str::to_owned),
            input_path: None,
            uses_input_transformer: false,
        });
    }

    for resource in stack.resources_of_type("AWS::Events::Rule") {
        let rule = clients
            .eventbridge
            .describe_rule()
            .name(&resource.physical_id)
            .send()
            .await
            .map_err(|error| anyhow::anyhow!("DescribeRule {}: {}", resource.physical_id, sdk_error_text(&error)))?;
        let Some(expression) = rule.schedule_expression() else {
            continue;
        };
        let targets = clients
            .eventbridge
            .list_targets_by_rule()
            .rule(&resource.physical_id)
            .send()
            .await
            .map_err(|error| {
                anyhow::anyhow!("ListTargetsByRule {}: {}", resource.physical_id, sdk_error_text(&error))
            })?;
        for target in targets.targets() {
            let Some(function_name) = function_name_of(target.arn()) else {
                continue;
            };
            schedules.push(StackSchedule {
                logical_id: resource.logical_id.clone(),
                name: resource.physical_id.clone(),
                arn: rule.arn().unwrap_or_default().to_owned(),
                service: ScheduleService::EventsRule,
                expression: expression.to_owned(),
                timezone: "UTC".to_owned(),
                enabled: rule.state().is_none_or(|state| state.as_str() == "ENABLED"),
                function_name,
                input: target.input().map(str::to_owned),
                input_path: target.input_path().map(str::to_owned),
                uses_input_transformer: target.input_transformer().is_some(),
            });
        }
    }
    Ok(schedules)
}

/// Resolves a string property, or a `Ref` to a stack parameter: its deployed
/// value, else its default in the processed template.
fn resolve_string(value: &serde_json::Value, stack: &DeployedStack) -> Option<String> {
    match value {
        serde_json::Value::String(text) => Some(text.clone()),
        serde_json::Value::Object(object) => {
            let name = object.get("Ref")?.as_str()?;
            stack.parameters.get(name).cloned().or_else(|| {
                stack
                    .template
                    .get("Parameters")?
                    .get(name)?
                    .get("Default")?
                    .as_str()
                    .map(str::to_owned)
            })
        }
        _ => None,
    }
}

/// The function name in `arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]`.
pub fn function_name_of(arn: &str) -> Option<String> {
    let mut parts = arn.split(':');
    if parts.nth(2)? != "lambda" {
        return None;
    }
    let mut rest = parts.skip(2);
    (rest.next()? == "function").then_some(())?;
    rest.next().map(str::to_owned)
}

/// The result of one invocation.
#[derive(Debug, Clone, Serialize)]
pub struct Invocation {
    pub function_name: String,
    pub status_code: i32,
    /// `Unhandled` or `Handled` when the function returned an error.
    pub function_error: Option<String>,
    pub response: String,
    /// The end of the function's log, when the emulator returns it.
    pub log_tail: Option<String>,
}

/// Invokes a function synchronously with a payload.
pub async fn invoke(clients: &LocalClients, function_name: &str, payload: &str) -> Result<Invocation> {
    let output = clients
        .lambda
        .invoke()
        .function_name(function_name)
        .invocation_type(InvocationType::RequestResponse)
        .log_type(LogType::Tail)
        .payload(Blob::new(payload.as_bytes()))
        .send()
        .await
        .map_err(|error| anyhow::anyhow!("Invoke {function_name}: {}", sdk_error_text(&error)))?;
    Ok(Invocation {
        function_name: function_name.to_owned(),
        status_code: output.status_code(),
        function_error: output.function_error().map(str::to_owned),
        response: output
            .payload()
            .map(|blob| String::from_utf8_lossy(blob.as_ref()).into_owned())
            .unwrap_or_default(),
        log_tail: output.log_result().map(decode_log_tail),
    })
}

/// Decodes the base64 `LogResult` of an invocation.
fn decode_log_tail(encoded: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_else(|_| encoded.to_owned())
}

/// Fires cron and at() schedules of the stack in their own time zone while
/// the local stack runs, in place of the emulator.
pub struct ScheduleTicker {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    /// The schedules this ticker fires.
    pub schedules: Vec<StackSchedule>,
}

impl ScheduleTicker {
    /// Disables each schedule the emulator would fire at the wrong time and
    /// starts firing it at the right one.
    pub async fn take_over(clients: LocalClients, schedules: &[StackSchedule]) -> Result<ScheduleTicker> {
        let mut taken = Vec::new();
        for schedule in schedules
            .iter()
            .filter(|schedule| schedule.enabled && !schedule.emulator_fires_correctly())
        {
            schedule.timezone()?;
            ScheduleExpression::parse(&schedule.expression)
                .map_err(|error| anyhow::anyhow!("schedule {}: {error}", schedule.logical_id))?;
            disable_in_emulator(&clients, schedule).await?;
            tracing::info!(
                schedule = %schedule.logical_id,
                expression = %schedule.expression,
                timezone = %schedule.timezone,
                "firing this schedule from bridgectl, in its time zone"
            );
            taken.push(schedule.clone());
        }

        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(tick(Arc::new(clients), taken.clone(), stopped));
        Ok(ScheduleTicker {
            stop,
            task,
            schedules: taken,
        })
    }

    pub async fn stop(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
    }
}

/// Sets a schedule's state to DISABLED in the emulator, keeping everything else.
async fn disable_in_emulator(clients: &LocalClients, schedule: &StackSchedule) -> Result<()> {
    let scheduler = &clients.scheduler;
    let group = schedule.arn.rsplit('/').nth(1).unwrap_or("default").to_owned();
    let live = scheduler
        .get_schedule()
        .name(&schedule.name)
        .group_name(&group)
        .send()
        .await
        .map_err(|error| anyhow::anyhow!("GetSchedule {}: {}", schedule.name, sdk_error_text(&error)))?;
    scheduler
        .update_schedule()
        .name(&schedule.name)
        .group_name(&group)
        .schedule_expression(&schedule.expression)
        .schedule_expression_timezone(&schedule.timezone)
        .set_flexible_time_window(live.flexible_time_window().cloned())
        .set_target(live.target().cloned())
        .set_description(live.description().map(str::to_owned))
        .state(ScheduleState::Disabled)
        .send()
        .await
        .map_err(|error| anyhow::anyhow!("UpdateSchedule {}: {}", schedule.name, sdk_error_text(&error)))?;
    Ok(())
}

async fn tick(clients: Arc<LocalClients>, schedules: Vec<StackSchedule>, mut stopped: watch::Receiver<bool>) {
    if schedules.is_empty() {
        return;
    }
    let parsed: Vec<(StackSchedule, Tz, ScheduleExpression)> = schedules
        .into_iter()
        .filter_map(|schedule| {
            let zone = schedule.timezone().ok()?;
            let expression = ScheduleExpression::parse(&schedule.expression).ok()?;
            Some((schedule, zone, expression))
        })
        .collect();
    let mut tracker = DueTracker::default();

    loop {
        let now = Utc::now();
        for (schedule, zone, expression) in &parsed {
            if tracker.is_due(&schedule.name, zone, expression, now) {
                tokio::spawn(fire(Arc::clone(&clients), schedule.clone(), now));
            }
        }
        tracker.forget_old(now);

        // Wake one second into the next minute.
        let into_minute =
            Duration::from_millis(u64::from(now.second()) * 1000 + u64::from(now.timestamp_subsec_millis()));
        let wait = Duration::from_secs(61).saturating_sub(into_minute);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
    }
}

/// The firings a ticker has made, so that each scheduled time fires once.
#[derive(Debug, Default)]
struct DueTracker {
    /// (schedule, local minute) pairs already fired. Keyed by local time, so
    /// that the hour repeated when clocks go back fires each local time once.
    fired: HashSet<(String, NaiveDateTime)>,
    /// at() schedules already fired.
    fired_once: HashSet<String>,
}

impl DueTracker {
    /// Returns whether a schedule is due at `now` and, if so, records it as fired.
    // NOTE: a cron time inside the hour skipped when clocks go forward never
    // matches a local minute, so it does not fire that day.
    fn is_due(&mut self, name: &str, zone: &Tz, expression: &ScheduleExpression, now: DateTime<Utc>) -> bool {
        let local = now.with_timezone(zone).naive_local();
        let minute = local
            .with_second(0)
            .and_then(|time| time.with_nanosecond(0))
            .unwrap_or(local);
        match expression {
            ScheduleExpression::Cron(cron) => cron.matches(minute) && self.fired.insert((name.to_owned(), minute)),
            ScheduleExpression::At(time) => local >= *time && self.fired_once.insert(name.to_owned()),
            ScheduleExpression::Rate(_) => false,
        }
    }

    /// Forgets cron firings more than two days old.
    fn forget_old(&mut self, now: DateTime<Utc>) {
        self.fired
            .retain(|(_, minute)| (now.naive_utc() - *minute).num_hours().abs() < 48);
    }
}

async fn fire(clients: Arc<LocalClients>, schedule: StackSchedule, time: DateTime<Utc>) {
    let payload = match schedule.payload(time) {
        Ok(payload) => payload,
        Err(error) => {
            tracing::error!(schedule = %schedule.logical_id, %error, "cannot build the schedule's payload");
            return;
        }
    };
    match invoke(&clients, &schedule.function_name, &payload).await {
        Ok(invocation) if invocation.function_error.is_none() => tracing::info!(
            schedule = %schedule.logical_id,
            function = %schedule.function_name,
            "schedule fired"
        ),
        Ok(invocation) => tracing::warn!(
            schedule = %schedule.logical_id,
            function = %schedule.function_name,
            error = %invocation.response,
            "schedule fired; the function returned an error"
        ),
        Err(error) => tracing::error!(
            schedule = %schedule.logical_id,
            function = %schedule.function_name,
            %error,
            "schedule fired; the invocation failed"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(service: ScheduleService, expression: &str, timezone: &str) -> StackSchedule {
        StackSchedule {
            logical_id: "NightlyRun".to_owned(),
            name: "stack-NightlyRun".to_owned(),
            arn: "arn:aws:scheduler:us-east-1:000000000000:schedule/default/stack-NightlyRun".to_owned(),
            service,
            expression: expression.to_owned(),
            timezone: timezone.to_owned(),
            enabled: true,
            function_name: "stack-Function".to_owned(),
            input: None,
            input_path: None,
            uses_input_transformer: false,
        }
    }

    #[test]
    fn input_is_sent_as_is() {
        let mut with_input = schedule(ScheduleService::Scheduler, "rate(1 hour)", "UTC");
        with_input.input = Some(r#"{"prefix": "scheduled/"}"#.to_owned());

        assert_eq!(with_input.payload(Utc::now()).unwrap(), r#"{"prefix": "scheduled/"}"#);
    }

    #[test]
    fn default_payload_is_a_scheduled_event() {
        let time = Utc.with_ymd_and_hms(2026, 3, 2, 7, 30, 0).unwrap();

        let payload: serde_json::Value = serde_json::from_str(
            &schedule(ScheduleService::Scheduler, "rate(1 hour)", "UTC")
                .payload(time)
                .unwrap(),
        )
        .unwrap();

        assert_eq!(payload["source"], "aws.scheduler");
        assert_eq!(payload["detail-type"], "Scheduled Event");
        assert_eq!(payload["time"], "2026-03-02T07:30:00Z");
        assert_eq!(
            payload["resources"][0],
            "arn:aws:scheduler:us-east-1:000000000000:schedule/default/stack-NightlyRun"
        );
    }

    #[test]
    fn input_path_selects_part_of_the_event() {
        let mut rule = schedule(ScheduleService::EventsRule, "rate(1 hour)", "UTC");
        rule.input_path = Some("$.detail".to_owned());

        assert_eq!(rule.payload(Utc::now()).unwrap(), "{}");

        rule.input_path = Some("$.nothing".to_owned());
        assert!(
            rule.payload(Utc::now())
                .unwrap_err()
                .to_string()
                .contains("selects nothing")
        );
    }

    #[test]
    fn input_transformer_is_rejected() {
        let mut rule = schedule(ScheduleService::EventsRule, "rate(1 hour)", "UTC");
        rule.uses_input_transformer = true;

        assert!(
            rule.payload(Utc::now())
                .unwrap_err()
                .to_string()
                .contains("InputTransformer")
        );
    }

    #[test]
    fn emulator_timing_by_zone() {
        assert!(schedule(ScheduleService::Scheduler, "cron(0 6 * * ? *)", "UTC").emulator_fires_correctly());
        assert!(schedule(ScheduleService::Scheduler, "cron(0 6 * * ? *)", "Etc/UTC").emulator_fires_correctly());
        assert!(schedule(ScheduleService::Scheduler, "rate(5 minutes)", "Asia/Shanghai").emulator_fires_correctly());
        assert!(schedule(ScheduleService::EventsRule, "cron(0 6 * * ? *)", "UTC").emulator_fires_correctly());
        assert!(!schedule(ScheduleService::Scheduler, "cron(0 6 * * ? *)", "Asia/Shanghai").emulator_fires_correctly());
        assert!(!schedule(ScheduleService::Scheduler, "cron(0 6 * * ? *)", "Europe/London").emulator_fires_correctly());
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn cron_fires_at_local_time_once() {
        let expression = ScheduleExpression::parse("cron(0 8 * * ? *)").unwrap();
        let shanghai: Tz = "Asia/Shanghai".parse().unwrap();
        let mut tracker = DueTracker::default();

        // 08:00 in Shanghai is 00:00 UTC; 08:00 UTC is 16:00 there.
        assert!(!tracker.is_due("upload", &shanghai, &expression, utc("2026-03-02T08:00:30Z")));
        assert!(tracker.is_due("upload", &shanghai, &expression, utc("2026-03-02T00:00:30Z")));
        assert!(!tracker.is_due("upload", &shanghai, &expression, utc("2026-03-02T00:00:50Z")));
        assert!(tracker.is_due("upload", &shanghai, &expression, utc("2026-03-03T00:00:10Z")));
    }

    #[test]
    fn repeated_hour_fires_once() {
        let expression = ScheduleExpression::parse("cron(30 2 * * ? *)").unwrap();
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let mut tracker = DueTracker::default();

        // On 2026-10-25 Berlin's clocks go back, so 02:30 local comes at 00:30 and 01:30 UTC.
        assert!(tracker.is_due("nightly", &berlin, &expression, utc("2026-10-25T00:30:05Z")));
        assert!(!tracker.is_due("nightly", &berlin, &expression, utc("2026-10-25T01:30:05Z")));
    }

    #[test]
    fn at_fires_once_after_its_time() {
        let expression = ScheduleExpression::parse("at(2026-03-01T09:00:00)").unwrap();
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let mut tracker = DueTracker::default();

        assert!(!tracker.is_due("once", &berlin, &expression, utc("2026-03-01T07:59:00Z")));
        assert!(tracker.is_due("once", &berlin, &expression, utc("2026-03-01T08:00:10Z")));
        assert!(!tracker.is_due("once", &berlin, &expression, utc("2026-03-01T08:01:10Z")));
    }

    #[test]
    fn rate_is_left_to_the_emulator() {
        let expression = ScheduleExpression::parse("rate(1 minute)").unwrap();
        let mut tracker = DueTracker::default();

        assert!(!tracker.is_due("flush", &Tz::UTC, &expression, utc("2026-03-01T08:00:00Z")));
    }

    #[test]
    fn function_names_from_arns() {
        assert_eq!(
            function_name_of("arn:aws:lambda:us-east-1:000000000000:function:stack-Upload").as_deref(),
            Some("stack-Upload")
        );
        assert_eq!(
            function_name_of("arn:aws:lambda:us-east-1:000000000000:function:stack-Upload:live").as_deref(),
            Some("stack-Upload")
        );
        assert_eq!(function_name_of("arn:aws:sqs:us-east-1:000000000000:queue"), None);
    }
}
