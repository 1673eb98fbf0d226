//! Pro-rata allocation as pure, exact rules.
//!
//! A deal offers `supply` whole units; its live subscriptions request `requested` in
//! total. If that is not more than the supply, every subscription gets what it asked
//! for and the rest stays unissued. Otherwise each subscription's exact share is
//! `units x supply / requested`: it gets the floor, and the units the floors leave over
//! go one each to the largest remainders (ties: the earlier subscription, then the lower
//! id). Everything is integer arithmetic in `u128`; the ratio with 15 decimals is for
//! display and audit only.
//!
//! The rules are written so a book can be allocated a batch at a time: a share needs only
//! the book's totals, the leftover is `supply - sum of floors`, the order of remainders is
//! a sort key an index can keep, and the checksum of a result is a sum, the same in any
//! order.

/// Decimal places of the displayed ratio.
pub const RATIO_DECIMALS: u32 = 15;

/// A book's totals: all a share needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub supply: u64,
    /// Units requested by every live subscription together.
    pub requested: u128,
}

/// One subscription's share before the leftover units are handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// Whole units it is certain to get.
    pub floor: u64,
    /// The fraction's numerator over `requested` (zero when not oversubscribed).
    pub remainder: u128,
}

impl Totals {
    pub fn oversubscribed(&self) -> bool {
        self.requested > u128::from(self.supply)
    }

    /// The share of a subscription for `units`.
    pub fn share(&self, units: u64) -> Share {
        if !self.oversubscribed() {
            return Share { floor: units, remainder: 0 };
        }
        let exact = u128::from(units) * u128::from(self.supply);
        // floor <= units because supply < requested.
        Share { floor: (exact / self.requested) as u64, remainder: exact % self.requested }
    }

    /// Units left after every floor: handed out one each to the largest remainders.
    pub fn leftover(&self, floors: u128) -> u64 {
        if self.oversubscribed() { (u128::from(self.supply) - floors.min(u128::from(self.supply))) as u64 } else { 0 }
    }

    /// What every subscription receives per unit requested, min(1, supply / requested),
    /// with [`RATIO_DECIMALS`] decimals, truncated: for display and audit.
    pub fn ratio(&self) -> String {
        let scale = 10u128.pow(RATIO_DECIMALS);
        let scaled = if self.requested == 0 || !self.oversubscribed() {
            scale
        } else {
            u128::from(self.supply) * scale / self.requested
        };
        format!("{}.{:0width$}", scaled / scale, scaled % scale, width = RATIO_DECIMALS as usize)
    }
}

/// A sort key that orders subscriptions as the leftover units are handed out: largest
/// remainder first, then the earlier subscription, then the lower id. `created` must
/// itself sort as the times do.
pub fn rank_key(remainder: u128, created: &str, id: &str) -> String {
    format!("{:039}#{created}#{id}", u128::MAX - remainder)
}

/// One subscription's contribution to a result's checksum.
pub fn digest(subscription_id: &str, units: u64) -> u128 {
    let mut hash = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    hash.update(subscription_id.as_bytes());
    hash.update(&[0]);
    hash.update(&units.to_be_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&hash.finish().as_ref()[..16]);
    u128::from_be_bytes(first)
}

/// A result's checksum: the wrapping sum of every subscription's [`digest`], so batches
/// add their parts in any order and the leftover pass swaps a floor's part for floor + 1's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checksum(pub u128);

impl Checksum {
    pub fn add(&mut self, subscription_id: &str, units: u64) {
        self.0 = self.0.wrapping_add(digest(subscription_id, units));
    }

    pub fn remove(&mut self, subscription_id: &str, units: u64) {
        self.0 = self.0.wrapping_sub(digest(subscription_id, units));
    }

    pub fn combine(self, other: Checksum) -> Checksum {
        Checksum(self.0.wrapping_add(other.0))
    }

    pub fn hex(self) -> String {
        format!("{:032x}", self.0)
    }

    pub fn parse(text: &str) -> Option<Self> {
        (text.len() == 32).then(|| u128::from_str_radix(text, 16).ok().map(Self)).flatten()
    }
}

/// One subscription as the whole-book rule sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: String,
    /// Sorts as the subscription times do.
    pub created: String,
    pub units: u64,
}

/// The whole book allocated at once, in the order given: the rule the batched allocation
/// must agree with (tests compare the two).
pub fn allocate(supply: u64, book: &[Request]) -> Vec<u64> {
    let totals = Totals { supply, requested: book.iter().map(|r| u128::from(r.units)).sum() };
    let shares: Vec<Share> = book.iter().map(|r| totals.share(r.units)).collect();
    let mut units: Vec<u64> = shares.iter().map(|s| s.floor).collect();
    let leftover = totals.leftover(shares.iter().map(|s| u128::from(s.floor)).sum());
    let mut order: Vec<usize> = (0..book.len()).collect();
    order.sort_by_cached_key(|&i| rank_key(shares[i].remainder, &book[i].created, &book[i].id));
    for &i in order.iter().take(leftover as usize) {
        units[i] += 1;
    }
    units
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn request(id: &str, created: &str, units: u64) -> Request {
        Request { id: id.into(), created: created.into(), units }
    }

    #[test]
    fn a_hand_checked_book_with_ties() {
        // Supply 10, requested 3 + 3 + 3 + 6 = 15: 3 x 10 / 15 = 2 and 6 x 10 / 15 = 4
        // exactly, so nothing is left over.
        let book = [request("a", "1", 3), request("b", "2", 3), request("c", "3", 3), request("d", "4", 6)];
        assert_eq!(allocate(10, &book), [2, 2, 2, 4]);

        // Supply 10, requested 7 x 3 = 21: each share is 30/21 = 1 + 9/21. Floors give 7,
        // leaving 3 for seven equal remainders: the three earliest get them.
        let book: Vec<Request> = (0..7).map(|i| request(&format!("s{i}"), &format!("2026-01-0{}", 7 - i), 3)).collect();
        // Created times run backwards, so the earliest are the last three.
        assert_eq!(allocate(10, &book), [1, 1, 1, 1, 2, 2, 2]);

        // Equal remainders at the same time: the lower id wins.
        let book = [request("b", "t", 1), request("a", "t", 1), request("c", "t", 1)];
        assert_eq!(allocate(2, &book), [1, 1, 0]);

        // Supply 100; requests 50, 30, 25 (105): shares 47.619..., 28.571..., 23.809...
        // floors 47 + 28 + 23 = 98, leftover 2 to remainders 0.809 (third) and 0.619 (first).
        let book = [request("x", "1", 50), request("y", "2", 30), request("z", "3", 25)];
        assert_eq!(allocate(100, &book), [48, 28, 24]);
        let totals = Totals { supply: 100, requested: 105 };
        assert_eq!(totals.ratio(), "0.952380952380952");
        assert_eq!(Totals { supply: 100, requested: 40 }.ratio(), "1.000000000000000");
    }

    #[test]
    fn undersubscribed_books_get_what_they_asked_for() {
        let book = [request("a", "1", 5), request("b", "2", 7)];
        assert_eq!(allocate(100, &book), [5, 7]);
        assert_eq!(allocate(12, &book), [5, 7], "exactly subscribed");
        let exactly = Totals { supply: 12, requested: 12 };
        assert!(!exactly.oversubscribed(), "as many units asked for as offered is not oversubscribed");
        assert!(Totals { supply: 12, requested: 13 }.oversubscribed());
    }

    #[test]
    fn checksums_add_in_any_order() {
        let (mut one, mut two) = (Checksum::default(), Checksum::default());
        one.add("a", 1);
        one.add("b", 2);
        two.add("b", 2);
        two.add("a", 0);
        two.remove("a", 0);
        two.add("a", 1);
        assert_eq!(one, two);
        assert_eq!(Checksum::parse(&one.hex()), Some(one));
        assert_ne!(one.hex(), Checksum::default().hex());
    }

    /// A checksum that did not tell allocations apart would let a wrong result settle.
    #[test]
    fn a_different_allocation_has_a_different_checksum() {
        let checksum = |parts: &[(&str, u64)]| {
            let mut sum = Checksum::default();
            parts.iter().for_each(|(id, units)| sum.add(id, *units));
            sum
        };
        let result = checksum(&[("a", 3), ("b", 4)]);
        assert_ne!(result, checksum(&[("a", 4), ("b", 3)]), "units moved between subscriptions");
        assert_ne!(result, checksum(&[("a", 3), ("b", 5)]), "one unit more");
        assert_ne!(result, checksum(&[("a", 3), ("c", 4)]), "another subscription");
        assert_ne!(digest("a", 1), digest("a", 2));
        assert_ne!(digest("a", 1), digest("b", 1));
        // Batches add their parts separately; combined, they are the whole result's.
        let (first, second) = (checksum(&[("a", 3)]), checksum(&[("b", 4)]));
        assert_eq!(first.combine(second), result);
    }

    fn books() -> impl Strategy<Value = (u64, Vec<u64>)> {
        (1u64..5_000, prop::collection::vec(1u64..1_000, 0..200))
    }

    proptest! {
        #[test]
        fn allocation_is_exact_and_fair((supply, units) in books()) {
            let book: Vec<Request> = units
                .iter()
                .enumerate()
                .map(|(i, &u)| request(&format!("s{i:04}"), &format!("{:04}", i % 17), u))
                .collect();
            let got = allocate(supply, &book);
            let requested: u128 = units.iter().map(|&u| u128::from(u)).sum();
            let total: u128 = got.iter().map(|&u| u128::from(u)).sum();
            if requested > u128::from(supply) {
                prop_assert_eq!(total, u128::from(supply));
            } else {
                prop_assert_eq!(total, requested);
            }
            for (&asked, &given) in units.iter().zip(&got) {
                prop_assert!(given <= asked);
                let exact_floor = if requested > u128::from(supply) {
                    u128::from(asked) * u128::from(supply) / requested
                } else {
                    u128::from(asked)
                };
                let given = u128::from(given);
                prop_assert!(given == exact_floor || given == exact_floor + 1, "floor or floor + 1");
            }
            // Every subscription that got a leftover unit ranks before every one that did not.
            let totals = Totals { supply, requested };
            let ranked = |i: usize| rank_key(totals.share(units[i]).remainder, &book[i].created, &book[i].id);
            let (bonus, plain): (Vec<usize>, Vec<usize>) =
                (0..book.len()).partition(|&i| u128::from(got[i]) > u128::from(totals.share(units[i]).floor));
            if let (Some(worst), Some(best)) = (bonus.iter().map(|&i| ranked(i)).max(), plain.iter().map(|&i| ranked(i)).min()) {
                prop_assert!(worst < best);
            }
        }
    }
}
