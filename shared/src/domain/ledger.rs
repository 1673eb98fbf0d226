//! Double-entry rules in the spirit of TigerBeetle, as pure functions over the two
//! accounts a transfer touches: debits equal credits, balance limits hold at write time,
//! holds are two-phase (pending, then posted in whole or part, or voided), and a pending
//! transfer is resolved once. Persistence, retries by id and concurrency live in the
//! application layer; these functions decide.

use serde::{Deserialize, Serialize};

/// Amounts in the asset's smallest unit: cents for SGD, whole units for DABS.
pub type Amount = u64;

/// The asset of deposit accounts.
pub const SGD: &str = "SGD";

/// Why a transfer happened (its `code`).
pub mod codes {
    pub const DEPOSIT: u16 = 1;
    pub const WITHDRAWAL: u16 = 2;
    /// A pending transfer voided because its timeout passed.
    pub const EXPIRY: u16 = 3;
    /// A subscription's hold in a deal's escrow.
    pub const SUBSCRIPTION: u16 = 10;
    /// A deal's proceeds, from its escrow to the issuer's settlement account.
    pub const PROCEEDS: u16 = 11;
    /// DABS units issued into an investor's holding.
    pub const ISSUANCE: u16 = 12;
    /// DABS units locked for an open sell order.
    pub const ORDER_LOCK: u16 = 20;
    /// Locked units back to their owner (the order returned at market close, or was cancelled).
    pub const ORDER_RELEASE: u16 = 21;
    /// SGD held for an open buy order (a pending transfer to the buyer's order account).
    pub const ORDER_HOLD: u16 = 22;
    /// A trade's units, from the seller's order lock to the buyer's holding.
    pub const TRADE_UNITS: u16 = 30;
    /// A trade's cost (notional and the buyer's fee), posted from the buyer's hold.
    pub const TRADE_PAYMENT: u16 = 31;
    /// A trade's notional less the seller's fee, to the seller's deposit account.
    pub const TRADE_PROCEEDS: u16 = 32;
    /// A trade's fees (both sides) to the platform's fee account.
    pub const TRADE_FEE: u16 = 33;
}

/// Limits an account enforces on every write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Limits {
    /// Debits (posted and pending) never exceed posted credits: an investor's money
    /// account can never go below zero, holds included.
    pub debits_within_credits: bool,
    /// Credits (posted and pending) never exceed posted debits.
    pub credits_within_debits: bool,
}

/// What an account is for. Investors' and issuers' accounts are mirrored on the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An investor's SGD deposit account.
    Deposit,
    /// An investor's DABS holdings of one offering.
    Holding,
    /// The bank's omnibus account: the other side of every deposit and withdrawal.
    Omnibus,
    /// An offering's escrow: holds subscriptions until settlement.
    Escrow,
    /// An issuer's settlement account.
    IssuerSettlement,
    /// A DABS asset's source: debited by every unit issued, so the asset sums to zero.
    Issuance,
    /// DABS units of an owner locked in open sell orders, or (in SGD) the cash of a buy
    /// order on its way to the seller.
    OrderLock,
    /// The platform's trading fees.
    Fees,
    /// Any other system account.
    #[default]
    System,
}

impl Kind {
    /// Whether posted transfers touching such an account are recorded on the chain.
    pub fn mirrored(self) -> bool {
        matches!(self, Self::Deposit | Self::Holding | Self::IssuerSettlement | Self::OrderLock)
    }

    /// The limits an account of this kind enforces: investors and issuers never go below zero.
    pub fn limits(self) -> Limits {
        Limits { debits_within_credits: self.mirrored(), credits_within_debits: false }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deposit => "deposit",
            Self::Holding => "holding",
            Self::Omnibus => "omnibus",
            Self::Escrow => "escrow",
            Self::IssuerSettlement => "issuer",
            Self::Issuance => "issuance",
            Self::OrderLock => "lock",
            Self::Fees => "fees",
            Self::System => "system",
        }
    }
}

/// An account's totals. Balances are derived, never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: String,
    pub asset: String,
    pub limits: Limits,
    #[serde(default)]
    pub kind: Kind,
    /// Whose account: a user id, an offering id, an issuer id, or the bank.
    #[serde(default)]
    pub owner: String,
    pub debits_posted: u128,
    pub credits_posted: u128,
    pub debits_pending: u128,
    pub credits_pending: u128,
    /// Statement entries written so far (each change to the account writes one).
    #[serde(default)]
    pub entries: u64,
}

impl Account {
    pub fn open(id: impl Into<String>, asset: impl Into<String>, limits: Limits) -> Self {
        Self {
            id: id.into(),
            asset: asset.into(),
            limits,
            kind: Kind::System,
            owner: String::new(),
            debits_posted: 0,
            credits_posted: 0,
            debits_pending: 0,
            credits_pending: 0,
            entries: 0,
        }
    }

    /// The account of `owner` in `asset` of this kind, with the kind's limits; its id is
    /// `kind:owner:asset`, so the same (kind, owner, asset) is always the same account.
    pub fn of(kind: Kind, owner: &str, asset: &str) -> Self {
        Self { kind, owner: owner.to_owned(), ..Self::open(Self::id_of(kind, owner, asset), asset, kind.limits()) }
    }

    pub fn id_of(kind: Kind, owner: &str, asset: &str) -> String {
        format!("{}:{owner}:{asset}", kind.as_str())
    }

    /// Credits minus debits, posted only (what a credit-normal account holds).
    pub fn posted_balance(&self) -> i128 {
        self.credits_posted as i128 - self.debits_posted as i128
    }

    /// What can still be debited: posted balance less pending debits.
    pub fn available(&self) -> i128 {
        self.posted_balance() - self.debits_pending as i128
    }

    fn within_limits(&self) -> bool {
        let debits = self.debits_posted + self.debits_pending;
        let credits = self.credits_posted + self.credits_pending;
        (!self.limits.debits_within_credits || debits <= self.credits_posted)
            && (!self.limits.credits_within_debits || credits <= self.debits_posted)
    }
}

/// What a transfer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Phase {
    /// Posted at once.
    Single,
    /// A hold: reserves the amount on both accounts until posted or voided.
    Pending,
    /// Posts `amount` of a pending transfer (all of it or less); the rest is released.
    Post,
    /// Releases a pending transfer.
    Void,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// Chosen by the caller; the same id is the same transfer.
    pub id: String,
    pub debit: String,
    pub credit: String,
    pub amount: Amount,
    pub asset: String,
    /// Why (a code per business event).
    pub code: u16,
    pub phase: Phase,
    /// For `Post` and `Void`: the pending transfer resolved.
    pub pending_id: Option<String>,
    /// The business reference (a deposit, a withdrawal, a subscription).
    #[serde(default)]
    pub reference: String,
    /// For `Pending`: seconds after which the hold can no longer be posted and is voided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u32>,
}

impl Transfer {
    /// A transfer posted at once.
    pub fn single(id: impl Into<String>, debit: &str, credit: &str, amount: Amount, asset: &str, code: u16) -> Self {
        Self {
            id: id.into(),
            debit: debit.to_owned(),
            credit: credit.to_owned(),
            amount,
            asset: asset.to_owned(),
            code,
            phase: Phase::Single,
            pending_id: None,
            reference: String::new(),
            timeout: None,
        }
    }

    /// A hold of `amount`.
    pub fn pending(id: impl Into<String>, debit: &str, credit: &str, amount: Amount, asset: &str, code: u16) -> Self {
        Self { phase: Phase::Pending, ..Self::single(id, debit, credit, amount, asset, code) }
    }

    /// Posts `amount` of the hold `held`.
    pub fn post(id: impl Into<String>, held: &Transfer, amount: Amount) -> Self {
        Self {
            phase: Phase::Post,
            pending_id: Some(held.id.clone()),
            reference: held.reference.clone(),
            ..Self::single(id, &held.debit, &held.credit, amount, &held.asset, held.code)
        }
    }

    /// Releases the hold `held`.
    pub fn void(id: impl Into<String>, held: &Transfer) -> Self {
        Self { phase: Phase::Void, ..Self::post(id, held, 0) }
    }

    pub fn with_reference(mut self, reference: impl Into<String>) -> Self {
        self.reference = reference.into();
        self
    }

    pub fn with_timeout(mut self, seconds: u32) -> Self {
        self.timeout = Some(seconds);
        self
    }

    /// Whether the transfer moves posted value (what the chain mirrors).
    pub fn posts(&self) -> bool {
        matches!(self.phase, Phase::Single | Phase::Post)
    }
}

/// A pending transfer's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hold {
    Open,
    /// Open, but past its timeout: it can only be voided.
    Expired,
    Posted(Amount),
    Voided,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the amount must be positive")]
    ZeroAmount,
    #[error("debit and credit are the same account")]
    SameAccount,
    #[error("the accounts or the transfer are of different assets")]
    AssetMismatch,
    #[error("the transfer would take account {0} past its limit")]
    ExceedsLimit(String),
    #[error("post and void need the pending transfer")]
    PendingMissing,
    #[error("the pending transfer was already {0}")]
    AlreadyResolved(&'static str),
    #[error("posting more than is held")]
    PostExceedsHold,
    #[error("post and void must name the pending transfer's accounts")]
    AccountsDiffer,
    #[error("the pending transfer timed out")]
    Expired,
    #[error("only a pending transfer takes a timeout")]
    TimeoutNotPending,
    #[error("the id was used before with a different {0}")]
    IdReused(&'static str),
    /// The accounts do not carry the hold's reservation: they were read before the hold
    /// was made or after it was resolved. Never a final answer; read again.
    #[error("the accounts and the pending transfer were read at different moments")]
    Unreserved,
}

/// The outcome of a transfer on the two accounts (and the hold it resolves).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub debit: Account,
    pub credit: Account,
    /// For `Post`/`Void`: the pending transfer's new state.
    pub hold: Option<Hold>,
    /// The amount that moved (for `Post`, what was posted; for `Void`, what was released).
    pub amount: Amount,
}

/// Applies `transfer` to its accounts. `pending` is the transfer it resolves, with its
/// state, for `Post` and `Void`. Nothing is applied unless every rule holds.
pub fn apply(
    debit: &Account,
    credit: &Account,
    transfer: &Transfer,
    pending: Option<(&Transfer, Hold)>,
) -> Result<Applied, Refusal> {
    if debit.id == credit.id {
        return Err(Refusal::SameAccount);
    }
    if debit.asset != transfer.asset || credit.asset != transfer.asset {
        return Err(Refusal::AssetMismatch);
    }
    if transfer.timeout.is_some() && transfer.phase != Phase::Pending {
        return Err(Refusal::TimeoutNotPending);
    }
    let (mut d, mut c) = (debit.clone(), credit.clone());
    let (amount, hold) = match transfer.phase {
        Phase::Single | Phase::Pending => {
            if transfer.amount == 0 {
                return Err(Refusal::ZeroAmount);
            }
            let a = u128::from(transfer.amount);
            if transfer.phase == Phase::Single {
                d.debits_posted += a;
                c.credits_posted += a;
            } else {
                d.debits_pending += a;
                c.credits_pending += a;
            }
            (transfer.amount, None)
        }
        Phase::Post | Phase::Void => {
            let (held, state) = pending.ok_or(Refusal::PendingMissing)?;
            if held.phase != Phase::Pending {
                return Err(Refusal::PendingMissing);
            }
            match state {
                Hold::Open => {}
                Hold::Expired if transfer.phase == Phase::Void => {}
                Hold::Expired => return Err(Refusal::Expired),
                Hold::Posted(_) => return Err(Refusal::AlreadyResolved("posted")),
                Hold::Voided => return Err(Refusal::AlreadyResolved("voided")),
            }
            if held.debit != debit.id || held.credit != credit.id {
                return Err(Refusal::AccountsDiffer);
            }
            let reserved = u128::from(held.amount);
            d.debits_pending = d.debits_pending.checked_sub(reserved).ok_or(Refusal::Unreserved)?;
            c.credits_pending = c.credits_pending.checked_sub(reserved).ok_or(Refusal::Unreserved)?;
            if transfer.phase == Phase::Void {
                (held.amount, Some(Hold::Voided))
            } else {
                if transfer.amount > held.amount {
                    return Err(Refusal::PostExceedsHold);
                }
                if transfer.amount == 0 {
                    return Err(Refusal::ZeroAmount);
                }
                d.debits_posted += u128::from(transfer.amount);
                c.credits_posted += u128::from(transfer.amount);
                (transfer.amount, Some(Hold::Posted(transfer.amount)))
            }
        }
    };
    if !d.within_limits() {
        return Err(Refusal::ExceedsLimit(d.id));
    }
    if !c.within_limits() {
        return Err(Refusal::ExceedsLimit(c.id));
    }
    Ok(Applied { debit: d, credit: c, hold, amount })
}

/// A retry of `original` with `retry`'s fields: the same transfer, or which field differs.
pub fn same_transfer(original: &Transfer, retry: &Transfer) -> Result<(), Refusal> {
    let differs = [
        (original.debit != retry.debit, "debit"),
        (original.credit != retry.credit, "credit"),
        (original.amount != retry.amount, "amount"),
        (original.asset != retry.asset, "asset"),
        (original.code != retry.code, "code"),
        (original.phase != retry.phase, "phase"),
        (original.pending_id != retry.pending_id, "pending_id"),
        (original.reference != retry.reference, "reference"),
        (original.timeout != retry.timeout, "timeout"),
    ];
    match differs.iter().find(|(d, _)| *d) {
        Some((_, field)) => Err(Refusal::IdReused(field)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    const INVESTOR: Limits = Limits { debits_within_credits: true, credits_within_debits: false };

    /// Account ids are how the other books and reconciliation tell accounts apart: each
    /// kind has its own, and reconciliation reads investors' deposit accounts and holdings
    /// (and nothing else) from them.
    #[test]
    fn each_kind_of_account_has_its_own_ids_and_reconciliation_reads_investors_ones() {
        use crate::domain::reconcile::Class;
        let kinds = [
            Kind::Deposit,
            Kind::Holding,
            Kind::Omnibus,
            Kind::Escrow,
            Kind::IssuerSettlement,
            Kind::Issuance,
            Kind::OrderLock,
            Kind::System,
        ];
        let ids: std::collections::HashSet<String> = kinds.iter().map(|k| Account::id_of(*k, "inv_1", "SGD")).collect();
        assert_eq!(ids.len(), kinds.len(), "{ids:?}");
        let mirrored: Vec<Kind> = kinds.into_iter().filter(|k| k.mirrored()).collect();
        assert_eq!(
            mirrored,
            [Kind::Deposit, Kind::Holding, Kind::IssuerSettlement, Kind::OrderLock],
            "the chain's accounts"
        );
        for kind in kinds {
            let id = Account::id_of(kind, "inv_1", "SGD");
            assert_eq!(Account::of(kind, "inv_1", "SGD").id, id);
            let class = match kind {
                Kind::Deposit => Some(Class::Deposit),
                Kind::Holding => Some(Class::Dabs),
                _ => None,
            };
            assert_eq!(Class::of(&id), class, "{id}");
        }
    }

    /// Both accounts hold the transfer's asset: one side in another asset is refused.
    #[test]
    fn a_transfer_moves_one_asset_between_accounts_of_that_asset() {
        let sgd = Account { credits_posted: 500, ..Account::open("deposit:inv:SGD", SGD, INVESTOR) };
        let dabs = Account::open("holding:inv:DABS1", "DABS1", INVESTOR);
        let escrow = Account::open("escrow:deal:SGD", SGD, Kind::Escrow.limits());
        let in_sgd = |debit: &Account, credit: &Account| {
            apply(debit, credit, &Transfer::single("t", &debit.id, &credit.id, 1, SGD, codes::SUBSCRIPTION), None)
        };
        assert!(in_sgd(&sgd, &escrow).is_ok());
        assert_eq!(in_sgd(&sgd, &dabs).unwrap_err(), Refusal::AssetMismatch, "the credit in another asset");
        assert_eq!(in_sgd(&dabs, &escrow).unwrap_err(), Refusal::AssetMismatch, "the debit in another asset");
    }

    /// A hold posts up to what it holds, exactly that included.
    #[test]
    fn a_hold_posts_up_to_its_amount() {
        let from = Account { credits_posted: 500, ..Account::open("deposit:inv:SGD", SGD, INVESTOR) };
        let to = Account::open("escrow:deal:SGD", SGD, Kind::Escrow.limits());
        let held = Transfer::pending("h", &from.id, &to.id, 300, SGD, codes::SUBSCRIPTION);
        let after = apply(&from, &to, &held, None).unwrap();
        let open = Some((&held, Hold::Open));
        let more = Transfer::post("h:post", &held, 301);
        assert_eq!(apply(&after.debit, &after.credit, &more, open).unwrap_err(), Refusal::PostExceedsHold);
        let all = Transfer::post("h:post", &held, 300);
        let posted = apply(&after.debit, &after.credit, &all, open).unwrap();
        assert_eq!((posted.hold, posted.debit.posted_balance()), (Some(Hold::Posted(300)), 200));
    }

    /// An account limited to credits within its debits takes credits up to its posted
    /// debits, exactly that included, and no more.
    #[test]
    fn credits_within_debits_bounds_what_an_account_receives() {
        let limits = Limits { debits_within_credits: false, credits_within_debits: true };
        let bounded = Account { debits_posted: 100, ..Account::open("system:cap:SGD", SGD, limits) };
        let source = Account::open("system:src:SGD", SGD, Limits::default());
        let exactly = Transfer::single("t1", &source.id, &bounded.id, 100, SGD, codes::DEPOSIT);
        assert!(apply(&source, &bounded, &exactly, None).is_ok());
        let over = Transfer::single("t2", &source.id, &bounded.id, 101, SGD, codes::DEPOSIT);
        assert!(matches!(apply(&source, &bounded, &over, None), Err(Refusal::ExceedsLimit(_))));
    }

    /// Only a hold times out: a timeout on any other transfer is refused.
    #[test]
    fn only_a_pending_transfer_takes_a_timeout() {
        let from = Account { credits_posted: 500, ..Account::open("deposit:inv:SGD", SGD, INVESTOR) };
        let to = Account::open("escrow:deal:SGD", SGD, Kind::Escrow.limits());
        let single = Transfer::single("s", &from.id, &to.id, 100, SGD, codes::SUBSCRIPTION).with_timeout(60);
        assert_eq!(apply(&from, &to, &single, None).unwrap_err(), Refusal::TimeoutNotPending);
        let held = Transfer::pending("h", &from.id, &to.id, 100, SGD, codes::SUBSCRIPTION).with_timeout(60);
        assert_eq!(apply(&from, &to, &held, None).unwrap().debit.debits_pending, 100);
    }

    /// Investors' and issuers' accounts never go below zero; the platform's own may.
    #[test]
    fn the_kinds_the_chain_mirrors_are_the_ones_that_never_go_below_zero() {
        for kind in [Kind::Deposit, Kind::Holding, Kind::IssuerSettlement, Kind::OrderLock] {
            assert_eq!(kind.limits(), Limits { debits_within_credits: true, credits_within_debits: false }, "{kind:?}");
        }
        for kind in [Kind::Omnibus, Kind::Escrow, Kind::Issuance, Kind::System] {
            assert_eq!(
                kind.limits(),
                Limits { debits_within_credits: false, credits_within_debits: false },
                "{kind:?}"
            );
        }
    }

    /// A hold past its timeout releases the money: it can be voided, and never posted.
    #[test]
    fn an_expired_hold_can_be_voided_and_not_posted() {
        let investor = Account::open("deposit:inv:SGD", SGD, INVESTOR);
        let escrow = Account::open("escrow:deal:SGD", SGD, Kind::Escrow.limits());
        let funded = Account { credits_posted: 500, ..investor };
        let held = Transfer::pending("h", &funded.id, &escrow.id, 300, SGD, codes::SUBSCRIPTION);
        let after_hold = apply(&funded, &escrow, &held, None).unwrap();
        let (debit, credit) = (&after_hold.debit, &after_hold.credit);
        let post = Transfer::post("h:post", &held, 300);
        assert_eq!(apply(debit, credit, &post, Some((&held, Hold::Expired))).unwrap_err(), Refusal::Expired);
        let void = Transfer::void("h:void", &held);
        let voided = apply(debit, credit, &void, Some((&held, Hold::Expired))).unwrap();
        assert_eq!((voided.hold, voided.amount, voided.debit.debits_pending), (Some(Hold::Voided), 300, 0));
    }

    #[test]
    fn only_a_single_or_a_posting_transfer_moves_posted_value() {
        let held = Transfer::pending("h", "a", "b", 10, SGD, codes::SUBSCRIPTION);
        assert!(Transfer::single("s", "a", "b", 10, SGD, codes::SUBSCRIPTION).posts());
        assert!(Transfer::post("p", &held, 10).posts());
        assert!(!held.posts());
        assert!(!Transfer::void("v", &held).posts());
    }

    /// A whole book in memory, to drive `apply` through random histories.
    #[derive(Default)]
    struct Book {
        accounts: HashMap<String, Account>,
        transfers: HashMap<String, (Transfer, Result<Amount, Refusal>)>,
        holds: HashMap<String, Hold>,
    }

    impl Book {
        fn submit(&mut self, t: &Transfer) -> Result<Amount, Refusal> {
            if let Some((original, result)) = self.transfers.get(&t.id) {
                same_transfer(original, t)?;
                return result.clone();
            }
            let pending = t.pending_id.as_ref().and_then(|id| {
                let (held, _) = self.transfers.get(id)?;
                Some((held.clone(), *self.holds.get(id)?))
            });
            let result =
                apply(&self.accounts[&t.debit], &self.accounts[&t.credit], t, pending.as_ref().map(|(h, s)| (h, *s)));
            let outcome = result.map(|applied| {
                self.accounts.insert(applied.debit.id.clone(), applied.debit);
                self.accounts.insert(applied.credit.id.clone(), applied.credit);
                if t.phase == Phase::Pending {
                    self.holds.insert(t.id.clone(), Hold::Open);
                }
                if let (Some(id), Some(hold)) = (&t.pending_id, applied.hold) {
                    self.holds.insert(id.clone(), hold);
                }
                applied.amount
            });
            self.transfers.insert(t.id.clone(), (t.clone(), outcome.clone()));
            outcome
        }
    }

    fn book() -> Book {
        let mut book = Book::default();
        // The bank's omnibus (unlimited), an escrow, and three investors who can't go negative.
        book.accounts.insert("bank".into(), Account::open("bank", "SGD", Limits::default()));
        book.accounts.insert("escrow".into(), Account::open("escrow", "SGD", Limits::default()));
        for i in 0..3 {
            book.accounts.insert(format!("inv{i}"), Account::open(format!("inv{i}"), "SGD", INVESTOR));
        }
        book
    }

    const ACCOUNTS: [&str; 5] = ["bank", "escrow", "inv0", "inv1", "inv2"];

    fn transfer() -> impl Strategy<Value = Transfer> {
        (0usize..5, 0usize..5, 0u64..500, 0u8..4, 0usize..40, 0usize..40).prop_map(
            |(d, c, amount, phase, id, pending)| {
                let phase = [Phase::Single, Phase::Pending, Phase::Post, Phase::Void][phase as usize];
                Transfer {
                    id: format!("t{id}"),
                    debit: ACCOUNTS[d].into(),
                    credit: ACCOUNTS[c].into(),
                    amount,
                    asset: "SGD".into(),
                    code: 1,
                    phase,
                    pending_id: matches!(phase, Phase::Post | Phase::Void).then(|| format!("t{pending}")),
                    reference: String::new(),
                    timeout: None,
                }
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// After every step: per asset the balances sum to zero and pending debits equal
        /// pending credits; no investor is ever below zero, holds included; a refused step
        /// changed nothing; a retried id never applied twice.
        #[test]
        fn the_book_always_balances_and_no_investor_goes_negative(
            deposits in proptest::collection::vec(0u64..1_000, 3),
            steps in proptest::collection::vec(transfer(), 1..120),
        ) {
            let mut book = book();
            for (i, amount) in deposits.iter().enumerate() {
                let t = Transfer { id: format!("dep{i}"), debit: "bank".into(), credit: format!("inv{i}"), amount: amount + 1,
                    asset: "SGD".into(), code: 1, phase: Phase::Single, pending_id: None, reference: String::new(), timeout: None };
                prop_assert!(book.submit(&t).is_ok());
            }
            for step in steps {
                let before: Vec<Account> = ACCOUNTS.iter().map(|a| book.accounts[*a].clone()).collect();
                let seen = book.transfers.contains_key(&step.id);
                let result = book.submit(&step);
                let after: Vec<Account> = ACCOUNTS.iter().map(|a| book.accounts[*a].clone()).collect();
                if result.is_err() || seen {
                    prop_assert_eq!(&before, &after, "a refused or retried transfer changed the book");
                }
                let sum: i128 = after.iter().map(Account::posted_balance).sum();
                prop_assert_eq!(sum, 0);
                let pending_debits: u128 = after.iter().map(|a| a.debits_pending).sum();
                let pending_credits: u128 = after.iter().map(|a| a.credits_pending).sum();
                prop_assert_eq!(pending_debits, pending_credits);
                for investor in after.iter().filter(|a| a.limits.debits_within_credits) {
                    prop_assert!(investor.available() >= 0, "{} went below zero", investor.id);
                }
            }
            // Every hold is resolved at most once: posted plus voided holds never exceed holds opened.
            let open = book.holds.values().filter(|h| **h == Hold::Open).count();
            let resolved = book.holds.len() - open;
            let opened = book.transfers.values().filter(|(t, r)| t.phase == Phase::Pending && r.is_ok()).count();
            prop_assert_eq!(open + resolved, opened);
        }
    }

    #[test]
    fn a_hold_is_posted_in_part_once_and_the_rest_released() {
        let mut book = book();
        let t = |id: &str, d: &str, c: &str, amount, phase, pending: Option<&str>| Transfer {
            id: id.into(),
            debit: d.into(),
            credit: c.into(),
            amount,
            asset: "SGD".into(),
            code: 1,
            phase,
            pending_id: pending.map(String::from),
            reference: String::new(),
            timeout: None,
        };
        book.submit(&t("dep", "bank", "inv0", 1_000, Phase::Single, None)).unwrap();
        book.submit(&t("hold", "inv0", "escrow", 600, Phase::Pending, None)).unwrap();
        assert_eq!(book.accounts["inv0"].available(), 400);
        assert_eq!(
            book.submit(&t("big", "inv0", "escrow", 401, Phase::Single, None)),
            Err(Refusal::ExceedsLimit("inv0".into()))
        );
        assert_eq!(book.submit(&t("post", "inv0", "escrow", 450, Phase::Post, Some("hold"))), Ok(450));
        assert_eq!(book.accounts["inv0"].available(), 550);
        assert_eq!(book.accounts["escrow"].posted_balance(), 450);
        assert_eq!(
            book.submit(&t("void", "inv0", "escrow", 0, Phase::Void, Some("hold"))),
            Err(Refusal::AlreadyResolved("posted"))
        );
        // The same id again answers the first result; with another amount it is refused by name.
        assert_eq!(book.submit(&t("post", "inv0", "escrow", 450, Phase::Post, Some("hold"))), Ok(450));
        assert_eq!(
            book.submit(&t("post", "inv0", "escrow", 451, Phase::Post, Some("hold"))),
            Err(Refusal::IdReused("amount"))
        );
    }

    /// Accounts read before the hold was made (or after it was resolved) lack its
    /// reservation: resolving it against them is refused as a skewed read, changing nothing.
    #[test]
    fn resolving_a_hold_against_accounts_without_its_reservation_is_a_skewed_read() {
        let mut book = book();
        let hold = Transfer {
            id: "hold".into(),
            debit: "escrow".into(),
            credit: "inv0".into(),
            amount: 300,
            asset: "SGD".into(),
            code: 1,
            phase: Phase::Pending,
            pending_id: None,
            reference: String::new(),
            timeout: None,
        };
        let (escrow, investor) = (book.accounts["escrow"].clone(), book.accounts["inv0"].clone());
        book.submit(&hold).unwrap();
        for phase in [Phase::Post, Phase::Void] {
            let resolve = Transfer { id: "resolve".into(), phase, pending_id: Some("hold".into()), ..hold.clone() };
            assert_eq!(apply(&escrow, &investor, &resolve, Some((&hold, Hold::Open))), Err(Refusal::Unreserved));
            let fresh = apply(&book.accounts["escrow"], &book.accounts["inv0"], &resolve, Some((&hold, Hold::Open)));
            assert_eq!(fresh.map(|a| a.amount), Ok(300));
        }
    }
}
