//! What was in flight at a cut-off: the transfers a partner had not taken yet, the units
//! the Custody booked at approval that the ledger had not issued, and the DABS locked in
//! open orders. Each explains a difference as timing, not as a break.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Utc};

use super::{Failure, Reconciler};
use crate::app::ledger::{CHAIN_OUTBOX, sortable};
use crate::app::mirror::{DELIVERED, Delivered, Outboxed, at_custody, booked_at_custody};
use crate::app::settlement::{ISSUANCES, Issuance, issue_transfer_id};
use crate::domain::ledger::{Account, Kind};
use crate::domain::reconcile::{Class, Pending, Position, RuleId, custody_rule};
use crate::ports::chain::ChainTransfer;
use crate::ports::store::{self, Query, Range};

/// Where a transfer posted by the cut-off stood with its partners at the cut-off.
struct Flight {
    record: ChainTransfer,
    /// The chain had not recorded it in the block at the cut-off.
    chain: bool,
    /// The Custody had not booked it by the cut-off.
    custody: bool,
}

impl Flight {
    /// What it leaves each reconciled position expecting: the partner that has not taken
    /// it holds the debited amount still, and not the credited one.
    fn pending(&self) -> impl Iterator<Item = Pending> + '_ {
        let r = &self.record;
        let chain = self.chain.then(|| (RuleId::ChainRecordPending, r.debit.clone(), r.credit.clone()));
        // The Custody books a trade's legs between the owners' own accounts (see `at_custody`).
        let custody = at_custody(r).filter(|_| self.custody).map(|t| (custody_rule(r.code), t.debit, t.credit));
        [chain, custody].into_iter().flatten().flat_map(move |(rule, debit, credit)| {
            [(debit, 1), (credit, -1)].into_iter().filter(|(account, _)| Class::of(account).is_some()).map(
                move |(account, sign)| Pending {
                    position: Position::new(account, r.asset.clone()),
                    rule,
                    amount: sign * i128::from(r.amount),
                    since: r.at,
                },
            )
        })
    }
}

impl Reconciler {
    /// What was in flight at the cut-off, per asset, in position order: transfers posted
    /// by then that the chain (in the block at the cut-off) or the Custody (by the cut-off)
    /// had not taken, from the mirror's outbox and its record of deliveries, and DABS locked
    /// in orders open at the cut-off. The outbox is read before the deliveries, so a record
    /// delivered in between is seen; it is a small set (what was in flight), held in memory.
    pub(super) async fn in_flight(
        &self,
        cut_off: DateTime<Utc>,
        height: u64,
    ) -> Result<BTreeMap<String, VecDeque<Pending>>, Failure> {
        let mut flights: BTreeMap<String, Flight> = BTreeMap::new();
        let posted_by = Range::AtMost(format!("{}\u{10FFFF}", sortable(cut_off)));
        store::each(self.store.as_ref(), &Query::secondary(CHAIN_OUTBOX).range(posted_by), |item| {
            let waiting: Outboxed = item.decode()?;
            let flight = Flight {
                chain: waiting.chain_height.is_none_or(|h| h > height),
                custody: booked_at_custody(&waiting.record),
                record: waiting.record,
            };
            flights.insert(flight.record.transfer_id.clone(), flight);
            Ok(())
        })
        .await?;
        let delivered_since = Query::secondary(DELIVERED).range(Range::AtLeast(sortable(cut_off)));
        store::each(self.store.as_ref(), &delivered_since, |item| {
            let delivered: Delivered = item.decode()?;
            if delivered.record.at <= cut_off {
                let flight = Flight {
                    chain: delivered.chain_height > height,
                    custody: delivered.custody_at.is_some_and(|at| at > cut_off),
                    record: delivered.record,
                };
                flights.insert(flight.record.transfer_id.clone(), flight);
            }
            Ok(())
        })
        .await?;
        let locks = self.locks.open_at(cut_off).await?;
        let mut pending: Vec<Pending> = flights.values().flat_map(Flight::pending).collect();
        pending.extend(self.issuing(cut_off).await?);
        pending.extend(locks.iter().map(|lock| Pending {
            position: Position::new(lock.holding(), lock.asset.clone()),
            rule: RuleId::DabsLockedInOrder,
            amount: i128::from(lock.units_at(cut_off)),
            since: lock.locked_at,
        }));
        pending.sort_by(|a, b| a.position.cmp(&b.position));
        let mut by_asset: BTreeMap<String, VecDeque<Pending>> = BTreeMap::new();
        for p in pending {
            by_asset.entry(p.position.asset.clone()).or_default().push_back(p);
        }
        Ok(by_asset)
    }

    /// Units the Custody booked when it approved a distribution and the ledger had not
    /// issued by the cut-off: for each distribution approved by then and not wholly issued
    /// by then, each allocation whose issuance transfer was not posted by the cut-off.
    async fn issuing(&self, cut_off: DateTime<Utc>) -> Result<Vec<Pending>, Failure> {
        let mut issuances = Vec::new();
        let approved_by = Range::AtMost(format!("{}\u{10FFFF}", sortable(cut_off)));
        store::each(self.store.as_ref(), &Query::secondary(ISSUANCES).range(approved_by), |item| {
            let issuance: Issuance = item.decode()?;
            if issuance.issuing_at(cut_off) {
                issuances.push(issuance);
            }
            Ok(())
        })
        .await?;
        let mut pending = Vec::new();
        for issuance in issuances {
            let mut cursor = None;
            loop {
                let (page, next) = self.allocations.allocations(&issuance.deal_id, 100, cursor).await?;
                for a in page.iter().filter(|a| a.units() > 0) {
                    let issued =
                        self.ledger.transfer(&issue_transfer_id(&issuance.deal_id, &a.subscription_id)).await?;
                    if issued.is_none_or(|record| record.at > cut_off) {
                        pending.push(Pending {
                            position: Position::new(
                                Account::id_of(Kind::Holding, &a.investor_id, &issuance.asset),
                                issuance.asset.clone(),
                            ),
                            rule: RuleId::SettlementLegPending,
                            amount: i128::from(a.units()),
                            since: issuance.approved_at,
                        });
                    }
                }
                match next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        Ok(pending)
    }
}
