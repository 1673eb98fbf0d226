//! The `Store` port on one DynamoDB table.
//!
//! Attributes: `pk`, `sk` (table key), `gsi1pk`, `gsi1sk` (the `gsi1` index), `v`
//! (version), `ttl` (unix seconds, the table's TTL attribute) and `body` (JSON bytes).
//! Every condition also treats an item whose `ttl` has passed as absent, because
//! DynamoDB deletes expired items only eventually.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, Delete, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ScalarAttributeType, TransactWriteItem, Update,
};
use tracing::instrument;

use crate::ports::Clock;
use crate::ports::store::{
    Condition, Cursor, Index, Item, Key, Order, Page, Query, Range, Store, StoreError, Write, validate_transaction,
};

pub const INDEX_NAME: &str = "gsi1";
const LIVE: &str = "(attribute_not_exists(#ttl) OR #ttl > :now)";

type Attributes = HashMap<String, AttributeValue>;

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    clock: Arc<dyn Clock>,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>, clock: Arc<dyn Clock>) -> Self {
        Self { client, table: table.into(), clock }
    }

    /// Creates the table as `template.yaml` defines it (for emulators and tests; in AWS
    /// the stack owns the table).
    pub async fn create_table(client: &Client, table: &str) -> Result<(), StoreError> {
        let attribute = |name: &str| {
            AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build()
        };
        let key = |name: &str, kind: KeyType| KeySchemaElement::builder().attribute_name(name).key_type(kind).build();
        let index = GlobalSecondaryIndex::builder()
            .index_name(INDEX_NAME)
            .key_schema(key("gsi1pk", KeyType::Hash).map_err(invalid)?)
            .key_schema(key("gsi1sk", KeyType::Range).map_err(invalid)?)
            .projection(Projection::builder().projection_type(ProjectionType::All).build())
            .build()
            .map_err(invalid)?;
        client
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .set_attribute_definitions(Some(
                ["pk", "sk", "gsi1pk", "gsi1sk"]
                    .into_iter()
                    .map(attribute)
                    .collect::<Result<_, _>>()
                    .map_err(invalid)?,
            ))
            .key_schema(key("pk", KeyType::Hash).map_err(invalid)?)
            .key_schema(key("sk", KeyType::Range).map_err(invalid)?)
            .global_secondary_indexes(index)
            .send()
            .await
            .map_err(|e| StoreError::unavailable(e.into_service_error()))?;
        Ok(())
    }

    fn now(&self) -> i64 {
        self.clock.now().timestamp()
    }

    fn key_attributes(key: &Key) -> Attributes {
        HashMap::from([("pk".to_owned(), s(&key.pk)), ("sk".to_owned(), s(&key.sk))])
    }

    /// The condition expression and its values for one operation.
    fn condition(condition: Condition, now: i64) -> (Option<String>, Attributes) {
        let now_value = (":now".to_owned(), n(now));
        match condition {
            Condition::None => (None, HashMap::new()),
            Condition::NotExists => {
                (Some("attribute_not_exists(pk) OR #ttl <= :now".into()), HashMap::from([now_value]))
            }
            Condition::Exists => (Some(format!("attribute_exists(pk) AND {LIVE}")), HashMap::from([now_value])),
            Condition::VersionIs(v) => {
                (Some(format!("#v = :expect AND {LIVE}")), HashMap::from([now_value, (":expect".to_owned(), n(v))]))
            }
        }
    }

    /// A put as an update, so the version can be bumped server-side and attributes that
    /// the new item lacks (index keys, expiry) are removed.
    fn update(
        item: &Item,
        condition: Condition,
        now: i64,
    ) -> (String, Option<String>, Attributes, HashMap<String, String>) {
        let (check, mut values) = Self::condition(condition, now);
        let names = HashMap::from([
            ("#body".to_owned(), "body".to_owned()),
            ("#v".to_owned(), "v".to_owned()),
            ("#ttl".to_owned(), "ttl".to_owned()),
        ]);
        values.insert(":body".into(), AttributeValue::B(Blob::new(item.body.clone())));
        let version = match condition {
            Condition::NotExists => {
                values.insert(":version".into(), n(1));
                ":version"
            }
            Condition::VersionIs(v) => {
                values.insert(":version".into(), n(v + 1));
                ":version"
            }
            Condition::None | Condition::Exists => {
                values.insert(":zero".into(), n(0));
                values.insert(":one".into(), n(1));
                "if_not_exists(#v, :zero) + :one"
            }
        };
        let mut set = vec!["#body = :body".to_owned(), format!("#v = {version}")];
        let mut remove = Vec::new();
        match &item.index {
            Some(index) => {
                values.insert(":gpk".into(), s(&index.pk));
                values.insert(":gsk".into(), s(&index.sk));
                set.push("gsi1pk = :gpk".into());
                set.push("gsi1sk = :gsk".into());
            }
            None => remove.extend(["gsi1pk".to_owned(), "gsi1sk".to_owned()]),
        }
        match item.expires_at {
            Some(at) => {
                values.insert(":ttl".into(), n(at));
                set.push("#ttl = :ttl".into());
            }
            None => remove.push("#ttl".into()),
        }
        let mut expression = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        (expression, check, values, names)
    }

    fn transact_item(&self, write: &Write, now: i64) -> Result<TransactWriteItem, StoreError> {
        let ttl_name = || HashMap::from([("#ttl".to_owned(), "ttl".to_owned())]);
        let with_version = |mut names: HashMap<String, String>, condition: Condition| {
            if matches!(condition, Condition::VersionIs(_)) {
                names.insert("#v".into(), "v".into());
            }
            names
        };
        Ok(match write {
            Write::Put { item, condition } => {
                let (expression, check, values, names) = Self::update(item, *condition, now);
                let update = Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(Self::key_attributes(&item.key)))
                    .update_expression(expression)
                    .set_condition_expression(check)
                    .set_expression_attribute_values(Some(values))
                    .set_expression_attribute_names(Some(names))
                    .build()
                    .map_err(invalid)?;
                TransactWriteItem::builder().update(update).build()
            }
            Write::Delete { key, condition } => {
                let (check, values) = Self::condition(*condition, now);
                let delete = Delete::builder()
                    .table_name(&self.table)
                    .set_key(Some(Self::key_attributes(key)))
                    .set_expression_attribute_names(check.as_ref().map(|_| with_version(ttl_name(), *condition)))
                    .set_condition_expression(check)
                    .set_expression_attribute_values((!values.is_empty()).then_some(values))
                    .build()
                    .map_err(invalid)?;
                TransactWriteItem::builder().delete(delete).build()
            }
            Write::Check { key, condition } => {
                // `validate_transaction` refuses a check without a condition.
                let (check, values) = Self::condition(*condition, now);
                let condition_check = ConditionCheck::builder()
                    .table_name(&self.table)
                    .set_key(Some(Self::key_attributes(key)))
                    .set_condition_expression(check)
                    .set_expression_attribute_names(Some(with_version(ttl_name(), *condition)))
                    .set_expression_attribute_values(Some(values))
                    .build()
                    .map_err(invalid)?;
                TransactWriteItem::builder().condition_check(condition_check).build()
            }
        })
    }

    /// One write without a transaction: half the capacity of a one-item transaction.
    async fn write_one(&self, write: &Write, now: i64) -> Result<(), StoreError> {
        let failed = |_| StoreError::ConditionFailed { index: 0, key: write.key().clone() };
        match write {
            Write::Put { item, condition } => {
                let (expression, check, values, names) = Self::update(item, *condition, now);
                let result = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .set_key(Some(Self::key_attributes(&item.key)))
                    .update_expression(expression)
                    .set_condition_expression(check)
                    .set_expression_attribute_values(Some(values))
                    .set_expression_attribute_names(Some(names))
                    .send()
                    .await;
                match result {
                    Ok(_) => Ok(()),
                    Err(e) => match e.into_service_error() {
                        e if e.is_conditional_check_failed_exception() => Err(failed(())),
                        e => Err(StoreError::unavailable(e)),
                    },
                }
            }
            Write::Delete { .. } | Write::Check { .. } => {
                // Deletes and checks are rare enough to share the transactional path.
                self.transact_many(std::slice::from_ref(write), now).await
            }
        }
    }

    async fn transact_many(&self, writes: &[Write], now: i64) -> Result<(), StoreError> {
        let items = writes.iter().map(|w| self.transact_item(w, now)).collect::<Result<Vec<_>, _>>()?;
        let result = self.client.transact_write_items().set_transact_items(Some(items)).send().await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(context)) => {
                let error = context.into_err();
                if let aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(cancelled) = &error {
                    let reasons = cancelled.cancellation_reasons();
                    if let Some(index) = reasons.iter().position(|r| r.code() == Some("ConditionalCheckFailed")) {
                        return Err(StoreError::ConditionFailed { index, key: writes[index].key().clone() });
                    }
                    return Err(StoreError::Conflict);
                }
                if error.is_transaction_in_progress_exception() {
                    return Err(StoreError::Conflict);
                }
                Err(StoreError::unavailable(error))
            }
            Err(e) => Err(StoreError::unavailable(e)),
        }
    }
}

#[async_trait]
impl Store for DynamoStore {
    #[instrument(skip_all, fields(table = %self.table))]
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key_attributes(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::unavailable(e.into_service_error()))?;
        let now = self.now();
        Ok(output.item.map(|attributes| from_attributes(&attributes)).transpose()?.filter(|item| !item.is_expired(now)))
    }

    #[instrument(skip_all, fields(table = %self.table, ops = writes.len()))]
    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        validate_transaction(&writes, self.max_transaction_ops())?;
        let now = self.now();
        if let [write] = writes.as_slice() {
            self.write_one(write, now).await
        } else {
            self.transact_many(&writes, now).await
        }
    }

    #[instrument(skip_all, fields(table = %self.table))]
    async fn query(&self, query: &Query) -> Result<Page, StoreError> {
        let limit = query.checked_limit()?;
        let (pk, sk) = match query.index {
            Index::Primary => ("pk", "sk"),
            Index::Secondary => ("gsi1pk", "gsi1sk"),
        };
        let mut names = HashMap::from([("#pk".to_owned(), pk.to_owned()), ("#ttl".to_owned(), "ttl".to_owned())]);
        let mut values = HashMap::from([(":pk".to_owned(), s(&query.pk)), (":now".to_owned(), n(self.now()))]);
        let range = match &query.range {
            Range::All => None,
            Range::Prefix(p) if p.is_empty() => None,
            Range::Prefix(p) => {
                values.insert(":a".into(), s(p));
                Some("begins_with(#sk, :a)")
            }
            Range::Between(lo, hi) => {
                values.insert(":a".into(), s(lo));
                values.insert(":b".into(), s(hi));
                Some("#sk BETWEEN :a AND :b")
            }
            Range::AtLeast(lo) => {
                values.insert(":a".into(), s(lo));
                Some("#sk >= :a")
            }
            Range::AtMost(hi) => {
                values.insert(":b".into(), s(hi));
                Some("#sk <= :b")
            }
        };
        let condition = match range {
            Some(range) => {
                names.insert("#sk".into(), sk.into());
                format!("#pk = :pk AND {range}")
            }
            None => "#pk = :pk".to_owned(),
        };
        query.check_cursor()?;
        let mut start = query.cursor.as_ref().map(|cursor| {
            let mut key = Self::key_attributes(&cursor.key);
            if let (Index::Secondary, Some(index)) = (query.index, &cursor.index) {
                key.insert("gsi1pk".into(), s(&index.pk));
                key.insert("gsi1sk".into(), s(&index.sk));
            }
            key
        });
        // Fetch one more than asked, to know whether a next page exists; DynamoDB applies
        // `Limit` before the expiry filter, so keep reading until enough live items came.
        let mut found = Vec::with_capacity(limit + 1);
        loop {
            let wanted = (limit + 1 - found.len()) as i32;
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .set_index_name((query.index == Index::Secondary).then(|| INDEX_NAME.to_owned()))
                .key_condition_expression(&condition)
                .filter_expression(LIVE)
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .scan_index_forward(query.order == Order::Ascending)
                .consistent_read(query.index == Index::Primary)
                .limit(wanted)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| StoreError::unavailable(e.into_service_error()))?;
            for attributes in output.items() {
                found.push(from_attributes(attributes)?);
            }
            start = output.last_evaluated_key;
            if found.len() > limit || start.is_none() {
                break;
            }
        }
        let next = if found.len() > limit {
            found.truncate(limit);
            found.last().map(|item| Cursor::after_item(item, query.index))
        } else {
            None
        };
        Ok(Page { items: found, next })
    }
}

fn s(text: &str) -> AttributeValue {
    AttributeValue::S(text.to_owned())
}

fn n(number: impl ToString) -> AttributeValue {
    AttributeValue::N(number.to_string())
}

fn invalid(e: impl std::fmt::Display) -> StoreError {
    StoreError::Invalid(e.to_string())
}

fn from_attributes(attributes: &Attributes) -> Result<Item, StoreError> {
    let text = |name: &str| attributes.get(name).and_then(|v| v.as_s().ok()).cloned();
    let number = |name: &str| attributes.get(name).and_then(|v| v.as_n().ok()).and_then(|v| v.parse::<i64>().ok());
    let codec = |what: &str| StoreError::Codec(format!("item without {what}"));
    let key = Key::new(text("pk").ok_or_else(|| codec("pk"))?, text("sk").ok_or_else(|| codec("sk"))?);
    let index = match (text("gsi1pk"), text("gsi1sk")) {
        (Some(pk), Some(sk)) => Some(Key { pk, sk }),
        _ => None,
    };
    let version = number("v").ok_or_else(|| codec("a version"))? as u64;
    let body = attributes
        .get("body")
        .and_then(|v| v.as_b().ok())
        .map(|b| b.as_ref().to_vec())
        .ok_or_else(|| codec("a body"))?;
    Ok(Item { key, index, version, expires_at: number("ttl"), body })
}
