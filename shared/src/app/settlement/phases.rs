//! The phases of a settlement, each a step over a page that saves its progress: money
//! legs, proceeds, distribution, approval, issuing.

use super::legs::{leg_id, leg_reference};
use super::state::{SettlementState, issue_transfer_id};
use super::{DISTRIBUTION_PAGE, LEGS_PAGE, Next, SettlementError, Settlements};
use crate::app::allocation::Allocation;
use crate::app::ledger::{LedgerError, MAX_LINKED};
use crate::app::notices::{self, Audience, Notice};
use crate::app::subscriptions::hold_of;
use crate::domain::deal::Step;
use crate::domain::ledger::{Account, Amount, Kind, SGD, Transfer, codes};
use crate::domain::settlement::{LegKind, LegStatus, Phase};
use crate::ports::custody::{CustodyTransfer, Decision, Distribution, DistributionEntry};
use crate::ports::partner::PartnerError;

impl Settlements {
    /// Posts the charged part of each hold (the rest is released), or voids it.
    pub(super) async fn money_legs(&self, mut state: SettlementState, version: u64) -> Result<Next, SettlementError> {
        let (page, next) = self.allocations.allocations(&state.deal_id, LEGS_PAGE, state.cursor.clone()).await?;
        let transfers: Vec<Transfer> = page.iter().map(|a| money_leg(&state, a)).collect();
        let now = self.clock.now();
        let results = page
            .iter()
            .zip(&transfers)
            .map(|(a, t)| {
                let notice = Notice::AllocationResult {
                    deal_name: state.deal_name.clone(),
                    subscription_id: a.subscription_id.clone(),
                    requested: a.requested,
                    allocated: a.units(),
                    ratio: state.ratio.clone(),
                    unit_price: a.unit_price,
                    charged: a.charged(),
                    refunded: a.refunded(),
                    at: now,
                };
                notices::write(&t.id, Audience::Investor(a.investor_id.clone()), notice, now)
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (chunk, noted) in transfers.chunks(MAX_LINKED).zip(results.chunks(MAX_LINKED)) {
            self.ledger.submit_with(chunk, &[], noted).await?;
        }
        state.settled += page.len() as u64;
        state.charged += page.iter().map(|a| u128::from(a.charged())).sum::<u128>();
        state.refunded += page.iter().map(|a| u128::from(a.refunded())).sum::<u128>();
        state.cursor = next.clone();
        if next.is_none() {
            state.phase = Phase::after_legs(state.charged);
        }
        self.save(state, version).await?;
        Ok(Next::Continue)
    }

    /// The proceeds to the issuer: held in the ledger, booked at the Custody (looked up
    /// first after an unanswered attempt), then posted.
    pub(super) async fn proceeds(&self, mut state: SettlementState, version: u64) -> Result<Next, SettlementError> {
        let leg = self.open_leg(&state.deal_id, LegKind::Proceeds).await?;
        let amount = Amount::try_from(state.charged).map_err(|_| LedgerError::Invalid("proceeds too large".into()))?;
        let hold = Transfer::pending(
            format!("settle:{}:proceeds", state.deal_id),
            &state.escrow_account,
            &state.issuer_account,
            amount,
            SGD,
            codes::PROCEEDS,
        )
        .with_reference(&leg.reference);
        if leg.status != LegStatus::Confirmed {
            if self.waits_for_operator(&leg).await? {
                return Ok(Next::Wait);
            }
            self.ledger.submit(&hold).await?;
            let booked = match leg.attempts {
                0 => None,
                _ => match self.custody.find_transfer(&leg.reference).await {
                    Ok(found) => found,
                    Err(e) => return self.leg_failed(&leg, &e).await,
                },
            };
            if booked.is_none() {
                let transfer = CustodyTransfer {
                    reference: leg.reference.clone(),
                    debit: state.escrow_account.clone(),
                    credit: state.issuer_account.clone(),
                    asset: SGD.to_owned(),
                    amount,
                };
                match self.custody.transfer(&transfer).await {
                    Ok(_) => {}
                    // The reference is taken: booked by an attempt whose answer was lost,
                    // or still in flight. Found, it is booked; not yet, it is retried.
                    Err(PartnerError::Conflict(_)) => match self.custody.find_transfer(&leg.reference).await {
                        Ok(Some(_)) => {}
                        Ok(None) => return self.leg_failed(&leg, &PartnerError::Timeout).await,
                        Err(e) => return self.leg_failed(&leg, &e).await,
                    },
                    Err(e) => return self.leg_failed(&leg, &e).await,
                }
            }
            self.mark_leg(&leg.id, |l| {
                l.status = LegStatus::Confirmed;
                l.last_error = None;
            })
            .await?;
        }
        self.ledger.submit(&Transfer::post(format!("{}:post", hold.id), &hold, amount)).await?;
        state.phase = Phase::Distribution;
        state.cursor = None;
        self.save(state, version).await?;
        Ok(Next::Continue)
    }

    /// Sends the distribution's pages, then submits it.
    pub(super) async fn distribution(&self, mut state: SettlementState, version: u64) -> Result<Next, SettlementError> {
        let leg = self.open_leg(&state.deal_id, LegKind::Distribution).await?;
        if self.waits_for_operator(&leg).await? {
            return Ok(Next::Wait);
        }
        let sent_all = state.pages_sent > 0 && state.cursor.is_none();
        if !sent_all {
            let (page, next) =
                self.allocations.allocations(&state.deal_id, DISTRIBUTION_PAGE, state.cursor.clone()).await?;
            let entries: Vec<DistributionEntry> = page
                .iter()
                .map(|a| DistributionEntry {
                    subscription_id: a.subscription_id.clone(),
                    account: Account::id_of(Kind::Holding, &a.investor_id, &state.asset),
                    units: a.units(),
                })
                .collect();
            if let Err(e) = self.custody.put_entries(&leg.reference, state.pages_sent, &entries).await {
                return self.leg_failed(&leg, &e).await;
            }
            state.pages_sent += 1;
            state.entries_sent += entries.len() as u64;
            state.cursor = next;
            self.save(state, version).await?;
            return Ok(Next::Continue);
        }
        let submitted = Distribution {
            reference: leg.reference.clone(),
            asset: state.asset.clone(),
            pages: state.pages_sent,
            entries: state.entries_sent,
            units: state.units,
            checksum: state.checksum.clone(),
        };
        let decision = match self.custody.decision(&leg.reference).await {
            Ok(Some(decision)) => decision,
            Ok(None) => match self.custody.submit(&submitted).await {
                Ok(decision) => decision,
                Err(e) => return self.leg_failed(&leg, &e).await,
            },
            Err(e) => return self.leg_failed(&leg, &e).await,
        };
        self.decided(state, version, decision).await
    }

    /// Polls the Custody for its decision.
    pub(super) async fn await_approval(&self, state: SettlementState, version: u64) -> Result<Next, SettlementError> {
        let leg = self.open_leg(&state.deal_id, LegKind::Distribution).await?;
        if self.waits_for_operator(&leg).await? {
            return Ok(Next::Wait);
        }
        match self.custody.decision(&leg.reference).await {
            Ok(Some(decision)) => self.decided(state, version, decision).await,
            Ok(None) => {
                // Never submitted (lost): send the pages again.
                let mut state = state;
                (state.phase, state.cursor, state.pages_sent, state.entries_sent) = (Phase::Distribution, None, 0, 0);
                self.save(state, version).await?;
                Ok(Next::Continue)
            }
            Err(e) => self.leg_failed(&leg, &e).await,
        }
    }

    /// Applies the Custody's decision on the distribution.
    pub(super) async fn decided(
        &self,
        mut state: SettlementState,
        version: u64,
        decision: Decision,
    ) -> Result<Next, SettlementError> {
        let id = leg_id(&state.deal_id, LegKind::Distribution);
        let status = match &decision {
            Decision::Pending => {
                if state.phase != Phase::AwaitingApproval {
                    state.phase = Phase::AwaitingApproval;
                    state.decision = Some(decision);
                    self.save(state, version).await?;
                }
                return Ok(Next::Wait);
            }
            decided => LegStatus::on_decision(matches!(decided, Decision::Approved)),
        };
        self.mark_leg(&id, |l| {
            l.status = status;
            l.last_error = None;
        })
        .await?;
        state.decision = Some(decision);
        state.cursor = None;
        if status == LegStatus::Rejected {
            return self.finish(state, version, Phase::Rejected).await;
        }
        state.phase = Phase::Issuing;
        state.approved_at = Some(self.clock.now());
        self.save(state, version).await?;
        Ok(Next::Continue)
    }

    /// Ends the settlement at `phase`; the deal follows on the next pass.
    pub(super) async fn finish(
        &self,
        mut state: SettlementState,
        version: u64,
        phase: Phase,
    ) -> Result<Next, SettlementError> {
        state.phase = phase;
        state.finished_at = Some(self.clock.now());
        self.save(state, version).await?;
        Ok(Next::Continue)
    }

    /// Moves the deal to where its finished settlement ended, once; until then the
    /// settlement stays on the work index, so a crash before this is nudged to it.
    pub(super) async fn move_deal(&self, mut state: SettlementState, version: u64) -> Result<(), SettlementError> {
        if state.deal_moved {
            return Ok(());
        }
        let step = if state.phase == Phase::Issued { Step::Issue } else { Step::RejectIssuance };
        self.step(&state.deal_id, step).await?;
        state.deal_moved = true;
        self.save(state, version).await?;
        Ok(())
    }

    /// Credits a page of holdings from the asset's issuance account.
    pub(super) async fn issue(&self, mut state: SettlementState, version: u64) -> Result<Next, SettlementError> {
        let (page, next) = self.allocations.allocations(&state.deal_id, MAX_LINKED, state.cursor.clone()).await?;
        let given: Vec<&Allocation> = page.iter().filter(|a| a.units() > 0).collect();
        let mut transfers = Vec::with_capacity(given.len());
        let mut issued = Vec::with_capacity(given.len());
        let now = self.clock.now();
        let custody_reference = leg_reference(&leg_id(&state.deal_id, LegKind::Distribution));
        for a in &given {
            let holding = Account::of(Kind::Holding, &a.investor_id, &state.asset);
            let transfer = Transfer::single(
                issue_transfer_id(&state.deal_id, &a.subscription_id),
                &state.issuance_account,
                &holding.id,
                a.units(),
                &state.asset,
                codes::ISSUANCE,
            )
            .with_reference(&a.subscription_id);
            let notice = Notice::DabsIssued {
                deal_name: state.deal_name.clone(),
                asset: state.asset.clone(),
                subscription_id: a.subscription_id.clone(),
                units: a.units(),
                unit_price: a.unit_price,
                custody_reference: custody_reference.clone(),
                chain_record: transfer.id.clone(),
                at: now,
            };
            issued.push(notices::write(&transfer.id, Audience::Investor(a.investor_id.clone()), notice, now)?);
            transfers.push(transfer);
            self.ledger.open(holding).await?;
        }
        if !transfers.is_empty() {
            self.ledger.submit_with(&transfers, &[], &issued).await?;
        }
        state.issued += given.len() as u64;
        state.issued_units += given.iter().map(|a| u128::from(a.units())).sum::<u128>();
        state.cursor = next.clone();
        if next.is_none() {
            return self.finish(state, version, Phase::Issued).await;
        }
        self.save(state, version).await?;
        Ok(Next::Continue)
    }
}

/// A subscription's money leg: post what it was charged (the rest is released), or void.
fn money_leg(state: &SettlementState, a: &Allocation) -> Transfer {
    let hold = hold_of(&a.subscription_id, &a.investor_id, &state.escrow_account, a.held);
    let id = format!("settle:{}:{}", state.deal_id, a.subscription_id);
    match a.charged() {
        0 => Transfer::void(format!("{id}:void"), &hold),
        charged => Transfer::post(format!("{id}:post"), &hold, charged),
    }
}
