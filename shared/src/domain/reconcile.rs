//! Reconciliation matching as pure rules: three books (the ledger, the chain, the Custody)
//! as of one cut-off, each a stream of balances sorted by position (account, then asset),
//! merged in one pass with memory that does not grow with the number of accounts.
//!
//! Each deposit or DABS position gets a verdict per pair (ledger vs chain, ledger vs
//! Custody): matched; a timing difference, when what is in flight at the cut-off (a
//! [`Pending`] item, sorted the same way) explains the difference exactly and no item is
//! past its rule's grace period; or a break, with both amounts and the difference. A
//! position absent from a book counts as zero there, so an account missing on one side
//! with a balance is a break. Every position is judged on its own: differences that net
//! to zero across accounts are still breaks.

use std::iter::Peekable;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// What a whole run concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunVerdict {
    Reconciled,
    /// Nothing but timing differences and accepted breaks.
    ReconciledWithPending,
    Breaks,
    /// A source failed: nothing may be concluded; the run is retried.
    Incomplete,
}

/// Where a balance is held.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position {
    pub account: String,
    pub asset: String,
}

impl Position {
    pub fn new(account: impl Into<String>, asset: impl Into<String>) -> Self {
        Self { account: account.into(), asset: asset.into() }
    }
}

/// One book's balance of a position (credits minus debits, posted, as of the cut-off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub position: Position,
    pub balance: i128,
}

/// The two comparisons: the ledger against each other book.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Pair {
    LedgerChain,
    LedgerCustody,
}

impl Pair {
    pub const ALL: [Pair; 2] = [Pair::LedgerChain, Pair::LedgerCustody];

    /// The other book's name, as it appears in keys and transfer ids.
    pub fn other_book(self) -> &'static str {
        match self {
            Pair::LedgerChain => "chain",
            Pair::LedgerCustody => "custody",
        }
    }
}

/// The accounts reconciled: investors' deposit accounts and DABS holdings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    Deposit,
    Dabs,
}

impl Class {
    /// The class of an account id (`kind:owner:asset`); `None` for accounts not reconciled
    /// (escrow, omnibus, issuance: system accounts no other book holds).
    pub fn of(account: &str) -> Option<Self> {
        match account.split(':').next() {
            Some("deposit") => Some(Self::Deposit),
            Some("holding") => Some(Self::Dabs),
            _ => None,
        }
    }
}

/// Why a difference may be expected for a while. Rules are data: `docs/reconciliation.md`
/// lists them with their reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleId {
    /// The bank notified a deposit the Custody does not recognise yet.
    DepositNotYetAtCustody,
    /// DABS locked in an open sell order return to their owner at market close.
    DabsLockedInOrder,
    /// A settlement leg was pending at the cut-off.
    SettlementLegPending,
    /// Any other movement of a deposit account the Custody had not booked by the cut-off.
    CustodyBookingPending,
    /// A posted transfer the chain had not recorded by the cut-off.
    ChainRecordPending,
    /// A trade's legs the Custody had not booked by the cut-off.
    TradeInFlight,
}

/// A timing rule: which pair it explains, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub id: RuleId,
    pub pair: Pair,
    pub grace: TimeDelta,
    pub reason: &'static str,
}

pub const RULES: [Rule; 6] = [
    Rule {
        id: RuleId::DepositNotYetAtCustody,
        pair: Pair::LedgerCustody,
        grace: TimeDelta::hours(24),
        reason: "the Custody books incoming money on its next business cycle; a day later it must be there",
    },
    Rule {
        id: RuleId::DabsLockedInOrder,
        pair: Pair::LedgerCustody,
        grace: TimeDelta::hours(24),
        reason: "units in an open sell order stay with their owner at the Custody and return at market close",
    },
    Rule {
        id: RuleId::SettlementLegPending,
        pair: Pair::LedgerCustody,
        grace: TimeDelta::minutes(15),
        reason: "a settlement leg in flight at the cut-off is confirmed within its deadline or surfaced as stuck",
    },
    Rule {
        id: RuleId::CustodyBookingPending,
        pair: Pair::LedgerCustody,
        grace: TimeDelta::minutes(15),
        reason: "the mirror books every other movement of a deposit account at the Custody within seconds",
    },
    Rule {
        id: RuleId::ChainRecordPending,
        pair: Pair::LedgerChain,
        grace: TimeDelta::minutes(15),
        reason: "the mirror records every posted transfer on the chain within seconds",
    },
    Rule {
        id: RuleId::TradeInFlight,
        pair: Pair::LedgerCustody,
        grace: TimeDelta::minutes(15),
        reason: "a trade settles in the ledger at once and its legs reach the Custody through the mirror within seconds",
    },
];

/// The rule that explains a Custody booking of a ledger transfer with `code` still in flight.
pub fn custody_rule(code: u16) -> RuleId {
    use crate::domain::ledger::codes;
    match code {
        codes::DEPOSIT => RuleId::DepositNotYetAtCustody,
        codes::SUBSCRIPTION | codes::PROCEEDS | codes::ISSUANCE => RuleId::SettlementLegPending,
        codes::TRADE_UNITS | codes::TRADE_PROCEEDS | codes::TRADE_FEE => RuleId::TradeInFlight,
        _ => RuleId::CustodyBookingPending,
    }
}

#[expect(clippy::expect_used, reason = "RULES lists every RuleId; `every_rule_id_has_a_rule` holds it")]
pub fn rule(id: RuleId) -> Rule {
    RULES.into_iter().find(|r| r.id == id).expect("every rule id is in RULES")
}

/// What a run counts a row as, and stores for every row that is not matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RowVerdict {
    Matched,
    /// Explained by in-flight items within their grace.
    Timing,
    Break,
    /// A break finance accepted, unchanged since.
    Accepted,
}

impl RowVerdict {
    /// The verdict of a merged row, before its break (if it is one) is tracked.
    pub fn of(verdict: &Verdict) -> Self {
        match verdict {
            Verdict::Matched => Self::Matched,
            Verdict::Timing { .. } => Self::Timing,
            Verdict::Break { .. } => Self::Break,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Matched => "matched",
            Self::Timing => "timing",
            Self::Break => "break",
            Self::Accepted => "accepted",
        }
    }
}

/// Where a break found by a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    /// This run found it first: what alarms an operator.
    New,
    /// An earlier run found it too.
    Persisting,
    /// Finance accepted it (maker-checker): reported, not counted as a break.
    Accepted,
}

impl Lifecycle {
    /// A break's place: accepted wins; otherwise new if the run that tracks it saw it first.
    pub fn of(accepted: bool, first_seen_by_this_run: bool) -> Self {
        match (accepted, first_seen_by_this_run) {
            (true, _) => Self::Accepted,
            (false, true) => Self::New,
            (false, false) => Self::Persisting,
        }
    }

    /// The verdict the break's row carries.
    pub fn row_verdict(self) -> RowVerdict {
        if self == Self::Accepted { RowVerdict::Accepted } else { RowVerdict::Break }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Persisting => "persisting",
            Self::Accepted => "accepted",
        }
    }
}

/// A run's verdict: nothing may be concluded when a source failed; otherwise reconciled,
/// reconciled with timing differences (or accepted breaks) pending, or breaks.
pub fn run_verdict(complete: bool, breaks: u64, pending: u64) -> RunVerdict {
    match (complete, breaks, pending) {
        (false, _, _) => RunVerdict::Incomplete,
        (true, 0, 0) => RunVerdict::Reconciled,
        (true, 0, _) => RunVerdict::ReconciledWithPending,
        (true, _, _) => RunVerdict::Breaks,
    }
}

/// Something in flight at the cut-off: `amount` is what the other book is expected to hold
/// beyond the ledger for the position (other minus ledger), since `since`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub position: Position,
    pub rule: RuleId,
    pub amount: i128,
    pub since: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    Matched,
    /// Explained by in-flight items, all within their grace period.
    Timing {
        rules: Vec<RuleId>,
    },
    /// Unexplained; `expired` names rules whose grace period ran out.
    Break {
        difference: i128,
        expired: Vec<RuleId>,
    },
}

/// One position's verdict in one pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub position: Position,
    pub class: Class,
    pub pair: Pair,
    /// `None`: the book does not hold the position.
    pub ledger: Option<i128>,
    pub other: Option<i128>,
    pub verdict: Verdict,
}

/// The verdict on one pair of balances given the position's pending items of that pair.
pub fn judge(ledger: i128, other: i128, pending: &[&Pending], cut_off: DateTime<Utc>) -> Verdict {
    let difference = other - ledger;
    if difference == 0 && pending.iter().all(|p| p.amount == 0) {
        return Verdict::Matched;
    }
    let explained: i128 = pending.iter().map(|p| p.amount).sum();
    let mut rules: Vec<RuleId> = pending.iter().map(|p| p.rule).collect();
    rules.sort();
    rules.dedup();
    if explained != difference || pending.is_empty() {
        return Verdict::Break { difference, expired: Vec::new() };
    }
    let mut expired: Vec<RuleId> =
        pending.iter().filter(|p| cut_off - p.since > rule(p.rule).grace).map(|p| p.rule).collect();
    expired.sort();
    expired.dedup();
    if expired.is_empty() { Verdict::Timing { rules } } else { Verdict::Break { difference, expired } }
}

/// The streaming merge: yields each reconciled position's rows (one per pair), in position
/// order. Each source must be sorted by position with no position twice (a source out of
/// order is reported by [`MergeError`], and ends the merge).
pub struct Merge<
    L: Iterator<Item = Line>,
    C: Iterator<Item = Line>,
    U: Iterator<Item = Line>,
    P: Iterator<Item = Pending>,
> {
    ledger: Peekable<L>,
    chain: Peekable<C>,
    custody: Peekable<U>,
    pending: Peekable<P>,
    cut_off: DateTime<Utc>,
    last: Option<Position>,
    /// A source was out of order: the merge stopped.
    failed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a source is not sorted by position at {0:?}")]
pub struct MergeError(pub Position);

impl<L, C, U, P> Merge<L, C, U, P>
where
    L: Iterator<Item = Line>,
    C: Iterator<Item = Line>,
    U: Iterator<Item = Line>,
    P: Iterator<Item = Pending>,
{
    pub fn new(ledger: L, chain: C, custody: U, pending: P, cut_off: DateTime<Utc>) -> Self {
        Self {
            ledger: ledger.peekable(),
            chain: chain.peekable(),
            custody: custody.peekable(),
            pending: pending.peekable(),
            cut_off,
            last: None,
            failed: false,
        }
    }
}

/// Takes the next line of `source` if it is at `at`.
fn take_at(source: &mut Peekable<impl Iterator<Item = Line>>, at: &Position) -> Option<i128> {
    source.next_if(|l| &l.position == at).map(|l| l.balance)
}

impl<L, C, U, P> Iterator for Merge<L, C, U, P>
where
    L: Iterator<Item = Line>,
    C: Iterator<Item = Line>,
    U: Iterator<Item = Line>,
    P: Iterator<Item = Pending>,
{
    type Item = Result<[Row; 2], MergeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            let at = [self.ledger.peek(), self.chain.peek(), self.custody.peek()]
                .into_iter()
                .flatten()
                .map(|l| &l.position)
                .chain(self.pending.peek().map(|p| &p.position))
                .min()?
                .clone();
            if self.last.as_ref().is_some_and(|last| &at <= last) {
                self.failed = true;
                return Some(Err(MergeError(at)));
            }
            self.last = Some(at.clone());
            let (ledger, chain, custody) =
                (take_at(&mut self.ledger, &at), take_at(&mut self.chain, &at), take_at(&mut self.custody, &at));
            let mut pending = Vec::new();
            while let Some(p) = self.pending.next_if(|p| p.position == at) {
                pending.push(p);
            }
            let Some(class) = Class::of(&at.account) else { continue };
            let row = |pair: Pair, other: Option<i128>| {
                let of_pair: Vec<&Pending> = pending.iter().filter(|p| rule(p.rule).pair == pair).collect();
                let verdict = judge(ledger.unwrap_or(0), other.unwrap_or(0), &of_pair, self.cut_off);
                Row { position: at.clone(), class, pair, ledger, other, verdict }
            };
            return Some(Ok([row(Pair::LedgerChain, chain), row(Pair::LedgerCustody, custody)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    /// Stored breaks and their accept requests are keyed by these names: a rename would
    /// orphan every break recorded before it.
    /// Equal balances match only if nothing in flight says they should differ.
    #[test]
    fn equal_balances_with_a_difference_expected_are_a_break() {
        let expected = |amount: i128| Pending {
            position: Position::new("deposit:ann:SGD", "SGD"),
            rule: RuleId::DepositNotYetAtCustody,
            amount,
            since: cut_off() - TimeDelta::minutes(5),
        };
        let five = expected(5);
        assert_eq!(judge(100, 100, &[&five], cut_off()), Verdict::Break { difference: 0, expired: Vec::new() });
        let nothing = expected(0);
        assert_eq!(judge(100, 100, &[&nothing], cut_off()), Verdict::Matched);
        assert_eq!(
            judge(100, 105, &[&five], cut_off()),
            Verdict::Timing { rules: vec![RuleId::DepositNotYetAtCustody] }
        );
        // In flight exactly as long as the rule's grace: still timing; a second more, a break.
        let grace = rule(RuleId::DepositNotYetAtCustody).grace;
        let at_grace = Pending { since: cut_off() - grace, ..five.clone() };
        let timing = Verdict::Timing { rules: vec![RuleId::DepositNotYetAtCustody] };
        assert_eq!(judge(100, 105, &[&at_grace], cut_off()), timing);
        let past = Pending { since: at_grace.since - TimeDelta::seconds(1), ..five };
        let expired = Verdict::Break { difference: 5, expired: vec![RuleId::DepositNotYetAtCustody] };
        assert_eq!(judge(100, 105, &[&past], cut_off()), expired);
    }

    /// The names a run's rows are exported under are the ones its JSON uses.
    #[test]
    fn a_row_verdict_is_named_alike_in_json_and_exports() {
        for verdict in [RowVerdict::Matched, RowVerdict::Timing, RowVerdict::Break, RowVerdict::Accepted] {
            assert_eq!(serde_json::to_value(verdict).unwrap(), verdict.as_str(), "{verdict:?}");
        }
    }

    /// Which rule explains a Custody booking still in flight, by the transfer's code.
    #[test]
    fn a_custody_booking_in_flight_is_explained_by_its_transfers_code() {
        use crate::domain::ledger::codes;
        let table = [
            (codes::DEPOSIT, RuleId::DepositNotYetAtCustody),
            (codes::SUBSCRIPTION, RuleId::SettlementLegPending),
            (codes::PROCEEDS, RuleId::SettlementLegPending),
            (codes::ISSUANCE, RuleId::SettlementLegPending),
            (codes::WITHDRAWAL, RuleId::CustodyBookingPending),
            (codes::TRADE_UNITS, RuleId::TradeInFlight),
            (codes::TRADE_PROCEEDS, RuleId::TradeInFlight),
            (codes::TRADE_FEE, RuleId::TradeInFlight),
        ];
        for (code, rule) in table {
            assert_eq!(custody_rule(code), rule, "code {code}");
        }
    }

    #[test]
    fn each_pair_names_its_other_book_as_stored_keys_do() {
        let names: Vec<_> = Pair::ALL.iter().map(|p| p.other_book()).collect();
        assert_eq!(names, ["chain", "custody"]);
    }

    #[test]
    fn a_runs_verdict_and_a_breaks_lifecycle_follow_the_table() {
        use RunVerdict::*;
        for (complete, breaks, pending, verdict) in [
            (false, 0, 0, Incomplete),
            (false, 3, 1, Incomplete),
            (true, 0, 0, Reconciled),
            (true, 0, 2, ReconciledWithPending),
            (true, 1, 0, Breaks),
            (true, 1, 5, Breaks),
        ] {
            assert_eq!(run_verdict(complete, breaks, pending), verdict, "{complete} {breaks} {pending}");
        }
        for (accepted, first, lifecycle, row) in [
            (true, true, Lifecycle::Accepted, RowVerdict::Accepted),
            (true, false, Lifecycle::Accepted, RowVerdict::Accepted),
            (false, true, Lifecycle::New, RowVerdict::Break),
            (false, false, Lifecycle::Persisting, RowVerdict::Break),
        ] {
            assert_eq!(
                (Lifecycle::of(accepted, first), Lifecycle::of(accepted, first).row_verdict()),
                (lifecycle, row)
            );
        }
        assert_eq!(RowVerdict::of(&Verdict::Timing { rules: vec![] }), RowVerdict::Timing);
        assert_eq!(serde_json::to_value(RowVerdict::Accepted).unwrap(), "accepted");
        assert_eq!(serde_json::to_value(Lifecycle::Persisting).unwrap(), Lifecycle::Persisting.as_str());
    }

    #[test]
    fn every_rule_id_has_a_rule() {
        use RuleId::*;
        for id in [
            DepositNotYetAtCustody,
            DabsLockedInOrder,
            SettlementLegPending,
            CustodyBookingPending,
            ChainRecordPending,
            TradeInFlight,
        ] {
            // A new id without a rule fails the match below to compile, then this lookup.
            match id {
                DepositNotYetAtCustody
                | DabsLockedInOrder
                | SettlementLegPending
                | CustodyBookingPending
                | ChainRecordPending
                | TradeInFlight => assert_eq!(rule(id).id, id),
            }
        }
    }

    fn cut_off() -> DateTime<Utc> {
        "2026-11-25T14:00:00Z".parse().unwrap()
    }

    fn lines(book: &BTreeMap<Position, i128>) -> Vec<Line> {
        book.iter().map(|(p, b)| Line { position: p.clone(), balance: *b }).collect()
    }

    /// Runs the merge; answers every row that is not matched.
    fn differences(
        ledger: &BTreeMap<Position, i128>,
        chain: &BTreeMap<Position, i128>,
        custody: &BTreeMap<Position, i128>,
        pending: Vec<Pending>,
    ) -> Vec<Row> {
        Merge::new(
            lines(ledger).into_iter(),
            lines(chain).into_iter(),
            lines(custody).into_iter(),
            pending.into_iter(),
            cut_off(),
        )
        .map(|rows| rows.unwrap())
        .flat_map(|rows| rows.into_iter())
        .filter(|r| r.verdict != Verdict::Matched)
        .collect()
    }

    #[test]
    fn a_hand_checked_cut_off() {
        let p = |a: &str, asset: &str| Position::new(a, asset);
        let ledger = BTreeMap::from([
            (p("deposit:ann:SGD", "SGD"), 10_000),
            (p("deposit:ben:SGD", "SGD"), 5_000),
            (p("escrow:d1:SGD", "SGD"), 7),
            (p("holding:ann:DABS-d1", "DABS-d1"), 12),
        ]);
        let mut chain = ledger.clone();
        chain.remove(&p("escrow:d1:SGD", "SGD"));
        let mut custody = chain.clone();
        // Ben's deposit of 2,000 is not at the Custody yet (notified an hour ago).
        custody.insert(p("deposit:ben:SGD", "SGD"), 3_000);
        // Ann's holding is one unit short at the Custody: a break.
        custody.insert(p("holding:ann:DABS-d1", "DABS-d1"), 11);
        let pending = vec![Pending {
            position: p("deposit:ben:SGD", "SGD"),
            rule: RuleId::DepositNotYetAtCustody,
            amount: -2_000,
            since: cut_off() - TimeDelta::hours(1),
        }];
        let rows = differences(&ledger, &chain, &custody, pending.clone());
        let got: Vec<(&str, Pair, &Verdict)> =
            rows.iter().map(|r| (r.position.account.as_str(), r.pair, &r.verdict)).collect();
        assert_eq!(
            got,
            [
                (
                    "deposit:ben:SGD",
                    Pair::LedgerCustody,
                    &Verdict::Timing { rules: vec![RuleId::DepositNotYetAtCustody] }
                ),
                ("holding:ann:DABS-d1", Pair::LedgerCustody, &Verdict::Break { difference: -1, expired: vec![] }),
            ],
            "escrow accounts are not reconciled"
        );
        // Two days later the same pending deposit is past its grace: a break naming the rule.
        let late = vec![Pending { since: cut_off() - TimeDelta::hours(48), ..pending[0].clone() }];
        let rows = differences(&ledger, &chain, &custody, late);
        assert_eq!(
            rows[0].verdict,
            Verdict::Break { difference: -2_000, expired: vec![RuleId::DepositNotYetAtCustody] }
        );
        // Differences that net to zero across accounts are each a break.
        let mut netted = ledger.clone();
        netted.insert(p("deposit:ann:SGD", "SGD"), 10_001);
        netted.insert(p("deposit:ben:SGD", "SGD"), 4_999);
        assert_eq!(differences(&ledger, &netted, &ledger, vec![]).len(), 2);
    }

    #[test]
    fn a_source_out_of_order_is_an_error_not_a_verdict() {
        let ledger = vec![
            Line { position: Position::new("deposit:b:SGD", "SGD"), balance: 1 },
            Line { position: Position::new("deposit:a:SGD", "SGD"), balance: 1 },
        ];
        let merged: Vec<_> =
            Merge::new(ledger.into_iter(), std::iter::empty(), std::iter::empty(), std::iter::empty(), cut_off())
                .collect();
        assert_eq!(merged.len(), 2, "one position, then the error: {merged:?}");
        assert_eq!(merged[1], Err(MergeError(Position::new("deposit:a:SGD", "SGD"))));
    }

    /// An injected difference, and what it must be found as.
    #[derive(Debug, Clone)]
    enum Injection {
        AmountChanged { book: Pair, by: i128 },
        MissingOnOneSide { book: Pair },
        ExtraAccount { book: Pair },
        PendingDeposit,
        OpenOrderLock,
    }

    fn injections() -> impl Strategy<Value = Injection> {
        let book = prop_oneof![Just(Pair::LedgerChain), Just(Pair::LedgerCustody)];
        prop_oneof![
            (book.clone(), prop_oneof![-500i128..-1, 1i128..500])
                .prop_map(|(book, by)| Injection::AmountChanged { book, by }),
            book.clone().prop_map(|book| Injection::MissingOnOneSide { book }),
            book.prop_map(|book| Injection::ExtraAccount { book }),
            Just(Injection::PendingDeposit),
            Just(Injection::OpenOrderLock),
        ]
    }

    proptest! {
        #[test]
        fn injected_differences_are_found_exactly_and_nothing_else(
            accounts in 1usize..120,
            injected in prop::collection::vec((0usize..1_000, injections()), 0..12),
        ) {
            let position = |i: usize| if i.is_multiple_of(3) {
                Position::new(format!("holding:inv{i:04}:DABS-d1"), "DABS-d1")
            } else {
                Position::new(format!("deposit:inv{i:04}:SGD"), "SGD")
            };
            let ledger: BTreeMap<Position, i128> = (0..accounts).map(|i| (position(i), 1_000 + i as i128)).collect();
            let (mut chain, mut custody) = (ledger.clone(), ledger.clone());
            prop_assert!(differences(&ledger, &chain, &custody, vec![]).is_empty(), "identical books agree");

            let mut ledger = ledger;
            let mut expected: BTreeMap<(Position, Pair), String> = BTreeMap::new();
            let mut pending = Vec::new();
            let mut used = std::collections::BTreeSet::new();
            for (pick, injection) in injected {
                let i = pick % accounts;
                if !used.insert(i) {
                    continue;
                }
                let at = position(i);
                match injection {
                    Injection::AmountChanged { book, by } => {
                        let target = if book == Pair::LedgerChain { &mut chain } else { &mut custody };
                        *target.get_mut(&at).unwrap() += by;
                        expected.insert((at, book), "break".into());
                    }
                    Injection::MissingOnOneSide { book } => {
                        let target = if book == Pair::LedgerChain { &mut chain } else { &mut custody };
                        target.remove(&at);
                        expected.insert((at, book), "break".into());
                    }
                    Injection::ExtraAccount { book } => {
                        let extra = Position::new(format!("deposit:extra{i:04}:SGD"), "SGD");
                        let target = if book == Pair::LedgerChain { &mut chain } else { &mut custody };
                        target.insert(extra.clone(), 77);
                        expected.insert((extra, book), "break".into());
                    }
                    Injection::PendingDeposit if at.asset == "SGD" => {
                        // Posted in the ledger and on the chain; the Custody has not booked it.
                        *ledger.get_mut(&at).unwrap() += 250;
                        *chain.get_mut(&at).unwrap() += 250;
                        pending.push(Pending { position: at.clone(), rule: RuleId::DepositNotYetAtCustody, amount: -250, since: cut_off() - TimeDelta::hours(2) });
                        expected.insert((at, Pair::LedgerCustody), "timing".into());
                    }
                    Injection::OpenOrderLock if at.asset != "SGD" => {
                        // Units moved to the order's lock in the ledger and on the chain; the
                        // Custody still shows them with the owner until market close.
                        *ledger.get_mut(&at).unwrap() -= 5;
                        *chain.get_mut(&at).unwrap() -= 5;
                        pending.push(Pending { position: at.clone(), rule: RuleId::DabsLockedInOrder, amount: 5, since: cut_off() - TimeDelta::hours(3) });
                        expected.insert((at, Pair::LedgerCustody), "timing".into());
                    }
                    Injection::PendingDeposit | Injection::OpenOrderLock => {}
                }
            }
            pending.sort_by(|a, b| a.position.cmp(&b.position));
            let found: BTreeMap<(Position, Pair), String> = differences(&ledger, &chain, &custody, pending)
                .into_iter()
                .map(|r| {
                    let class = match r.verdict { Verdict::Timing { .. } => "timing", _ => "break" };
                    ((r.position, r.pair), class.to_owned())
                })
                .collect();
            prop_assert_eq!(found, expected);
        }
    }
}
