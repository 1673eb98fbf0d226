//! Monthly statements: on the first day of a month at 02:00 Singapore time the schedule
//! writes one notice for the month before ([`due`]); its fan-out writes a statement per
//! investor with activity or holdings, a page of 100 investors per queue message.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use chrono_tz::Asia::Singapore;
use shared::app::accounts::User;
use shared::app::deals::Deals;
use shared::app::ledger::{Entry, Ledger, Side};
use shared::app::notices::{self, Audience, FanOut, Holding, Movement, Noted, Notice};
use shared::domain::access::LEVEL_ACCREDITED;
use shared::domain::deal::DealState;
use shared::domain::ledger::{Account, Kind, Phase, SGD, codes};
use shared::ports::store::{StoreError, Write};

/// The calendar month (Singapore time) before the one `now` falls in: its name and its
/// bounds as instants, the end excluded.
pub fn month_before(now: DateTime<Utc>) -> (String, DateTime<Utc>, DateTime<Utc>) {
    let local = now.with_timezone(&Singapore).date_naive();
    let this_month = NaiveDate::from_ymd_opt(local.year(), local.month(), 1).unwrap_or(local);
    let last_month = this_month.pred_opt().map_or(this_month, |d| d.with_day(1).unwrap_or(d));
    let start = |d: NaiveDate| {
        Singapore
            .from_local_datetime(&d.and_time(chrono::NaiveTime::MIN))
            .single()
            .map_or(now, |t| t.with_timezone(&Utc))
    };
    (last_month.format("%Y-%m").to_string(), start(last_month), start(this_month))
}

/// The first day of a month, 02:00 Singapore time, after `now`: when statements are due.
pub fn next_run_after(now: DateTime<Utc>) -> DateTime<Utc> {
    let local = now.with_timezone(&Singapore).date_naive();
    let mut first = NaiveDate::from_ymd_opt(local.year(), local.month(), 1).unwrap_or(local);
    loop {
        let at = Singapore
            .from_local_datetime(&first.and_hms_opt(2, 0, 0).unwrap_or_default())
            .single()
            .map_or(now, |t| t.with_timezone(&Utc));
        if at > now {
            return at;
        }
        let next = first + chrono::Months::new(1);
        first = next;
    }
}

/// The write of the month's statements notice (once per month, whoever asks twice).
pub fn due(now: DateTime<Utc>) -> Result<Write, StoreError> {
    let (month, from, to) = month_before(now);
    let notice = Notice::StatementsDue { month: month.clone(), from, to };
    notices::write(&format!("statements:{month}"), Audience::Investors, notice, now)
}

/// What each fan-out notice becomes per person.
pub struct Audiences {
    ledger: Ledger,
    deals: Deals,
}

impl Audiences {
    pub fn new(ledger: Ledger, deals: Deals) -> Self {
        Self { ledger, deals }
    }

    /// The last price of each asset: the offering price of the deal that issued it.
    async fn prices(&self) -> Result<HashMap<String, u64>, StoreError> {
        let mut prices = HashMap::new();
        let mut cursor = None;
        loop {
            let (deals, next) = self.deals.list(&[DealState::Issued], 200, cursor).await?;
            prices.extend(deals.into_iter().map(|d| (d.asset, d.terms.unit_price)));
            match next {
                Some(next) => cursor = Some(next),
                None => return Ok(prices),
            }
        }
    }

    /// An account's posted entries in `[from, to)`, oldest first, and its posted balance
    /// just before `from` and at `to`.
    async fn entries(
        &self,
        account: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<(Vec<Entry>, i128, i128), StoreError> {
        let mut within = Vec::new();
        let (mut opening, mut closing) = (None, None);
        let mut cursor = None;
        loop {
            let (page, next) =
                self.ledger.statement(account, 200, cursor).await.map_err(|e| StoreError::Codec(e.to_string()))?;
            for entry in page {
                if entry.at >= to {
                    continue;
                }
                closing.get_or_insert(entry.balance);
                if entry.at < from {
                    opening = Some(entry.balance);
                    break;
                }
                if matches!(entry.transfer.phase, Phase::Single | Phase::Post) {
                    within.push(entry);
                }
            }
            match (opening, next) {
                (None, Some(next)) => cursor = Some(next),
                _ => break,
            }
        }
        within.reverse();
        Ok((within, opening.unwrap_or(0), closing.unwrap_or(0)))
    }

    async fn statement(
        &self,
        user: &User,
        month: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Option<Notice>, StoreError> {
        let accounts = self.ledger.accounts_of(&user.id).await.map_err(|e| StoreError::Codec(e.to_string()))?;
        let deposit = Account::id_of(Kind::Deposit, &user.id, SGD);
        let (entries, opening, closing) = if accounts.iter().any(|a| a.id == deposit) {
            self.entries(&deposit, from, to).await?
        } else {
            (Vec::new(), 0, 0)
        };
        let movements: Vec<Movement> = entries
            .iter()
            .map(|e| {
                let amount = i64::try_from(e.amount).unwrap_or(i64::MAX);
                Movement {
                    at: e.at,
                    description: describe(e.transfer.code).to_owned(),
                    amount: if e.side == Side::Credit { amount } else { -amount },
                    balance: i64::try_from(e.balance).unwrap_or(i64::MAX),
                }
            })
            .collect();
        let mut holdings = Vec::new();
        let held: Vec<&Account> = accounts.iter().filter(|a| a.kind == Kind::Holding).collect();
        let prices = if held.is_empty() { HashMap::new() } else { self.prices().await? };
        for account in held {
            let (_, _, units) = self.entries(&account.id, from, to).await?;
            if units > 0 {
                holdings.push(Holding {
                    asset: account.asset.clone(),
                    units: u64::try_from(units).unwrap_or(u64::MAX),
                    last_price: prices.get(&account.asset).copied().unwrap_or(0),
                });
            }
        }
        if movements.is_empty() && holdings.is_empty() {
            return Ok(None);
        }
        Ok(Some(Notice::MonthlyStatement {
            month: month.to_owned(),
            from,
            to,
            opening_balance: i64::try_from(opening).unwrap_or(i64::MAX),
            closing_balance: i64::try_from(closing).unwrap_or(i64::MAX),
            movements,
            holdings,
        }))
    }
}

/// A movement's line on a statement, by its transfer's code.
fn describe(code: u16) -> &'static str {
    match code {
        codes::DEPOSIT => "Deposit",
        codes::WITHDRAWAL => "Withdrawal",
        codes::SUBSCRIPTION => "Subscription",
        codes::EXPIRY => "Hold expired",
        _ => "Other",
    }
}

#[async_trait]
impl FanOut for Audiences {
    async fn notice_for(&self, parent: &Noted, user: &User) -> Result<Option<Notice>, StoreError> {
        match &parent.notice {
            // Offering news: to accredited investors only, as they are now.
            Notice::DealPublished { .. } => Ok((user.level >= LEVEL_ACCREDITED).then(|| parent.notice.clone())),
            Notice::StatementsDue { month, from, to } => self.statement(user, month, *from, *to).await,
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn the_month_before_is_a_singapore_calendar_month() {
        // 1 Dec 02:00 SGT is 30 Nov 18:00 UTC.
        let (month, from, to) = month_before(at("2026-11-30T18:00:00Z"));
        assert_eq!(month, "2026-11");
        assert_eq!(from, at("2026-10-31T16:00:00Z"), "1 Nov 00:00 SGT");
        assert_eq!(to, at("2026-11-30T16:00:00Z"), "1 Dec 00:00 SGT");
        let (month, from, _) = month_before(at("2027-01-01T00:00:00Z"));
        assert_eq!((month.as_str(), from), ("2026-12", at("2026-11-30T16:00:00Z")), "across the year");
    }

    #[test]
    fn statements_are_due_on_the_first_at_two_in_the_morning_singapore_time() {
        assert_eq!(next_run_after(at("2026-11-15T00:00:00Z")), at("2026-11-30T18:00:00Z"));
        assert_eq!(next_run_after(at("2026-11-30T18:00:00Z")), at("2026-12-31T18:00:00Z"), "just run: next month");
        assert_eq!(next_run_after(at("2026-11-30T17:59:59Z")), at("2026-11-30T18:00:00Z"));
    }
}
