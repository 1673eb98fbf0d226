//! Who may do what: one pure function over (principal, action, resource) that every
//! route calls, with the reason for its answer.

use serde::{Deserialize, Serialize};

/// Operator and issuer roles. Investors have none; their verification level decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    SuperAdmin,
    CoOperator,
    MemberManagement,
    Deal,
    Finance,
    Issuer,
    /// Break-glass access to personal data (an investor's decrypted Myinfo record), each
    /// use with a reason and audited.
    DataProtection,
}

impl Role {
    pub const ALL: [Role; 7] = [
        Self::SuperAdmin,
        Self::CoOperator,
        Self::MemberManagement,
        Self::Deal,
        Self::Finance,
        Self::Issuer,
        Self::DataProtection,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SuperAdmin => "super-admin",
            Self::CoOperator => "co-operator",
            Self::MemberManagement => "member-management",
            Self::Deal => "deal",
            Self::Finance => "finance",
            Self::Issuer => "issuer",
            Self::DataProtection => "data-protection",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// Investor verification levels.
pub const LEVEL_REGISTERED: u8 = 1;
pub const LEVEL_SECOND_FACTOR: u8 = 2;
pub const LEVEL_ACCREDITED: u8 = 3;

/// Everything a route can ask to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Read or change one's own profile, sessions, second factor.
    ManageOwnAccount,
    /// Read something that belongs to a user (subscriptions, holdings, statements).
    ReadOwned,
    /// Subscribe to a deal.
    Subscribe,
    /// Withdraw from one's deposit account.
    Withdraw,
    ListUsers,
    /// Propose granting or removing an operator role (maker).
    ProposeRoleChange,
    /// Propose verification level 3 after a manual review (maker).
    ProposeAccreditation,
    /// Approve or reject someone else's change request (checker).
    DecideChangeRequest,
    ListChangeRequests,
    ReadAudit,
    ManageDeals,
    ReviewIssuers,
    ManageSettlement,
    ManageReconciliation,
    ReadLedger,
    /// Act for an issuer: its onboarding, its deals' documents and reports.
    ActForIssuer,
    /// Rotate the token keys at once (an emergency: a key or the refresh secret leaked).
    RotateKeys,
    /// Read an offering's terms (price, supply, documents, window): opted-in accredited
    /// investors only (SFA s275 forbids offering to the public).
    ReadOffers,
    /// Read a person's decrypted Myinfo data, or erase it (break-glass).
    RevealPersonalData,
    /// Start Myinfo onboarding (a second factor first: level 2).
    Onboard,
}

/// What the action is about, for object-level checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource<'a> {
    None,
    /// Something owned by this user id.
    OwnedBy(&'a str),
    /// A change request: who proposed it, and the user it is about, if any.
    Change {
        proposed_by: &'a str,
        about: Option<&'a str>,
    },
    /// Something that belongs to this issuer.
    OfIssuer(&'a str),
}

/// The caller, as far as access is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject<'a> {
    pub user_id: &'a str,
    pub roles: &'a [Role],
    pub level: u8,
    /// The issuer an issuer user belongs to.
    pub issuer_id: Option<&'a str>,
    /// The session's login proved a second factor (from the token, not the user's level:
    /// a session that began before enrolment carries none).
    pub second_factor: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow(&'static str),
    Deny(&'static str),
}

impl Decision {
    pub fn is_allowed(self) -> bool {
        matches!(self, Self::Allow(_))
    }

    pub fn reason(self) -> &'static str {
        match self {
            Self::Allow(reason) | Self::Deny(reason) => reason,
        }
    }
}

/// The operators' role whose members are asked to act on `action` (the one besides the
/// super-admin's); `None` for an action no operator role holds.
pub fn responsible_role(action: Action) -> Option<Role> {
    operator_roles(action).iter().copied().find(|r| *r != Role::SuperAdmin)
}

/// The roles that may perform an operator action.
fn operator_roles(action: Action) -> &'static [Role] {
    use Role::*;
    match action {
        Action::ListUsers => &[SuperAdmin, CoOperator, MemberManagement],
        Action::ProposeRoleChange => &[SuperAdmin, MemberManagement],
        Action::ProposeAccreditation => &[SuperAdmin, MemberManagement],
        Action::DecideChangeRequest | Action::ListChangeRequests => &[SuperAdmin, CoOperator],
        Action::ReadAudit => &[SuperAdmin, CoOperator],
        Action::RotateKeys => &[SuperAdmin],
        Action::RevealPersonalData => &[DataProtection],
        Action::ManageDeals | Action::ReviewIssuers => &[SuperAdmin, Deal],
        Action::ManageSettlement | Action::ManageReconciliation | Action::ReadLedger => &[SuperAdmin, Finance],
        Action::ManageOwnAccount
        | Action::ReadOwned
        | Action::Subscribe
        | Action::Withdraw
        | Action::ActForIssuer
        | Action::ReadOffers
        | Action::Onboard => &[],
    }
}

/// Decides whether `subject` may do `action` on `resource`.
pub fn decide(subject: &Subject<'_>, action: Action, resource: Resource<'_>) -> Decision {
    match action {
        Action::ManageOwnAccount => Decision::Allow("every signed-in user manages their own account"),
        Action::ReadOwned => match resource {
            Resource::OwnedBy(owner) if owner == subject.user_id => Decision::Allow("it is the caller's own"),
            _ => Decision::Deny("it belongs to someone else"),
        },
        Action::Subscribe if subject.level < LEVEL_ACCREDITED => {
            Decision::Deny("subscribing needs verification level 3")
        }
        Action::Subscribe if !subject.second_factor => {
            Decision::Deny("subscribing needs a login with the second factor")
        }
        Action::Subscribe => Decision::Allow("verified accredited investor"),
        Action::Withdraw if subject.level >= LEVEL_SECOND_FACTOR && subject.second_factor => {
            Decision::Allow("second factor proved at login")
        }
        Action::Withdraw => Decision::Deny("withdrawing needs a login with the second factor (level 2)"),
        Action::Onboard if subject.level >= LEVEL_SECOND_FACTOR && subject.second_factor => {
            Decision::Allow("second factor proved at login")
        }
        Action::Onboard => Decision::Deny("onboarding needs a login with the second factor (level 2)"),
        Action::ReadOffers if subject.level >= LEVEL_ACCREDITED => Decision::Allow("opted-in accredited investor"),
        Action::ReadOffers => Decision::Deny("offer terms are for opted-in accredited investors only"),
        Action::ActForIssuer => match (resource, subject.issuer_id) {
            _ if !subject.roles.contains(&Role::Issuer) => Decision::Deny("the caller is not an issuer user"),
            _ if !subject.second_factor => Decision::Deny("issuer users need a login with the second factor"),
            (Resource::OfIssuer(issuer), Some(own)) if issuer == own => Decision::Allow("the caller's own issuer"),
            _ => Decision::Deny("issuer users act only for their own issuer"),
        },
        operator_action => {
            let allowed = operator_roles(operator_action);
            if !subject.roles.iter().any(|role| allowed.contains(role)) {
                return Decision::Deny("the caller has no role for this action");
            }
            if !subject.second_factor {
                return Decision::Deny("operators need a login with the second factor");
            }
            if let Resource::Change { proposed_by, about } = resource {
                if proposed_by == subject.user_id {
                    return Decision::Deny("a change needs a second operator: no self-approval");
                }
                if about == Some(subject.user_id) {
                    return Decision::Deny("a checker may not approve a change about themselves");
                }
            }
            Decision::Allow("the caller's role allows it")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;

    /// Every (role or level, action) pair and its expected answer, on a resource that is
    /// not the caller's own and a change proposed by someone else.
    #[test]
    fn every_role_and_level_gets_the_expected_decision_for_every_action() {
        let actions = [
            ManageOwnAccount,
            ReadOwned,
            Subscribe,
            Withdraw,
            ListUsers,
            ProposeRoleChange,
            ProposeAccreditation,
            DecideChangeRequest,
            ListChangeRequests,
            ReadAudit,
            ManageDeals,
            ReviewIssuers,
            ManageSettlement,
            ManageReconciliation,
            ReadLedger,
            ActForIssuer,
            RotateKeys,
            ReadOffers,
            RevealPersonalData,
            Onboard,
        ];
        // Columns in the order of `actions`: A allowed, - denied.
        // The issuer column asks about the caller's own issuer (`iss_1`).
        // (who, roles, level, second factor proved at login, expected).
        let table: [(&str, &[Role], u8, bool, &str); 18] = [
            ("investor level 1", &[], 1, false, "A-------------------"),
            ("investor level 2", &[], 2, true, "A--A---------------A"),
            ("investor level 2, session before enrolment", &[], 2, false, "A-------------------"),
            ("investor level 3", &[], 3, true, "A-AA-------------A-A"),
            ("investor level 3, no second factor", &[], 3, false, "A----------------A--"),
            ("super-admin", &[Role::SuperAdmin], 2, true, "A--AAAAAAAAAAAA-A--A"),
            ("super-admin without second factor", &[Role::SuperAdmin], 1, false, "A-------------------"),
            ("super-admin at level 2, session before enrolment", &[Role::SuperAdmin], 2, false, "A-------------------"),
            ("co-operator", &[Role::CoOperator], 2, true, "A--AA--AAA---------A"),
            ("member-management", &[Role::MemberManagement], 2, true, "A--AAAA------------A"),
            ("deal", &[Role::Deal], 2, true, "A--A------AA-------A"),
            ("finance", &[Role::Finance], 2, true, "A--A--------AAA----A"),
            ("issuer", &[Role::Issuer], 2, true, "A--A-----------A---A"),
            ("issuer without second factor", &[Role::Issuer], 2, false, "A-------------------"),
            ("deal without second factor", &[Role::Deal], 1, false, "A-------------------"),
            ("finance and deal", &[Role::Finance, Role::Deal], 2, true, "A--A------AAAAA----A"),
            ("data-protection", &[Role::DataProtection], 2, true, "A--A--------------AA"),
            ("data-protection without second factor", &[Role::DataProtection], 2, false, "A-------------------"),
        ];
        for (who, roles, level, second_factor, expected) in table {
            let subject = Subject { user_id: "usr_me", roles, level, issuer_id: Some("iss_1"), second_factor };
            let got: String = actions
                .iter()
                .map(|action| {
                    let resource = match action {
                        ReadOwned => Resource::OwnedBy("usr_other"),
                        DecideChangeRequest => Resource::Change { proposed_by: "usr_other", about: Some("usr_third") },
                        ActForIssuer => Resource::OfIssuer("iss_1"),
                        _ => Resource::None,
                    };
                    if decide(&subject, *action, resource).is_allowed() { 'A' } else { '-' }
                })
                .collect();
            assert_eq!(got, expected, "{who}");
        }
    }

    #[test]
    fn object_level_checks_use_the_same_function() {
        let me = Subject { user_id: "usr_me", roles: &[], level: 3, issuer_id: None, second_factor: true };
        assert!(decide(&me, ReadOwned, Resource::OwnedBy("usr_me")).is_allowed());
        let denied = decide(&me, ReadOwned, Resource::OwnedBy("usr_x"));
        assert_eq!(denied, Decision::Deny("it belongs to someone else"));
        assert_eq!(denied.reason(), "it belongs to someone else", "the reason the caller is told");
        let checker =
            Subject { user_id: "usr_me", roles: &[Role::CoOperator], level: 2, issuer_id: None, second_factor: true };
        assert_eq!(
            decide(&checker, DecideChangeRequest, Resource::Change { proposed_by: "usr_me", about: None }),
            Decision::Deny("a change needs a second operator: no self-approval")
        );
        assert_eq!(
            decide(&checker, DecideChangeRequest, Resource::Change { proposed_by: "usr_x", about: Some("usr_me") }),
            Decision::Deny("a checker may not approve a change about themselves")
        );
        let issuer = Subject {
            user_id: "usr_me",
            roles: &[Role::Issuer],
            level: 2,
            issuer_id: Some("iss_1"),
            second_factor: true,
        };
        assert!(decide(&issuer, ActForIssuer, Resource::OfIssuer("iss_1")).is_allowed());
        assert_eq!(
            decide(&issuer, ActForIssuer, Resource::OfIssuer("iss_2")),
            Decision::Deny("issuer users act only for their own issuer")
        );
        let unattached = Subject { issuer_id: None, ..issuer };
        assert!(!decide(&unattached, ActForIssuer, Resource::OfIssuer("iss_1")).is_allowed());
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
