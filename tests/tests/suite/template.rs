//! What `template.yaml` must say for the deployment to be operable and least-privilege,
//! read from the file itself.

use platform_tests::iam::Template;
use serde_json::Value;

fn seconds(value: &Value) -> u64 {
    value.as_u64().or_else(|| value.as_str().and_then(|s| s.parse().ok())).expect("a number of seconds")
}

fn timeout_of(t: &Template, function: &str) -> u64 {
    let own = &t.resource(function)["Properties"]["Timeout"];
    if own.is_null() { seconds(&t.0["Globals"]["Function"]["Timeout"]) } else { seconds(own) }
}

/// The events of `function` of type `kind`.
fn events<'a>(t: &'a Template, function: &str, kind: &str) -> Vec<&'a Value> {
    let events = t.resource(function)["Properties"]["Events"].as_object();
    events.into_iter().flat_map(|e| e.values()).filter(|e| e["Type"] == kind).collect()
}

fn names(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => vec![],
    }
}

#[test]
fn every_queue_gives_its_consumer_six_times_its_timeout_to_finish() {
    let t = Template::load();
    let mut pairs = 0;
    for function in t.functions() {
        for event in events(&t, &function, "SQS") {
            let queue = event["Properties"]["Queue"]["Fn::GetAtt"].as_str().unwrap().trim_end_matches(".Arn");
            let visibility = seconds(&t.resource(queue)["Properties"]["VisibilityTimeout"]);
            let timeout = timeout_of(&t, &function);
            assert!(visibility >= 6 * timeout, "{queue}: visibility {visibility} s < 6 x {function}'s {timeout} s");
            pairs += 1;
        }
    }
    assert_eq!(
        pairs, 6,
        "the allocation, settlement, notify, reconcile, myinfo and matching queues, each with its consumer"
    );
}

#[test]
fn every_function_has_its_own_role_with_no_managed_policy_and_no_wildcard_but_x_ray() {
    let t = Template::load();
    for function in t.functions() {
        let props = &t.resource(function.as_str())["Properties"];
        assert!(props["Policies"].is_null(), "{function}: SAM policies add managed ones; state a role");
        let role = &t.role_of(&function)["Properties"];
        assert!(role["ManagedPolicyArns"].is_null(), "{function}: no managed policies");
        for policy in role["Policies"].as_array().unwrap() {
            for statement in policy["PolicyDocument"]["Statement"].as_array().unwrap() {
                let actions = names(&statement["Action"]);
                assert!(actions.iter().all(|a| !a.contains('*')), "{function}: a wildcard action {actions:?}");
                if names(&statement["Resource"]).iter().any(|r| r.contains('*')) {
                    // X-Ray has no resource-level permissions; a log group's ARN ends in :*.
                    assert!(actions.iter().all(|a| a.starts_with("xray:")), "{function}: {actions:?} on *");
                }
            }
        }
    }
}

#[test]
fn only_the_auth_function_holds_the_token_key_and_no_function_holds_a_secret_in_its_environment() {
    let t = Template::load();
    for function in t.functions() {
        let env = t.environment_of(&function);
        let policy = t.policy_of(&function, "Code").map(|p| p.to_string()).unwrap_or_default();
        let holds_token_key = env.contains_key("TOKEN_KEY_ID") || policy.contains("TokenKey");
        assert_eq!(holds_token_key, function == "AuthFunction", "{function}");
        for (name, value) in &env {
            assert!(!value.to_string().contains("resolve:secretsmanager"), "{function}: {name} resolves a secret");
            assert!(!name.ends_with("_API_KEY") && !name.ends_with("_WEBHOOK_SECRET"), "{function}: {name}");
        }
        // A secret is named in the environment exactly when the policy lets it be read.
        for secret in ["BankSecret", "ChainSecret", "CustodySecret"] {
            let named = env.values().any(|v| v.to_string().contains(secret));
            assert_eq!(named, policy.contains(secret), "{function} and {secret}");
        }
    }
}

#[test]
fn failures_land_somewhere_an_operator_sees_and_alarms_watch_them() {
    let t = Template::load();
    for function in t.functions() {
        for stream in events(&t, &function, "DynamoDB") {
            let p = &stream["Properties"];
            assert_eq!(p["BisectBatchOnFunctionError"], true, "{function}'s stream");
            assert!(p["DestinationConfig"]["OnFailure"]["Destination"].is_object(), "{function}'s stream");
        }
        for schedule in events(&t, &function, "ScheduleV2") {
            let p = &schedule["Properties"];
            assert!(p["RetryPolicy"]["MaximumRetryAttempts"].is_u64(), "{function}'s schedule retries");
            assert!(p["DeadLetterConfig"]["Arn"].is_object(), "{function}'s schedule has a dead-letter queue");
        }
        for metric in ["Errors", "Throttles"] {
            let watched = t.resources().values().any(|r| {
                r["Type"] == "AWS::CloudWatch::Alarm"
                    && r["Properties"]["MetricName"] == metric
                    && r["Properties"]["Dimensions"][0]["Value"]["Ref"] == function.as_str()
            });
            assert!(watched, "no alarm on {function}'s {metric}");
        }
    }
    // Every queue that only ever receives failures has an alarm on its depth.
    let dead_letter_queues: Vec<&String> = t
        .resources()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::SQS::Queue" && r["Properties"]["VisibilityTimeout"].is_null())
        .map(|(name, _)| name)
        .collect();
    assert_eq!(dead_letter_queues.len(), 8);
    for queue in dead_letter_queues {
        let watched = t.resources().values().any(|r| {
            r["Type"] == "AWS::CloudWatch::Alarm"
                && r["Properties"]["Dimensions"][0]["Value"]["Fn::GetAtt"] == format!("{queue}.QueueName")
        });
        assert!(watched, "no alarm on {queue}");
    }
    for metric in [
        "ReconciliationIncomplete",
        "ReconciliationNewBreaks",
        "IteratorAge",
        "AuditChainBreaks",
        "SweepPermanentFailures",
    ] {
        let watched = t
            .resources()
            .values()
            .any(|r| r["Type"] == "AWS::CloudWatch::Alarm" && r["Properties"]["MetricName"] == metric);
        assert!(watched, "no alarm on {metric}");
    }
}

#[test]
fn the_nightly_run_reconciles_the_schedules_own_time_one_run_at_a_time() {
    let t = Template::load();
    let nightly = &t.resource("ReconcileFunction")["Properties"]["Events"]["Nightly"]["Properties"];
    let input: Value = serde_json::from_str(nightly["Input"].as_str().unwrap()).unwrap();
    assert_eq!(input["cut_off"], "<aws.scheduler.scheduled-time>");
    assert_eq!(nightly["ScheduleExpressionTimezone"], "Asia/Singapore");
    assert_eq!(t.resource("ReconcileFunction")["Properties"]["ReservedConcurrentExecutions"], 1);
}

#[test]
fn the_http_api_allows_the_configured_frontend_origins_only() {
    let t = Template::load();
    let cors = &t.resource("Api")["Properties"]["CorsConfiguration"];
    assert_eq!(cors["AllowOrigins"]["Ref"], "FrontendOrigins");
    assert!(t.parameter("FrontendOrigins").is_some_and(|o| !o.contains('*')));
}

#[test]
fn the_readme_lists_exactly_the_templates_parameters() {
    let t = Template::load();
    let readme = std::fs::read_to_string(platform_tests::iam::repository_file("README.md")).unwrap();
    let deploy = readme.split("## Deploying to AWS").nth(1).unwrap().split("\n## ").next().unwrap();
    let listed: std::collections::BTreeSet<String> = deploy
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|name| !name.starts_with("dabs/"))
        .map(str::to_owned)
        .collect();
    let parameters: std::collections::BTreeSet<String> =
        t.0["Parameters"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(listed, parameters);
    // And every key a partner secret is read for.
    for key in ["api_key", "webhook_secret", "previous_webhook_secret"] {
        assert!(deploy.contains(&format!("`{key}`")), "the README does not name the secret key {key}");
    }
}

/// The myinfo role may use the data key only under the purposes its code passes: person
/// keys (generate, open, re-wrap) and its client keys (generate, open). moto does not
/// evaluate conditions, so this reads them.
#[test]
fn the_myinfo_role_uses_the_data_key_under_its_own_purposes_only() {
    use shared::app::myinfo::{keys, vault};
    let t = Template::load();
    let policy = t.policy_of("MyinfoFunction", "Code").expect("a Code policy");
    let mut kms = Vec::new();
    for statement in policy["Statement"].as_array().unwrap() {
        let actions = names(&statement["Action"]);
        if actions.iter().any(|a| a.starts_with("kms:")) {
            let purposes = names(&statement["Condition"]["StringEquals"]["kms:EncryptionContext:purpose"]);
            kms.push((actions, purposes));
        }
    }
    let (person, client) = (vault::PURPOSE.to_owned(), keys::PURPOSE.to_owned());
    assert_eq!(
        kms,
        vec![
            (vec!["kms:GenerateDataKey".to_owned(), "kms:Decrypt".to_owned()], vec![person.clone(), client]),
            (vec!["kms:ReEncryptFrom".to_owned(), "kms:ReEncryptTo".to_owned()], vec![person]),
        ]
    );
}
