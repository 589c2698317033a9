"""The marketing service's error catalogue: stable codes, HTTP status, title, retryable."""

from __future__ import annotations

from libs.common.errors import IDENTITY_INVALID, IDENTITY_MISSING, ErrorSpec

INVALID_STOCK = ErrorSpec("invalid_stock", 422, "The coupon stock definition is not valid")
FUNDING_NOT_ALLOWED = ErrorSpec("funding_not_allowed", 403, "A merchant may only fund its own coupons for itself")
CAMPAIGN_NOT_FOUND = ErrorSpec("campaign_not_found", 404, "No such campaign")
STOCK_NOT_FOUND = ErrorSpec("stock_not_found", 404, "No such coupon stock")
INVALID_STOCK_TRANSITION = ErrorSpec("invalid_stock_transition", 409, "The stock cannot make this transition now")
STOCK_NOT_RUNNING = ErrorSpec("stock_not_running", 409, "The coupon stock is not running")
BUDGET_BELOW_ISSUED = ErrorSpec("budget_below_issued", 409, "The new budget is below what is already issued")
STOCK_EXHAUSTED = ErrorSpec("stock_exhausted", 409, "The coupon stock's budget is used up")
CLAIM_LIMIT_REACHED = ErrorSpec("claim_limit_reached", 409, "This user may not claim more coupons of this stock")
DAILY_LIMIT_REACHED = ErrorSpec("daily_limit_reached", 409, "Today's quota of this stock is used up")
COUPON_NOT_FOUND = ErrorSpec("coupon_not_found", 404, "No such coupon")
COUPON_EXPIRED = ErrorSpec("coupon_expired", 422, "The coupon is outside its validity period")
COUPON_NOT_APPLICABLE = ErrorSpec("coupon_not_applicable", 422, "The coupon does not apply to this payment")
THRESHOLD_NOT_MET = ErrorSpec("threshold_not_met", 422, "The order amount is below the coupon's threshold")
COUPON_LOCKED = ErrorSpec("coupon_locked", 409, "The coupon is locked by another payment")
COUPON_USED = ErrorSpec("coupon_used", 409, "The coupon has already been used")
COUPON_VOIDED = ErrorSpec("coupon_voided", 409, "The coupon was voided (its migration run was reversed)")
REDEMPTION_NOT_FOUND = ErrorSpec("redemption_not_found", 404, "No such redemption")
LOCK_EXPIRED = ErrorSpec("lock_expired", 409, "The coupon lock expired and the coupon was taken since")
REDEMPTION_NOT_USED = ErrorSpec("redemption_not_used", 409, "Only a used redemption can be refunded")
REFUND_EXCEEDS_PAYMENT = ErrorSpec("refund_exceeds_payment", 422, "Refunds would exceed the amount paid")
UNDO_WINDOW_PASSED = ErrorSpec("undo_window_passed", 409, "The in-store redemption can no longer be undone")
BULK_ISSUE_NOT_FOUND = ErrorSpec("bulk_issue_not_found", 404, "No such bulk issue")
POINTS_RULE_NOT_FOUND = ErrorSpec("points_rule_not_found", 404, "No such points rule")
POINTS_NOT_EXCHANGEABLE = ErrorSpec("points_not_exchangeable", 422, "This stock's coupons are not offered for points")
POINTS_INSUFFICIENT = ErrorSpec("points_insufficient", 409, "Not enough unexpired points for this exchange")
TOPUP_PROMOTION_NOT_FOUND = ErrorSpec("topup_promotion_not_found", 404, "No such top-up promotion")
REWARD_RULE_NOT_FOUND = ErrorSpec("reward_rule_not_found", 404, "No such reward rule")
INVALID_TOPUP_PROMOTION = ErrorSpec("invalid_topup_promotion", 422, "The top-up promotion's rules are inconsistent")
CHANNEL_USER_REQUIRED = ErrorSpec(
    "channel_user_required", 422, "A channel stock's coupon needs the user's id at that channel (channel_user)"
)
CHANNEL_REFUSED = ErrorSpec("channel_refused", 422, "The channel refused the coupon request")
CHANNEL_UNAVAILABLE = ErrorSpec(
    "channel_unavailable", 503, "The channel (or the cashier that calls it) could not answer; try again", retryable=True
)

ERRORS: tuple[ErrorSpec, ...] = (
    INVALID_STOCK,
    FUNDING_NOT_ALLOWED,
    CAMPAIGN_NOT_FOUND,
    STOCK_NOT_FOUND,
    INVALID_STOCK_TRANSITION,
    STOCK_NOT_RUNNING,
    BUDGET_BELOW_ISSUED,
    STOCK_EXHAUSTED,
    CLAIM_LIMIT_REACHED,
    DAILY_LIMIT_REACHED,
    COUPON_NOT_FOUND,
    COUPON_EXPIRED,
    COUPON_NOT_APPLICABLE,
    THRESHOLD_NOT_MET,
    COUPON_LOCKED,
    COUPON_USED,
    COUPON_VOIDED,
    REDEMPTION_NOT_FOUND,
    LOCK_EXPIRED,
    REDEMPTION_NOT_USED,
    REFUND_EXCEEDS_PAYMENT,
    UNDO_WINDOW_PASSED,
    BULK_ISSUE_NOT_FOUND,
    POINTS_RULE_NOT_FOUND,
    POINTS_NOT_EXCHANGEABLE,
    POINTS_INSUFFICIENT,
    TOPUP_PROMOTION_NOT_FOUND,
    INVALID_TOPUP_PROMOTION,
    REWARD_RULE_NOT_FOUND,
    CHANNEL_USER_REQUIRED,
    CHANNEL_REFUSED,
    CHANNEL_UNAVAILABLE,
    IDENTITY_MISSING,
    IDENTITY_INVALID,
)
