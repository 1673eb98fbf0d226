//! The composition root of the use cases: each service is built here with just the ports
//! and services it uses (its `new` names them), so a service never sees the whole
//! platform. A function builds the services it serves once, at start, and its handlers
//! hold them.

use std::sync::Arc;

use crate::Platform;
use crate::app::accounts::Accounts;
use crate::app::allocation::{AllocationRecords, Allocator};
use crate::app::audit::AuditLog;
use crate::app::deals::Deals;
use crate::app::deposits::DepositAccounts;
use crate::app::issuers::Issuers;
use crate::app::ledger::Ledger;
use crate::app::mfa::SecondFactor;
use crate::app::mirror::ChainMirror;
use crate::app::notices::Notices;
use crate::app::orders::OrderLocks;
use crate::app::reconcile::Reconciler;
use crate::app::sessions::{SessionError, Sessions};
use crate::app::settlement::Settlements;
use crate::app::subscriptions::Subscriptions;
use crate::app::trading::Trading;
use crate::app::trading::matching::Matcher;
use crate::app::verifier::TokenVerifier;
use crate::domain::session::SessionPolicy;

impl Platform {
    pub fn ledger(&self) -> Ledger {
        Ledger::new(self.store.clone(), self.clock.clone())
    }

    pub fn audit_log(&self) -> AuditLog {
        AuditLog::new(self.store.clone(), self.clock.clone())
    }

    pub fn deals(&self) -> Deals {
        Deals::new(self.store.clone(), self.clock.clone(), self.ids.clone(), self.ledger(), self.audit_log())
    }

    pub fn deposit_accounts(&self) -> DepositAccounts {
        DepositAccounts::new(self.store.clone(), self.clock.clone(), self.bank.clone(), self.ledger())
    }

    /// Subscriptions over `deposits`, shared with whoever else moves deposit money in the
    /// same function (the omnibus account is looked up once).
    pub fn subscriptions(&self, deposits: Arc<DepositAccounts>) -> Subscriptions {
        Subscriptions::new(self.store.clone(), self.clock.clone(), self.ledger(), deposits)
    }

    pub fn issuers(&self) -> Issuers {
        Issuers::new(self.store.clone(), self.keyring.clone(), self.clock.clone(), self.ids.clone())
    }

    pub fn allocator(&self) -> Allocator {
        let subscriptions = self.subscriptions(Arc::new(self.deposit_accounts()));
        Allocator::new(self.store.clone(), self.clock.clone(), self.queue.clone(), self.deals(), subscriptions)
    }

    pub fn allocation_records(&self) -> AllocationRecords {
        AllocationRecords::new(self.store.clone())
    }

    pub fn settlements(&self) -> Settlements {
        let (store, clock) = (self.store.clone(), self.clock.clone());
        let (queue, custody) = (self.queue.clone(), self.custody.clone());
        Settlements::new(store, clock, queue, custody, self.ledger(), self.deals(), self.audit_log())
    }

    pub fn order_locks(&self) -> OrderLocks {
        OrderLocks::new(self.store.clone(), self.clock.clone(), self.ledger())
    }

    pub fn trading(&self) -> Trading {
        Trading::new(self.store.clone(), self.clock.clone(), self.queue.clone(), self.ledger())
    }

    pub fn matcher(&self) -> Matcher {
        Matcher::new(self.store.clone(), self.clock.clone(), self.ledger())
    }

    pub fn reconciler(&self) -> Reconciler {
        let (store, clock, ids) = (self.store.clone(), self.clock.clone(), self.ids.clone());
        let (chain, custody) = (self.chain.clone(), self.custody.clone());
        Reconciler::new(store, clock, ids, chain, custody, self.ledger(), self.order_locks())
    }

    pub fn chain_mirror(&self) -> ChainMirror {
        ChainMirror::new(self.store.clone(), self.chain.clone(), self.custody.clone(), self.clock.clone())
    }

    pub fn accounts(&self) -> Accounts {
        let (store, keyring, mailer) = (self.store.clone(), self.keyring.clone(), self.mailer.clone());
        Accounts::new(store, keyring, mailer, self.clock.clone(), self.ids.clone(), self.config.mail_from.clone())
    }

    pub fn onboarding(&self) -> crate::app::myinfo::Onboarding {
        crate::app::myinfo::Onboarding {
            store: self.store.clone(),
            keyring: self.keyring.clone(),
            clock: self.clock.clone(),
            ids: self.ids.clone(),
            client: self.singpass.clone(),
        }
    }

    pub fn notices(&self) -> Notices {
        Notices::new(self.store.clone(), self.queue.clone(), self.clock.clone())
    }

    pub fn second_factor(&self) -> SecondFactor {
        SecondFactor::new(self.store.clone(), self.keyring.clone(), self.clock.clone())
    }

    pub fn token_verifier(&self, policy: SessionPolicy) -> TokenVerifier {
        TokenVerifier::new(self.store.clone(), self.clock.clone(), policy)
    }

    /// Loads the token keys (unsealing the signing key is a keyring call).
    pub async fn sessions(&self, policy: SessionPolicy) -> Result<Sessions, SessionError> {
        let (store, keyring) = (self.store.clone(), self.token_keyring.clone());
        Sessions::load(store, keyring, self.clock.clone(), self.ids.clone(), policy).await
    }
}
