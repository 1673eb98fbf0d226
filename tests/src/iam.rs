//! Each function as deployed: the resources `template.yaml` declares, made in an emulator
//! that enforces IAM (`DABS_IAM_ENDPOINT`, started by `./infra/test.sh` with an admin key
//! in `DABS_IAM_ADMIN_KEY`), and a platform per function that signs as a user holding
//! exactly that function's `Code` policy and sees exactly its environment, both read from
//! the template and resolved against the emulator's resources.

use std::collections::HashMap;

use serde_json::{Value, json};
use shared::Platform;
use shared::adapters::aws::{DynamoStore, emulator_config_as};

/// A file of this checkout, by its path from the repository's root. The crate's folder is
/// read when the test runs (cargo sets it then): a test binary built in another checkout
/// into the same target folder must not read that checkout's files.
pub fn repository_file(path: &str) -> std::path::PathBuf {
    let crate_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
    std::path::Path::new(&crate_dir).join("..").join(path)
}
const REGION: &str = "ap-southeast-1";
const ACCOUNT: &str = "123456789012";

/// `template.yaml` as JSON, its short-form tags (`!Ref`, `!GetAtt`, `!Sub`, ...) written
/// as the long forms (`Ref`, `Fn::GetAtt`, `Fn::Sub`, ...).
pub struct Template(pub Value);

impl Template {
    pub fn load() -> Self {
        let text = std::fs::read_to_string(repository_file("template.yaml")).expect("template.yaml");
        let yaml: serde_norway::Value = serde_norway::from_str(&text).expect("template.yaml is YAML");
        Self(to_json(yaml))
    }

    pub fn resources(&self) -> &serde_json::Map<String, Value> {
        self.0["Resources"].as_object().expect("Resources")
    }

    pub fn resource(&self, name: &str) -> &Value {
        self.resources().get(name).unwrap_or_else(|| panic!("template.yaml has no resource {name}"))
    }

    /// The logical ids of the Lambda functions.
    pub fn functions(&self) -> Vec<String> {
        let functions = self.resources().iter().filter(|(_, r)| r["Type"] == "AWS::Serverless::Function");
        functions.map(|(name, _)| name.clone()).collect()
    }

    /// The function's execution role's resource.
    pub fn role_of(&self, function: &str) -> &Value {
        let role = &self.resource(function)["Properties"]["Role"]["Fn::GetAtt"];
        let name = role.as_str().and_then(|r| r.strip_suffix(".Arn")).unwrap_or_else(|| {
            panic!("{function} names no explicit role (Role: !GetAtt <Role>.Arn): its permissions must be stated")
        });
        self.resource(name)
    }

    /// The named inline policy of the function's role, unresolved; `None` if it has none.
    pub fn policy_of(&self, function: &str, policy: &str) -> Option<Value> {
        let policies = self.role_of(function)["Properties"]["Policies"].as_array().expect("Policies");
        policies.iter().find(|p| p["PolicyName"] == policy).map(|p| p["PolicyDocument"].clone())
    }

    /// The function's environment: the globals and its own, its own winning.
    pub fn environment_of(&self, function: &str) -> serde_json::Map<String, Value> {
        let mut env =
            self.0["Globals"]["Function"]["Environment"]["Variables"].as_object().cloned().unwrap_or_default();
        let own = &self.resource(function)["Properties"]["Environment"]["Variables"];
        env.extend(own.as_object().cloned().unwrap_or_default());
        env
    }

    /// A parameter's default.
    pub fn parameter(&self, name: &str) -> Option<String> {
        let default = &self.0["Parameters"][name]["Default"];
        default.as_str().map(str::to_owned).or_else(|| default.as_i64().map(|n| n.to_string()))
    }
}

fn to_json(yaml: serde_norway::Value) -> Value {
    use serde_norway::Value as Y;
    match yaml {
        Y::Null => Value::Null,
        Y::Bool(b) => json!(b),
        Y::Number(n) => serde_json::to_value(n).unwrap_or(Value::Null),
        Y::String(s) => json!(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(to_json).collect()),
        Y::Mapping(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k.as_str().map(str::to_owned).unwrap_or_else(|| format!("{k:?}")), to_json(v)))
                .collect(),
        ),
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let key = if name == "Ref" { "Ref".to_owned() } else { format!("Fn::{name}") };
            let mut value = to_json(tagged.value);
            // `!GetAtt A.B` is `Fn::GetAtt: "A.B"`; keep that one form.
            if let (true, Value::Array(parts)) = (name == "GetAtt", &value) {
                value = json!(parts.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("."));
            }
            json!({ key: value })
        }
    }
}

/// What the template's references resolve to in the emulator.
#[derive(Default)]
pub struct Resolved {
    refs: HashMap<String, String>,
    attrs: HashMap<String, String>,
}

impl Resolved {
    fn reference(&self, name: &str) -> String {
        match name {
            "AWS::Region" => REGION.to_owned(),
            "AWS::AccountId" => ACCOUNT.to_owned(),
            "AWS::Partition" => "aws".to_owned(),
            "AWS::URLSuffix" => "amazonaws.com".to_owned(),
            _ => self.refs.get(name).cloned().unwrap_or_else(|| panic!("nothing in the emulator for !Ref {name}")),
        }
    }

    fn attribute(&self, name: &str) -> String {
        self.attrs.get(name).cloned().unwrap_or_else(|| panic!("nothing in the emulator for !GetAtt {name}"))
    }

    /// `value` with every intrinsic function replaced by what it names here.
    pub fn resolve(&self, value: &Value) -> Value {
        match value {
            Value::Object(map) if map.len() == 1 && map.contains_key("Ref") => {
                json!(self.reference(map["Ref"].as_str().expect("Ref names a string")))
            }
            Value::Object(map) if map.len() == 1 && map.contains_key("Fn::GetAtt") => {
                json!(self.attribute(map["Fn::GetAtt"].as_str().expect("GetAtt names a string")))
            }
            Value::Object(map) if map.len() == 1 && map.contains_key("Fn::Sub") => {
                let mut text = map["Fn::Sub"].as_str().expect("Sub of a plain string").to_owned();
                while let Some(start) = text.find("${") {
                    let end = start + text[start..].find('}').expect("a closed ${...}");
                    let name = &text[start + 2..end];
                    let value = if name.contains('.') && !name.starts_with("AWS::") {
                        self.attribute(name)
                    } else {
                        self.reference(name)
                    };
                    text.replace_range(start..=end, &value);
                }
                json!(text)
            }
            Value::Object(map) if map.keys().any(|k| k.starts_with("Fn::")) => {
                panic!("the IAM tests cannot resolve {value}: keep policies and environments to Ref, GetAtt and Sub")
            }
            Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), self.resolve(v))).collect()),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.resolve(v)).collect()),
            other => other.clone(),
        }
    }
}

/// The partner simulators' keys, as the test stack puts them in the partner secrets.
pub const PARTNER_API_KEY: &str = "partner-api-key";

/// The template's resources, made in the IAM-enforcing emulator.
pub struct Stack {
    pub endpoint: String,
    pub admin: aws_config::SdkConfig,
    /// The admin's access key id and secret, to sign IAM calls (see [`Stack::iam`]).
    admin_key: (String, String),
    pub template: Template,
    pub resolved: Resolved,
}

/// The IAM-enforcing emulator's endpoint and admin key; `None` (the test is skipped) in a
/// plain `cargo test` without one, a failure under `./infra/test.sh`.
fn iam_emulator(test: &str) -> Option<(String, String, String)> {
    let endpoint = shared::adapters::aws::emulator_endpoint("DABS_IAM_ENDPOINT", test)?;
    let key = std::env::var("DABS_IAM_ADMIN_KEY").expect("DABS_IAM_ADMIN_KEY is set with DABS_IAM_ENDPOINT");
    let (id, secret) = key.split_once(':').expect("DABS_IAM_ADMIN_KEY is <id>:<secret>");
    Some((endpoint, id.to_owned(), secret.to_owned()))
}

impl Stack {
    /// Makes every table, queue, key and secret the template declares (fresh names), and
    /// the mail identity, as the admin; `None` when `test` runs without the emulator.
    pub async fn up(test: &str) -> Option<Self> {
        let (endpoint, id, secret) = iam_emulator(test)?;
        let admin = emulator_config_as(&endpoint, &id, &secret).await.expect("loopback endpoint");
        let template = Template::load();
        let suffix = ulid::Ulid::new().to_string().to_lowercase();
        let mut resolved = Resolved::default();
        for (name, value) in template.0["Parameters"].as_object().expect("Parameters") {
            let default = &value["Default"];
            let text = default.as_str().map(str::to_owned).unwrap_or_else(|| default.to_string());
            resolved.refs.insert(name.clone(), text);
        }
        let arn = |service: &str, resource: String| format!("arn:aws:{service}:{REGION}:{ACCOUNT}:{resource}");
        let (sqs, kms) = (aws_sdk_sqs::Client::new(&admin), aws_sdk_kms::Client::new(&admin));
        let secrets = aws_sdk_secretsmanager::Client::new(&admin);
        for (name, resource) in template.resources() {
            let unique = format!("{}-{suffix}", name.to_lowercase());
            let (reference, attrs): (String, Vec<(&str, String)>) = match resource["Type"].as_str().unwrap_or_default()
            {
                "AWS::DynamoDB::Table" => {
                    let client = aws_sdk_dynamodb::Client::new(&admin);
                    DynamoStore::create_table(&client, &unique).await.expect("table");
                    let table = arn("dynamodb", format!("table/{unique}"));
                    let stream = format!("{table}/stream/2026-01-01T00:00:00.000");
                    (unique.clone(), vec![("Arn", table), ("StreamArn", stream)])
                }
                "AWS::SQS::Queue" => {
                    // A FIFO queue's name ends in `.fifo`.
                    let fifo = resource["Properties"]["FifoQueue"] == json!(true);
                    let unique = if fifo { format!("{unique}.fifo") } else { unique };
                    let attributes =
                        fifo.then(|| [(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true".to_owned())].into());
                    let made = sqs.create_queue().queue_name(&unique).set_attributes(attributes).send().await;
                    let url = made.expect("queue").queue_url.unwrap();
                    (url, vec![("Arn", arn("sqs", unique.clone())), ("QueueName", unique.clone())])
                }
                "AWS::KMS::Key" => {
                    let key = kms.create_key().send().await.expect("key").key_metadata.unwrap();
                    (key.key_id.clone(), vec![("Arn", key.arn.unwrap())])
                }
                "AWS::SecretsManager::Secret" => {
                    let value = json!({
                        "api_key": PARTNER_API_KEY,
                        "webhook_secret": format!("{name}-webhook-secret"),
                    });
                    let made = secrets.create_secret().name(&unique).secret_string(value.to_string()).send().await;
                    (made.expect("secret").arn.unwrap(), vec![])
                }
                "AWS::Logs::LogGroup" => (unique.clone(), vec![("Arn", arn("logs", format!("log-group:{unique}:*")))]),
                _ => (unique.clone(), vec![("Arn", arn("lambda", format!("function:{unique}")))]),
            };
            resolved.refs.insert(name.clone(), reference);
            for (attr, value) in attrs {
                resolved.attrs.insert(format!("{name}.{attr}"), value);
            }
        }
        let domain = resolved.reference("MailDomain");
        let ses = aws_sdk_sesv2::Client::new(&admin);
        ses.create_email_identity().email_identity(&domain).send().await.expect("mail identity");
        Some(Self { endpoint, admin, admin_key: (id, secret), template, resolved })
    }

    /// Points a partner's URL parameter (`BankApiUrl`, `ChainApiUrl`, `CustodyApiUrl`) at
    /// `url` for the functions made after.
    pub fn partner(&mut self, parameter: &'static str, url: String) {
        self.resolved.refs.insert(parameter.to_owned(), url);
    }

    /// A platform with every right, for what the test itself sets up and reads back.
    pub async fn admin_platform(&self) -> Platform {
        let mut env: HashMap<String, String> = HashMap::new();
        for function in self.template.functions() {
            env.extend(self.environment_of(&function));
        }
        Platform::aws_from(&self.admin, &|name| env.get(name).cloned()).expect("admin platform")
    }

    /// The function's `Code` policy, resolved against this stack (`None`: it grants nothing).
    pub fn policy_of(&self, function: &str) -> Option<Value> {
        self.template.policy_of(function, "Code").map(|p| self.resolved.resolve(&p))
    }

    /// The function's environment, resolved against this stack.
    pub fn environment_of(&self, function: &str) -> HashMap<String, String> {
        let env = self.resolved.resolve(&Value::Object(self.template.environment_of(function)));
        env.as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())))
            .collect()
    }

    /// The function as deployed: a platform built from its environment, signing as a
    /// user that holds its `Code` policy and nothing else.
    pub async fn function(&self, function: &str) -> Platform {
        self.function_with(function, self.policy_of(function)).await
    }

    /// The same with `policy` in place of the template's (to show what a missing
    /// permission does).
    pub async fn function_with(&self, function: &str, policy: Option<Value>) -> Platform {
        let user = format!("{}-{}", function.to_lowercase(), ulid::Ulid::new().to_string().to_lowercase());
        self.iam("CreateUser", &[("UserName", &user)]).await;
        if let Some(policy) = policy {
            let document = policy.to_string();
            self.iam("PutUserPolicy", &[("UserName", &user), ("PolicyName", "Code"), ("PolicyDocument", &document)])
                .await;
        }
        let created = self.iam("CreateAccessKey", &[("UserName", &user)]).await;
        let (id, secret) = (xml_text(&created, "AccessKeyId"), xml_text(&created, "SecretAccessKey"));
        let sdk = emulator_config_as(&self.endpoint, &id, &secret).await.unwrap();
        let env = self.environment_of(function);
        Platform::aws_from(&sdk, &|name| env.get(name).cloned()).expect("the function's platform")
    }

    /// One call of IAM's query API as the admin, signed with SigV4 as the SDK signs it;
    /// answers the response's XML (a failure panics with it). Three calls of the tests
    /// did not need the IAM SDK, one of the largest crates of the build.
    async fn iam(&self, action: &str, params: &[(&str, &str)]) -> String {
        use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("Action", action).append_pair("Version", "2010-05-08");
        for (name, value) in params {
            form.append_pair(name, value);
        }
        let body = form.finish();
        let url = format!("{}/", self.endpoint);
        let content_type = ("content-type", "application/x-www-form-urlencoded; charset=utf-8");
        let (id, secret) = &self.admin_key;
        let identity = aws_credential_types::Credentials::new(id, secret, None, None, "iam-admin").into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("iam")
            .time(std::time::SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .expect("signing parameters")
            .into();
        let signable =
            SignableRequest::new("POST", &url, [content_type].into_iter(), SignableBody::Bytes(body.as_bytes()))
                .expect("a signable request");
        let (instructions, _) = sign(signable, &params).expect("signed").into_parts();
        let mut request = reqwest::Client::new().post(&url).header(content_type.0, content_type.1).body(body);
        for (name, value) in instructions.headers() {
            request = request.header(name, value);
        }
        let response = request.send().await.expect("the emulator answers");
        let status = response.status();
        let text = response.text().await.expect("an answer");
        assert!(status.is_success(), "IAM {action}: {status} {text}");
        text
    }

    /// Every email the emulator has sent to `to`, oldest first.
    pub async fn mail_to(&self, to: &str) -> Vec<crate::SentMail> {
        let data = crate::emulator_data(&self.endpoint).await;
        let messages = data["ses"]["RawMessage"].as_array().cloned().unwrap_or_default();
        let to_them = messages.iter().filter(|m| m["destinations"].as_array().is_some_and(|d| d.contains(&json!(to))));
        to_them.map(|m| crate::parse_mail(m["raw_data"].as_str().unwrap_or_default())).collect()
    }
}

/// The text of the first `<tag>` element of an IAM answer (its values need no unescaping:
/// access key ids and secrets are alphanumeric, `+` and `/`).
fn xml_text(xml: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let start = xml.find(&open).map(|at| at + open.len()).unwrap_or_else(|| panic!("no <{tag}> in {xml}"));
    let end = xml[start..].find('<').map(|len| start + len).unwrap_or_else(|| panic!("<{tag}> is not closed in {xml}"));
    xml[start..end].to_owned()
}
