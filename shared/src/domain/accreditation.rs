//! The accredited-investor test of the Securities and Futures Act (s4A(1)(a)(i)), as the
//! platform applies it: an individual is accredited if any one of
//!
//! - net personal assets exceed S$2,000,000, of which the net equity of the primary
//!   residence counts at most S$1,000,000;
//! - net financial assets exceed S$1,000,000;
//! - income in the preceding 12 months is at least S$300,000.
//!
//! Income is the assessable income of the notice of assessment from Myinfo (the latest
//! year of assessment, at most one year old); CPF balances from Myinfo count as financial
//! assets; the primary residence counts only if Myinfo shows the investor owns property.
//! The rest is the investor's declaration. Amounts are integer cents.

// Amounts in cents are written dollars_cents (`350_000_00` is S$350,000.00).
#![allow(clippy::inconsistent_digit_grouping)]

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

/// Net personal assets must exceed this (cents).
pub const NET_PERSONAL_ASSETS_ABOVE: i128 = 2_000_000_00;
/// The most the primary residence's net equity counts towards net personal assets.
pub const RESIDENCE_CAP: i128 = 1_000_000_00;
/// Net financial assets must exceed this.
pub const NET_FINANCIAL_ASSETS_ABOVE: i128 = 1_000_000_00;
/// Income in the preceding 12 months must be at least this.
pub const INCOME_AT_LEAST: i128 = 300_000_00;

/// What the investor declares (cents); Myinfo does not know it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Declaration {
    /// Market value of the primary residence.
    pub residence_value: u64,
    /// What is owed on it.
    pub residence_loan: u64,
    /// Deposits and investment products, CPF excluded (Myinfo supplies CPF).
    pub financial_assets: u64,
    /// Liabilities incurred to acquire or secured by those financial assets.
    pub financial_liabilities: u64,
    /// Other assets (other property, vehicles, business interests).
    pub other_assets: u64,
    /// Other liabilities.
    pub other_liabilities: u64,
}

/// What the platform has verified from Myinfo.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verified {
    /// Assessable income of the latest notice of assessment, and its year of assessment.
    pub income: Option<(u64, i32)>,
    /// CPF balances (ordinary, special, MediSave and retirement accounts together).
    pub cpf_balances: Option<u64>,
    /// Whether the investor owns property (HDB or private).
    pub owns_property: bool,
}

/// The assessment's inputs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs {
    pub verified: Verified,
    pub declared: Option<Declaration>,
}

/// One test of the three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Criterion {
    NetPersonalAssets,
    NetFinancialAssets,
    Income,
}

/// The result of the test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// At least one criterion met.
    Passed,
    /// The data was there and no criterion was met.
    NotMet,
    /// Neither a current income from Myinfo nor a declaration: nothing to assess.
    Incomplete,
}

/// The figures the test compared, and what it decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assessment {
    pub outcome: Outcome,
    /// The criteria met (empty unless passed).
    pub met: Vec<Criterion>,
    /// Net personal assets with the residence capped (cents).
    pub net_personal_assets: i128,
    /// The residence's net equity as counted (capped; zero without Myinfo ownership).
    pub residence_counted: i128,
    pub net_financial_assets: i128,
    /// Income counted (zero when Myinfo had none current).
    pub income: i128,
}

/// Applies the test as of `today`.
pub fn assess(inputs: &Inputs, today: NaiveDate) -> Assessment {
    let declared = inputs.declared.unwrap_or_default();
    let cents = |v: u64| i128::from(v);
    let income = inputs.verified.income.filter(|(_, year)| *year >= today.year() - 1).map(|(amount, _)| cents(amount));
    let cpf = cents(inputs.verified.cpf_balances.unwrap_or(0));
    let net_financial_assets = cents(declared.financial_assets) + cpf - cents(declared.financial_liabilities);
    let residence_counted = if inputs.verified.owns_property {
        (cents(declared.residence_value) - cents(declared.residence_loan)).min(RESIDENCE_CAP)
    } else {
        0
    };
    let net_personal_assets =
        residence_counted + net_financial_assets + cents(declared.other_assets) - cents(declared.other_liabilities);
    let income = income.unwrap_or(0);
    let met: Vec<Criterion> = [
        (Criterion::NetPersonalAssets, net_personal_assets > NET_PERSONAL_ASSETS_ABOVE),
        (Criterion::NetFinancialAssets, net_financial_assets > NET_FINANCIAL_ASSETS_ABOVE),
        (Criterion::Income, income >= INCOME_AT_LEAST),
    ]
    .into_iter()
    .filter_map(|(criterion, met)| met.then_some(criterion))
    .collect();
    let has_income = inputs.verified.income.is_some_and(|(_, year)| year >= today.year() - 1);
    let outcome = if !met.is_empty() {
        Outcome::Passed
    } else if inputs.declared.is_none() && !has_income && inputs.verified.cpf_balances.is_none() {
        Outcome::Incomplete
    } else {
        Outcome::NotMet
    };
    Assessment { outcome, met, net_personal_assets, residence_counted, net_financial_assets, income }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()
    }

    fn with_income(amount: u64, year: i32) -> Inputs {
        Inputs { verified: Verified { income: Some((amount, year)), ..Verified::default() }, declared: None }
    }

    fn declared(owns_property: bool, declaration: Declaration) -> Inputs {
        Inputs { verified: Verified { owns_property, ..Verified::default() }, declared: Some(declaration) }
    }

    #[test]
    fn income_passes_at_the_threshold_and_not_a_cent_below() {
        let table = [
            (300_000_00 - 1, 2026, Outcome::NotMet),
            (300_000_00, 2026, Outcome::Passed),
            (300_000_00 + 1, 2026, Outcome::Passed),
            (300_000_00, 2025, Outcome::Passed),
            // A notice of assessment two years old is not the last 12 months.
            (900_000_00, 2024, Outcome::Incomplete),
        ];
        for (amount, year, expected) in table {
            let assessment = assess(&with_income(amount, year), today());
            assert_eq!(assessment.outcome, expected, "income {amount} of {year}");
            assert_eq!(assessment.met.contains(&Criterion::Income), expected == Outcome::Passed);
        }
    }

    #[test]
    fn net_financial_assets_must_exceed_one_million_with_cpf_counted() {
        let table = [
            (1_000_000_00, 0, 0, Outcome::NotMet),
            (1_000_000_01, 0, 0, Outcome::Passed),
            (900_000_00, 100_000_00, 0, Outcome::NotMet),
            (900_000_00, 100_000_01, 0, Outcome::Passed),
            (1_200_000_00, 0, 200_000_00, Outcome::NotMet),
            (1_200_000_00, 0, 199_999_99, Outcome::Passed),
        ];
        for (financial_assets, cpf, liabilities, expected) in table {
            let mut inputs = declared(
                false,
                Declaration { financial_assets, financial_liabilities: liabilities, ..Declaration::default() },
            );
            inputs.verified.cpf_balances = Some(cpf);
            let assessment = assess(&inputs, today());
            assert_eq!(assessment.outcome, expected, "{financial_assets} + cpf {cpf} - {liabilities}");
            assert_eq!(assessment.met.contains(&Criterion::NetFinancialAssets), expected == Outcome::Passed);
        }
    }

    #[test]
    fn net_personal_assets_must_exceed_two_million_with_the_residence_capped_at_one() {
        // (residence value, loan, other assets, owns property per Myinfo, counted, passed)
        let table = [
            // The residence is worth 3m net: only 1m counts; 1m of others is not enough.
            (3_000_000_00, 0, 1_000_000_00, true, 1_000_000_00, false),
            (3_000_000_00, 0, 1_000_000_01, true, 1_000_000_00, true),
            // Exactly at the cap, and a cent under it.
            (1_000_000_00, 0, 1_000_000_01, true, 1_000_000_00, true),
            (1_000_000_00, 1, 1_000_000_01, true, 999_999_99, false),
            // A loan reduces the equity before the cap.
            (1_500_000_00, 500_000_00, 1_000_000_01, true, 1_000_000_00, true),
            (1_500_000_00, 500_000_01, 1_000_000_01, true, 999_999_99, false),
            // A residence Myinfo does not show is not counted.
            (3_000_000_00, 0, 1_000_000_01, false, 0, false),
        ];
        for (value, loan, other, owns, counted, passed) in table {
            let inputs = declared(
                owns,
                Declaration {
                    residence_value: value,
                    residence_loan: loan,
                    other_assets: other,
                    ..Declaration::default()
                },
            );
            let assessment = assess(&inputs, today());
            assert_eq!(assessment.residence_counted, counted, "{value} - {loan}, owns {owns}");
            assert_eq!(assessment.met.contains(&Criterion::NetPersonalAssets), passed, "{value} - {loan} + {other}");
            assert_eq!(assessment.outcome == Outcome::Passed, passed);
        }
    }

    #[test]
    fn liabilities_count_against_net_personal_assets_and_nothing_at_all_is_incomplete() {
        let inputs = declared(
            false,
            Declaration { other_assets: 2_500_000_00, other_liabilities: 500_000_00, ..Declaration::default() },
        );
        assert_eq!(assess(&inputs, today()).outcome, Outcome::NotMet);
        assert_eq!(assess(&Inputs::default(), today()).outcome, Outcome::Incomplete);
        let several = Inputs {
            verified: Verified {
                income: Some((400_000_00, 2026)),
                cpf_balances: Some(1_100_000_00),
                owns_property: false,
            },
            declared: None,
        };
        let assessment = assess(&several, today());
        assert_eq!(assessment.met, vec![Criterion::NetFinancialAssets, Criterion::Income]);
    }
}
