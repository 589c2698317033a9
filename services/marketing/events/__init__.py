"""Events the marketing service publishes (types and payloads) and its consumers.

Every coupon event goes to `marketing.coupons`, keyed by the coupon id (one coupon's events stay in order),
written to the outbox in the transaction of the change. Payloads: README "Events"."""

from __future__ import annotations

COUPONS_TOPIC = "marketing.coupons"

COUPON_CLAIMED = "coupon.claimed"
COUPON_LOCKED = "coupon.locked"
COUPON_USED = "coupon.used"
COUPON_RELEASED = "coupon.released"
COUPON_REFUNDED = "coupon.refunded"
COUPON_RETURNED = "coupon.returned"
COUPON_REDEMPTION_UNDONE = "coupon.redemption_undone"

# Points instructions for the ledger (the balance lives in the user's points sub-account there), keyed by
# the payment id so a payment's grant and its reversals stay in order.
POINTS_TOPIC = "marketing.points"
POINTS_EARNED = "points.earned"
POINTS_REVERSED = "points.reversed"
POINTS_EXCHANGED = "points.exchanged"  # keyed by the exchange id
POINTS_EXPIRED = "points.expired"  # keyed by the payment id (the lot), after its grant and reversals

# What marketing consumes.
CASHIER_PAYMENTS_TOPIC = "cashier.payments"
CASHIER_REFUNDS_TOPIC = "cashier.refunds"

# Top-up promotion instructions for the ledger (the bonus lives in the holder's bonus sub-account there), keyed
# by the top-up's payment id so a grant precedes its revocation.
TOPUPS_TOPIC = "marketing.topups"
TOPUP_BONUS_GRANTED = "topup.bonus_granted"
TOPUP_BONUS_REVOKED = "topup.bonus_revoked"
TOPUP_BONUS_EXPIRED = "topup.bonus_expired"
