//! A deal (offering) as pure rules: its terms and their validation, its lifecycle, what
//! may change in which state, and what a subscription may ask for.
//!
//! Lifecycle: draft -> pending approval -> published (visible, not yet open) -> open ->
//! closed -> allocating -> allocated -> settling -> issued; or cancelled at any point
//! before close; or stopped at `issuance_rejected` when the Custody rejects the
//! distribution (the money has settled, no DABS were issued: operators take it from there). Publishing is approved by a second operator (maker-checker); opening and
//! closing follow the subscription window, and a finance operator may close early.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ledger::Amount;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DealState {
    Draft,
    PendingApproval,
    Published,
    Open,
    Closed,
    Allocating,
    Allocated,
    Settling,
    Issued,
    Cancelled,
    IssuanceRejected,
}

impl DealState {
    pub const ALL: [Self; 11] = [
        Self::Draft,
        Self::PendingApproval,
        Self::Published,
        Self::Open,
        Self::Closed,
        Self::Allocating,
        Self::Allocated,
        Self::Settling,
        Self::Issued,
        Self::Cancelled,
        Self::IssuanceRejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::PendingApproval => "pending_approval",
            Self::Published => "published",
            Self::Open => "open",
            Self::Closed => "closed",
            Self::Allocating => "allocating",
            Self::Allocated => "allocated",
            Self::Settling => "settling",
            Self::Issued => "issued",
            Self::Cancelled => "cancelled",
            Self::IssuanceRejected => "issuance_rejected",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether the public sees the deal (published and later, cancelled after publishing
    /// included: investors who saw it learn it was cancelled).
    pub fn is_public(self) -> bool {
        !matches!(self, Self::Draft | Self::PendingApproval)
    }

    /// Whether anything may still be edited (descriptions and documents until close).
    pub fn accepts_edits(self) -> bool {
        matches!(self, Self::Draft | Self::Published | Self::Open)
    }

    /// Whether the economic terms are frozen.
    pub fn terms_frozen(self) -> bool {
        !matches!(self, Self::Draft | Self::PendingApproval)
    }
}

/// What moves a deal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The maker asks for publication.
    SubmitForApproval,
    /// The checker approved the publication.
    Publish,
    /// The checker rejected it: back to draft.
    ReturnToDraft,
    /// The window opened.
    Open,
    /// The window closed, or a finance operator closed it early.
    Close,
    Cancel,
    StartAllocation,
    FinishAllocation,
    StartSettlement,
    Issue,
    /// The Custody rejected the distribution.
    RejectIssuance,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a {} deal cannot {step}", from.as_str())]
pub struct BadTransition {
    pub from: DealState,
    pub step: &'static str,
}

/// The state after `step`, or why the step does not apply.
pub fn next(from: DealState, step: Step) -> Result<DealState, BadTransition> {
    use DealState::*;
    let to = match (from, step) {
        (Draft, Step::SubmitForApproval) => PendingApproval,
        (PendingApproval, Step::Publish) => Published,
        (PendingApproval, Step::ReturnToDraft) => Draft,
        (Published, Step::Open) => Open,
        (Open, Step::Close) => Closed,
        (Draft | PendingApproval | Published | Open, Step::Cancel) => Cancelled,
        (Closed, Step::StartAllocation) => Allocating,
        (Allocating, Step::FinishAllocation) => Allocated,
        (Allocated, Step::StartSettlement) => Settling,
        (Settling, Step::Issue) => Issued,
        (Settling, Step::RejectIssuance) => IssuanceRejected,
        _ => {
            let step = match step {
                Step::SubmitForApproval => "be submitted for approval",
                Step::Publish => "be published",
                Step::ReturnToDraft => "return to draft",
                Step::Open => "open",
                Step::Close => "close",
                Step::Cancel => "be cancelled",
                Step::StartAllocation => "start allocation",
                Step::FinishAllocation => "finish allocation",
                Step::StartSettlement => "start settlement",
                Step::Issue => "be issued",
                Step::RejectIssuance => "have its issuance rejected",
            };
            return Err(BadTransition { from, step });
        }
    };
    Ok(to)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BuildingType {
    Office,
    Retail,
    Industrial,
    Residential,
    Hospitality,
    MixedUse,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Building {
    pub name: String,
    pub address: String,
    pub kind: BuildingType,
    /// Cents.
    pub valuation: Amount,
}

/// The economic terms and the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terms {
    pub building: Building,
    /// Whole DABS units on offer.
    pub supply: u64,
    /// Cents per unit.
    pub unit_price: Amount,
    pub min_units: u64,
    pub max_units: u64,
    pub opens_at: DateTime<Utc>,
    pub closes_at: DateTime<Utc>,
    /// References to documents held elsewhere (prospectus, valuation report).
    pub documents: Vec<String>,
}

/// A field and what is wrong with it.
pub type Problem = (&'static str, String);

/// Every rule the terms break (empty when they are valid).
pub fn check_terms(terms: &Terms) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut fail = |field, message: &str| problems.push((field, message.to_owned()));
    let text_ok = |s: &str, max: usize| !s.trim().is_empty() && s.chars().count() <= max;
    if !text_ok(&terms.building.name, 200) {
        fail("building.name", "1 to 200 characters");
    }
    if !text_ok(&terms.building.address, 500) {
        fail("building.address", "1 to 500 characters");
    }
    if terms.building.valuation == 0 {
        fail("building.valuation", "must be more than zero");
    }
    if terms.supply == 0 || terms.supply > 1_000_000_000 {
        fail("supply", "1 to 1,000,000,000 units");
    }
    if terms.unit_price == 0 {
        fail("unit_price", "must be more than zero");
    }
    if terms.min_units == 0 {
        fail("min_units", "at least 1");
    }
    if terms.max_units < terms.min_units {
        fail("max_units", "at least min_units");
    }
    if terms.max_units > terms.supply {
        fail("max_units", "at most the supply");
    }
    if terms.closes_at <= terms.opens_at {
        fail("closes_at", "after opens_at");
    }
    if u128::from(terms.supply) * u128::from(terms.unit_price) > u128::from(u64::MAX) {
        fail("unit_price", "supply times price is too large");
    }
    if terms.documents.len() > 50 || terms.documents.iter().any(|d| !text_ok(d, 500)) {
        fail("documents", "up to 50 references of 1 to 500 characters");
    }
    problems
}

/// Why a subscription is refused by the terms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitsRefusal {
    #[error("at least {0} units")]
    BelowMinimum(u64),
    #[error("at most {0} units")]
    AboveMaximum(u64),
}

/// What `units` cost under `terms`, if the terms allow that many.
pub fn subscription_amount(terms: &Terms, units: u64) -> Result<Amount, UnitsRefusal> {
    if units < terms.min_units {
        return Err(UnitsRefusal::BelowMinimum(terms.min_units));
    }
    if units > terms.max_units {
        return Err(UnitsRefusal::AboveMaximum(terms.max_units));
    }
    // Bounded by check_terms: max_units <= supply and supply * price fits.
    Ok(units * terms.unit_price)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms() -> Terms {
        Terms {
            building: Building {
                name: "Marina Tower".into(),
                address: "1 Marina Blvd".into(),
                kind: BuildingType::Office,
                valuation: 10_000_000_000,
            },
            supply: 10_000,
            unit_price: 10_000,
            min_units: 10,
            max_units: 1_000,
            opens_at: "2026-12-01T01:00:00Z".parse().unwrap(),
            closes_at: "2026-12-08T01:00:00Z".parse().unwrap(),
            documents: vec!["doc://prospectus".into()],
        }
    }

    #[test]
    fn the_lifecycle_moves_only_forward_and_cancels_only_before_close() {
        use DealState::*;
        let path = [
            (Draft, Step::SubmitForApproval, PendingApproval),
            (PendingApproval, Step::Publish, Published),
            (Published, Step::Open, Open),
            (Open, Step::Close, Closed),
            (Closed, Step::StartAllocation, Allocating),
            (Allocating, Step::FinishAllocation, Allocated),
            (Allocated, Step::StartSettlement, Settling),
            (Settling, Step::Issue, Issued),
        ];
        assert_eq!(next(Settling, Step::RejectIssuance), Ok(IssuanceRejected));
        assert_eq!(next(PendingApproval, Step::ReturnToDraft), Ok(Draft), "a checker sends it back");
        for state in DealState::ALL {
            assert_eq!(DealState::parse(state.as_str()), Some(state));
        }
        assert_eq!(DealState::parse("opened"), None);
        assert!(next(IssuanceRejected, Step::Issue).is_err(), "nothing is issued after a rejection");
        for (from, step, to) in path {
            assert_eq!(next(from, step), Ok(to));
        }
        for state in DealState::ALL {
            let cancellable = matches!(state, Draft | PendingApproval | Published | Open);
            assert_eq!(next(state, Step::Cancel).is_ok(), cancellable, "{state:?}");
            // A step applies in exactly one state (or none).
        }
        assert!(next(Closed, Step::Close).is_err(), "closing happens once");
        assert!(next(Draft, Step::Publish).is_err(), "publishing needs approval first");
        assert_eq!(next(Published, Step::Close).unwrap_err().to_string(), "a published deal cannot close");
    }

    #[test]
    fn terms_are_checked_field_by_field_and_units_priced_exactly() {
        assert!(check_terms(&terms()).is_empty());
        let mut bad = terms();
        bad.max_units = 5;
        bad.closes_at = bad.opens_at;
        bad.building.name = " ".into();
        let fields: Vec<&str> = check_terms(&bad).into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["building.name", "max_units", "closes_at"]);
        assert_eq!(subscription_amount(&terms(), 25), Ok(25 * 10_000));
        assert_eq!(subscription_amount(&terms(), 9), Err(UnitsRefusal::BelowMinimum(10)));
        assert_eq!(subscription_amount(&terms(), 10), Ok(10 * 10_000), "exactly the minimum");
        assert_eq!(subscription_amount(&terms(), 1_000), Ok(1_000 * 10_000), "exactly the maximum");
        assert_eq!(subscription_amount(&terms(), 1_001), Err(UnitsRefusal::AboveMaximum(1_000)));
    }

    /// Who sees a deal, what may change in it, per state: the table operators work by.
    #[test]
    fn each_state_says_who_sees_the_deal_and_what_may_still_change() {
        use DealState::*;
        // (state, public, accepts edits, terms frozen)
        let table = [
            (Draft, false, true, false),
            (PendingApproval, false, false, false),
            (Published, true, true, true),
            (Open, true, true, true),
            (Closed, true, false, true),
            (Allocating, true, false, true),
            (Allocated, true, false, true),
            (Settling, true, false, true),
            (Issued, true, false, true),
            (Cancelled, true, false, true),
            (IssuanceRejected, true, false, true),
        ];
        assert_eq!(table.len(), DealState::ALL.len());
        for (state, public, edits, frozen) in table {
            assert_eq!(
                (state.is_public(), state.accepts_edits(), state.terms_frozen()),
                (public, edits, frozen),
                "{state:?}"
            );
        }
    }

    /// Supply times price must fit the ledger's amounts.
    #[test]
    fn a_deal_worth_more_than_an_amount_holds_is_refused() {
        let mut huge = terms();
        // 641 x 65537 divides 2^64 - 1: a deal worth exactly the largest amount.
        (huge.supply, huge.max_units, huge.min_units) = (641 * 65_537, 1, 1);
        huge.unit_price = u64::MAX / huge.supply;
        assert_eq!(u128::from(huge.supply) * u128::from(huge.unit_price), u128::from(u64::MAX));
        assert!(check_terms(&huge).is_empty());
        huge.unit_price += 1;
        let fields: Vec<&str> = check_terms(&huge).into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["unit_price"]);
    }

    #[test]
    fn the_supply_is_one_to_a_billion_units() {
        let with_supply = |supply: u64| {
            let mut t = terms();
            (t.supply, t.max_units, t.min_units) = (supply, 1, 1);
            check_terms(&t).into_iter().map(|(f, _)| f).collect::<Vec<_>>()
        };
        assert_eq!(with_supply(1), Vec::<&str>::new());
        assert_eq!(with_supply(1_000_000_000), Vec::<&str>::new());
        assert_eq!(with_supply(0), ["supply", "max_units"]);
        assert_eq!(with_supply(1_000_000_001), ["supply"]);
    }

    #[test]
    fn a_deal_lists_up_to_fifty_documents() {
        let mut listed = terms();
        listed.documents = (0..50).map(|i| format!("doc://{i}")).collect();
        assert!(check_terms(&listed).is_empty());
        listed.documents.push("doc://one-more".into());
        let fields: Vec<&str> = check_terms(&listed).into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["documents"]);
    }
}
