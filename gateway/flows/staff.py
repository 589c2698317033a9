"""Console staff at the gateway: sign-in (password, TOTP, recovery codes), sessions, invitations, password resets,
roles, the audit log, API keys from the console and maker-checker refund requests.

Why here: the gateway owns every credential of the platform (merchants' keys, users' tokens, PINs); a console
session is one more (Bearer `cst_<id>.<secret>`), and once signed in a member calls the public API like any client,
with their role checked by the gateway on every call (`gateway/domain/staff.py: api_permission`). Only the web
process (its first-party token) may exchange a password for a session. Every write here records an audit entry in
the same transaction as the change. docs/consoles.md is the description.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from gateway.config import Settings
from gateway.domain import staff as rules
from gateway.domain.access import Principal
from gateway.domain.credentials import hash_secret, secret_matches
from gateway.domain.errors import (
    API_KEY_NOT_FOUND,
    CONSOLE_ACCOUNT_LOCKED,
    CONSOLE_LINK_INVALID,
    CONSOLE_PASSWORD_REJECTED,
    CONSOLE_PERMISSION_DENIED,
    CONSOLE_SIGN_IN_FAILED,
    CONSOLE_TOTP_INVALID,
    CONSOLE_TOTP_REQUIRED,
    MERCHANT_NOT_FOUND,
    REFUND_REQUEST_NOT_FOUND,
    REFUND_REQUEST_STATE,
    REFUND_SELF_APPROVAL,
    STAFF_EXISTS,
    STAFF_LAST_OWNER,
    STAFF_NOT_FOUND,
    STAFF_ROLE_INVALID,
)
from gateway.flows.identities import STAFF_SESSION_PREFIX, Identities
from gateway.store import credentials as identity_store
from gateway.store import staff as store
from libs.common.errors import Problem
from libs.common.ids import new_id

LINK_SECRET_BYTES = 32
TOTP_TICKET_SECONDS = 300
INVITATION_PATH = "/console/invitation"
PASSWORD_RESET_PATH = "/console/password-reset"
AUDIT_VALUE_KEYS_MAX = 40


@dataclass(frozen=True, slots=True)
class Member:
    """The signed-in staff member behind a console session, as of this request."""

    staff_id: str
    session_id: str
    platform_id: str
    merchant_id: str | None
    kind: rules.StaffKind
    role: str
    email: str
    name: str
    totp_enabled: bool
    ip: str

    @property
    def permissions(self) -> frozenset[str]:
        return rules.permissions_of(self.kind, self.role)

    def require(self, permission: str) -> None:
        if permission not in self.permissions:
            raise Problem(CONSOLE_PERMISSION_DENIED, f"the {self.role} role does not have {permission}")

    def view(self) -> dict[str, Any]:
        return {
            "staff_id": self.staff_id,
            "kind": self.kind,
            "merchant_id": self.merchant_id,
            "role": self.role,
            "email": self.email,
            "name": self.name,
            "totp_enabled": self.totp_enabled,
            "permissions": sorted(self.permissions),
        }


def member_view(row: Any) -> dict[str, Any]:
    return {
        "staff_id": row["staff_id"],
        "kind": row["kind"],
        "merchant_id": row["merchant_id"],
        "role": row["role"],
        "email": row["email"],
        "name": row["name"],
        "status": row["status"],
        "totp_enabled": row["totp_enabled"],
        "created_at": row["created_at"],
    }


def _normalize_email(email: str) -> str:
    return email.strip().lower()


def _link_token(prefix: str) -> tuple[str, str]:
    return new_id(prefix), secrets.token_urlsafe(LINK_SECRET_BYTES)


def _audit_value(value: Any) -> Any:
    """What goes into before/after: plain JSON, no secret ever (keys named like one are dropped), bounded."""
    if not isinstance(value, dict):
        return value
    kept = {k: v for k, v in list(value.items())[:AUDIT_VALUE_KEYS_MAX] if "secret" not in k and "password" not in k}
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in kept.items()}


class StaffConsole:
    def __init__(
        self, identities: Identities, settings: Settings, *, check_web_client: Callable[[str | None], None]
    ) -> None:
        # The web process's first-party token check, shared with My Wallet's sign-in (gateway/wallet_users.py).
        self.check_web_client = check_web_client
        self.identities = identities
        self.settings = settings
        self.uow = identities.uow
        self.sealer = identities.sealer

    # ---- sessions -----------------------------------------------------------------------------------------
    async def member(self, principal: Principal, ip: str) -> Member:
        """The member of an authenticated staff principal (the gateway already checked the session)."""
        if principal.staff_id is None:
            raise Problem(CONSOLE_PERMISSION_DENIED, "only a console session (Bearer cst_…) may call this endpoint")
        async with self.uow.read() as conn:
            row = await store.get_member(conn, principal.staff_id)
        if row is None or row["status"] != "active":
            raise Problem(CONSOLE_SIGN_IN_FAILED, "this member was removed")
        return Member(
            row["staff_id"],
            principal.key_id,
            row["platform_id"],
            row["merchant_id"],
            row["kind"],
            row["role"],
            row["email"],
            row["name"],
            row["totp_enabled"],
            ip,
        )

    async def sign_in(self, *, email: str, password: str, ip: str) -> dict[str, Any]:
        """Password first; a member with TOTP gets a short one-time ticket to send with the code, everyone else a
        session. Unknown e-mail and wrong password answer the same, in the same time (a dummy hash is verified)."""
        email = _normalize_email(email)
        async with self.uow.read() as conn:
            row = await store.get_member_by_email(conn, email)
        usable = row is not None and row["status"] == "active" and row["password_hash"] is not None
        self._refuse_locked(row)
        stored_hash = row["password_hash"] if row is not None and usable else None
        matches = await asyncio.to_thread(rules.password_matches, password, stored_hash)
        if not (usable and matches):
            if row is not None and usable:
                await self._count_failure(row["staff_id"])
            raise Problem(CONSOLE_SIGN_IN_FAILED, "wrong e-mail or password")
        assert row is not None
        if row["totp_enabled"] or row["kind"] == "operator":
            link_id, secret = _link_token("ctt")
            async with self.uow.begin() as tx:
                await store.insert_link(
                    tx.conn,
                    link_id=link_id,
                    purpose="totp_ticket",
                    secret_hash=hash_secret(secret),
                    staff_id=row["staff_id"],
                    expires_at=datetime.now(UTC) + timedelta(seconds=TOTP_TICKET_SECONDS),
                )
            raise Problem(
                CONSOLE_TOTP_REQUIRED,
                "send the authenticator code with this ticket",
                ticket=f"{link_id}.{secret}",
                totp_enrolled=bool(row["totp_enabled"]),
            )
        return await self._open_session(row, ip, action="sign_in")

    async def sign_in_second_factor(self, *, ticket: str, code: str, ip: str) -> dict[str, Any]:
        """The ticket of a right password plus a TOTP code (or an unused recovery code): a session. A wrong code
        counts towards the lockout like a wrong password; the ticket works once."""
        link_id, _, secret = ticket.partition(".")
        async with self.uow.begin() as tx:
            link = await store.get_link(tx.conn, link_id, "totp_ticket")
            if link is None or not secret_matches(secret, link["secret_hash"]):
                raise Problem(CONSOLE_LINK_INVALID, "sign in again")
            row = await store.get_member(tx.conn, link["staff_id"], lock=True)
            if row is None or row["status"] != "active":
                raise Problem(CONSOLE_LINK_INVALID, "sign in again")
            self._refuse_locked(row)
            if row["totp_enabled"]:
                totp_secret = self.sealer.open(row["totp_secret_sealed"], row_id=row["staff_id"])
                step = rules.totp_step(totp_secret, code, last_step=row["totp_last_step"])
                if step is not None:
                    await store.update_member(tx.conn, row["staff_id"], totp_last_step=step)
                ok = step is not None or await store.use_recovery_code(
                    tx.conn, row["staff_id"], rules.recovery_code_hash(code)
                )
            else:
                ok = False  # an operator who never enrolled: only a password reset (with enrolment) lets them in
            if ok:
                await store.use_link(tx.conn, link_id)
        if not ok:
            await self._count_failure(row["staff_id"])
            raise Problem(CONSOLE_SIGN_IN_FAILED, "wrong code")
        return await self._open_session(row, ip, action="sign_in")

    def _refuse_locked(self, row: Any) -> None:
        if row is not None and row["locked_until"] is not None and row["locked_until"] > datetime.now(UTC):
            raise Problem(
                CONSOLE_ACCOUNT_LOCKED, "too many failed sign-ins", locked_until=row["locked_until"].isoformat()
            )

    async def _count_failure(self, staff_id: str) -> None:
        """Counted under the row lock: concurrent wrong tries never exceed the limit; the fifth locks."""
        async with self.uow.begin() as tx:
            row = await store.get_member(tx.conn, staff_id, lock=True)
            if row is None:
                return
            state = rules.SignInState(row["failed_count"], row["locked_until"]).after_failure(
                datetime.now(UTC), self.settings.staff_lockout_seconds
            )
            await store.update_member(
                tx.conn, staff_id, failed_count=state.failed_count, locked_until=state.locked_until
            )
            if state.locked_until is not None:
                await self._audit(
                    tx.conn, row, None, "staff.locked", row["staff_id"], None, {"locked_until": state.locked_until}
                )
        if state.locked_until is not None:
            raise Problem(
                CONSOLE_ACCOUNT_LOCKED, "too many failed sign-ins", locked_until=state.locked_until.isoformat()
            )

    async def _open_session(self, row: Any, ip: str, *, action: str) -> dict[str, Any]:
        session_id, secret = _link_token(STAFF_SESSION_PREFIX)
        now = datetime.now(UTC)
        expires_at = now + timedelta(seconds=self.settings.staff_session_absolute_seconds)
        async with self.uow.begin() as tx:
            await store.insert_session(
                tx.conn,
                session_id=session_id,
                secret_hash=hash_secret(secret),
                staff_id=row["staff_id"],
                ip=ip,
                idle_expires_at=min(expires_at, now + timedelta(seconds=self.settings.staff_session_idle_seconds)),
                expires_at=expires_at,
            )
            await store.update_member(tx.conn, row["staff_id"], failed_count=0, locked_until=None)
            await self._audit(tx.conn, row, ip, f"staff.{action}", row["staff_id"], None, {"session_id": session_id})
        view = member_view(row)
        view["permissions"] = sorted(rules.permissions_of(row["kind"], row["role"]))
        return {
            "token": f"{session_id}.{secret}",
            "expires_at": expires_at,
            "idle_seconds": self.settings.staff_session_idle_seconds,
            "member": view,
        }

    async def sign_out(self, member: Member, *, everywhere: bool) -> int:
        async with self.uow.begin() as tx:
            ended = await store.revoke_sessions(
                tx.conn, member.staff_id, session_id=None if everywhere else member.session_id
            )
            action = "staff.sign_out_everywhere" if everywhere else "staff.sign_out"
            await self._audit_member(tx.conn, member, action, member.staff_id, None, {"sessions_ended": ended})
        return ended

    # ---- TOTP enrolment (optional for merchant staff; operators enrol when they accept or reset) -------------
    async def begin_totp(self, member: Member) -> dict[str, Any]:
        """A fresh secret, kept sealed but not yet in force: the next code confirms it (`confirm_totp`)."""
        secret = rules.new_totp_secret()
        async with self.uow.begin() as tx:
            sealed = self.sealer.seal(secret, row_id=member.staff_id)
            await store.update_member(
                tx.conn, member.staff_id, totp_secret_sealed=sealed, totp_enabled=False, totp_last_step=None
            )
            await self._audit_member(tx.conn, member, "staff.totp_enrolment_started", member.staff_id, None, None)
        return {"secret": secret, "otpauth_uri": rules.totp_uri(secret, member.email)}

    async def confirm_totp(self, member: Member, code: str) -> dict[str, Any]:
        async with self.uow.begin() as tx:
            row = await store.get_member(tx.conn, member.staff_id, lock=True)
            assert row is not None
            codes = await self._enable_totp(tx.conn, row, code)
            await self._audit_member(
                tx.conn,
                member,
                "staff.totp_enabled",
                member.staff_id,
                {"totp_enabled": row["totp_enabled"]},
                {"totp_enabled": True},
            )
        return {"recovery_codes": codes}

    async def _enable_totp(self, conn: AsyncConnection, row: Any, code: str) -> list[str]:
        if row["totp_secret_sealed"] is None:
            raise Problem(CONSOLE_TOTP_INVALID, "start the enrolment first")
        secret = self.sealer.open(row["totp_secret_sealed"], row_id=row["staff_id"])
        step = rules.totp_step(secret, code, last_step=None)
        if step is None:
            raise Problem(CONSOLE_TOTP_INVALID, "the code does not match this secret")
        codes = rules.new_recovery_codes()
        await store.update_member(conn, row["staff_id"], totp_enabled=True, totp_last_step=step)
        await store.replace_recovery_codes(conn, row["staff_id"], [rules.recovery_code_hash(c) for c in codes])
        return codes

    # ---- invitations and password resets ----------------------------------------------------------------------
    async def invite(self, member: Member, *, email: str, role: str, name: str) -> dict[str, Any]:
        """A new member of the inviter's own merchant (or, for an operator, of the platform), with a one-time link."""
        member.require("staff.manage" if member.kind == "merchant" else "platform.staff.manage")
        if not rules.may_assign(member.kind, member.role, role):
            raise Problem(STAFF_ROLE_INVALID, f"you may not give the role {role}")
        staff_id = new_id("stf")
        email = _normalize_email(email)
        async with self.uow.begin() as tx:
            created = await store.insert_member(
                tx.conn,
                staff_id=staff_id,
                platform_id=member.platform_id,
                merchant_id=member.merchant_id,
                kind=member.kind,
                email=email,
                name=name.strip(),
                role=role,
                status="invited",
                totp_secret_sealed=self.sealer.seal(rules.new_totp_secret(), row_id=staff_id),
                invited_by=member.staff_id,
            )
            if not created:
                raise Problem(STAFF_EXISTS, "someone with this e-mail is already a staff member")
            url = await self._link(
                tx.conn, staff_id, "invitation", self.settings.staff_invitation_seconds, INVITATION_PATH
            )
            after = {"email": email, "role": role, "status": "invited"}
            await self._audit_member(tx.conn, member, "staff.invited", staff_id, None, after)
        return {"staff_id": staff_id, "email": email, "role": role, "url": url}

    async def create_by_platform(
        self, platform: Principal, *, kind: rules.StaffKind, merchant_id: str | None, email: str, role: str, name: str
    ) -> dict[str, Any]:
        """The platform's admin key creates a merchant's first owner or the first operators: an invited member and
        their one-time link (from then on, owners and admins invite from the console)."""
        if role not in rules.roles_of(kind) or (kind == "merchant") != (merchant_id is not None):
            raise Problem(STAFF_ROLE_INVALID, f"no {kind} role {role}, or merchant_id given for the wrong kind")
        staff_id = new_id("stf")
        email = _normalize_email(email)
        async with self.uow.begin() as tx:
            if merchant_id is not None and (
                await identity_store.get_merchant(tx.conn, merchant_id, platform_id=platform.platform_id) is None
            ):
                raise Problem(MERCHANT_NOT_FOUND, f"merchant {merchant_id} does not exist")
            created = await store.insert_member(
                tx.conn,
                staff_id=staff_id,
                platform_id=platform.platform_id,
                merchant_id=merchant_id,
                kind=kind,
                email=email,
                name=name.strip(),
                role=role,
                status="invited",
                totp_secret_sealed=self.sealer.seal(rules.new_totp_secret(), row_id=staff_id),
            )
            if not created:
                raise Problem(STAFF_EXISTS, "someone with this e-mail is already a staff member")
            url = await self._link(
                tx.conn, staff_id, "invitation", self.settings.staff_invitation_seconds, INVITATION_PATH
            )
            actor = {
                "platform_id": platform.platform_id,
                "merchant_id": merchant_id,
                "staff_id": None,
                "email": "platform-admin-key",
            }
            await self._audit(tx.conn, actor, "", "staff.invited", staff_id, None, {"email": email, "role": role})
        return {"staff_id": staff_id, "email": email, "role": role, "url": url}

    async def _link(self, conn: AsyncConnection, staff_id: str, purpose: str, seconds: int, path: str) -> str:
        link_id, secret = _link_token("csl")
        expires_at = datetime.now(UTC) + timedelta(seconds=seconds)
        await store.insert_link(
            conn,
            link_id=link_id,
            purpose=purpose,
            secret_hash=hash_secret(secret),
            staff_id=staff_id,
            expires_at=expires_at,
        )
        return f"{self.settings.public_base_url.rstrip('/')}{path}?token={link_id}.{secret}"

    async def link_details(self, token: str, purpose: str) -> dict[str, Any]:
        """What the invitation / reset page shows: who it is for and, when a TOTP is to be set up, its secret."""
        async with self.uow.read() as conn:
            _link, row = await self._open_link(conn, token, purpose)
        secret = (
            self.sealer.open(row["totp_secret_sealed"], row_id=row["staff_id"]) if row["totp_secret_sealed"] else None
        )
        needs_totp = row["kind"] == "operator" and not row["totp_enabled"]
        return {
            "email": row["email"],
            "kind": row["kind"],
            "role": row["role"],
            "totp_required": needs_totp,
            "otpauth_uri": rules.totp_uri(secret, row["email"]) if needs_totp and secret else None,
            "totp_secret": secret if needs_totp else None,
        }

    async def _open_link(self, conn: AsyncConnection, token: str, purpose: str) -> tuple[Any, Any]:
        link_id, _, secret = token.partition(".")
        link = await store.get_link(conn, link_id, purpose)
        if link is None or not secret_matches(secret, link["secret_hash"]):
            raise Problem(CONSOLE_LINK_INVALID, "this link is unknown, expired or already used")
        row = await store.get_member(conn, link["staff_id"])
        if row is None or row["status"] == "removed":
            raise Problem(CONSOLE_LINK_INVALID, "this link is unknown, expired or already used")
        return link, row

    async def set_password_by_link(
        self, *, token: str, purpose: str, password: str, name: str | None, totp_code: str | None, ip: str
    ) -> dict[str, Any]:
        """Accept an invitation or use a reset link: the new password (and, for an operator without one, a
        confirmed TOTP), once; every session of the member ends; a session opens for the page."""
        password_hash = None
        async with self.uow.begin() as tx:
            link, row = await self._open_link(tx.conn, token, purpose)
            if (reason := rules.password_problem(password, row["email"])) is not None:
                raise Problem(CONSOLE_PASSWORD_REJECTED, f"password refused: {reason}", reason=reason)
            codes = None
            if row["kind"] == "operator" and not row["totp_enabled"]:
                codes = await self._enable_totp(tx.conn, row, totp_code or "")
            password_hash = await asyncio.to_thread(rules.hash_password, password)
            if not await store.use_link(tx.conn, link["link_id"]):
                raise Problem(CONSOLE_LINK_INVALID, "this link was already used")
            values: dict[str, Any] = {
                "password_hash": password_hash,
                "status": "active",
                "failed_count": 0,
                "locked_until": None,
            }
            if name and purpose == "invitation":
                values["name"] = name.strip()[:200]
            await store.update_member(tx.conn, row["staff_id"], **values)
            await store.revoke_sessions(tx.conn, row["staff_id"])
            action = "staff.invitation_accepted" if purpose == "invitation" else "staff.password_reset"
            await self._audit(
                tx.conn, row, ip, action, row["staff_id"], {"status": row["status"]}, {"status": "active"}
            )
            fresh = await store.get_member(tx.conn, row["staff_id"])
        assert fresh is not None
        # A member whose TOTP was already in force signs in with it next; one who just enrolled is in.
        session = (
            None if fresh["totp_enabled"] and codes is None else await self._open_session(fresh, ip, action="sign_in")
        )
        return {"session": session, "recovery_codes": codes}

    async def password_reset_link(self, platform_id: str, staff_id: str, *, actor: Member | None) -> dict[str, Any]:
        """An operator (or the platform's admin key) issues a one-time reset link; the member's sessions end now."""
        if actor is not None:
            actor.require("platform.staff.manage")
        async with self.uow.begin() as tx:
            row = await store.get_member(tx.conn, staff_id, lock=True)
            if row is None or row["platform_id"] != platform_id or row["status"] == "removed":
                raise Problem(STAFF_NOT_FOUND, f"no staff member {staff_id}")
            url = await self._link(
                tx.conn, staff_id, "password_reset", self.settings.staff_password_reset_seconds, PASSWORD_RESET_PATH
            )
            await store.revoke_sessions(tx.conn, staff_id)
            actor_row = {
                "platform_id": platform_id,
                "merchant_id": row["merchant_id"],
                "staff_id": actor.staff_id if actor else None,
                "email": actor.email if actor else "platform-admin-key",
            }
            await self._audit(
                tx.conn, actor_row, actor.ip if actor else "", "staff.password_reset_issued", staff_id, None, None
            )
        return {"staff_id": staff_id, "url": url}

    # ---- staff and roles ---------------------------------------------------------------------------------------
    async def list_staff(self, member: Member) -> list[dict[str, Any]]:
        member.require("staff.read" if member.kind == "merchant" else "platform.staff.manage")
        async with self.uow.read() as conn:
            rows = await store.list_members(conn, merchant_id=member.merchant_id, platform_id=member.platform_id)
        return [member_view(r) for r in rows]

    async def _target(self, conn: AsyncConnection, member: Member, staff_id: str) -> Any:
        """A member of the actor's own merchant (or platform): anyone else's id is simply not found."""
        row = await store.get_member(conn, staff_id, lock=True)
        if (
            row is None
            or row["merchant_id"] != member.merchant_id
            or row["platform_id"] != member.platform_id
            or row["kind"] != member.kind
        ):
            raise Problem(STAFF_NOT_FOUND, f"no staff member {staff_id}")
        return row

    async def change_role(self, member: Member, staff_id: str, role: str) -> dict[str, Any]:
        member.require("staff.manage" if member.kind == "merchant" else "platform.staff.manage")
        top = "owner" if member.kind == "merchant" else "super_admin"
        async with self.uow.begin() as tx:
            row = await self._target(tx.conn, member, staff_id)
            if (
                staff_id == member.staff_id
                or not rules.may_assign(member.kind, member.role, role)
                or not rules.permissions_of(member.kind, row["role"]) <= member.permissions
            ):
                raise Problem(STAFF_ROLE_INVALID, "you may not give this role to this member")
            if row["role"] == top and role != top:
                await self._keep_an_owner(tx.conn, row)
            await store.update_member(tx.conn, staff_id, role=role)
            await self._audit_member(
                tx.conn, member, "staff.role_changed", staff_id, {"role": row["role"]}, {"role": role}
            )
            fresh = await store.get_member(tx.conn, staff_id)
        return member_view(fresh)

    async def remove(self, member: Member, staff_id: str) -> dict[str, Any]:
        member.require("staff.manage" if member.kind == "merchant" else "platform.staff.manage")
        top = "owner" if member.kind == "merchant" else "super_admin"
        async with self.uow.begin() as tx:
            row = await self._target(tx.conn, member, staff_id)
            if staff_id == member.staff_id or not rules.permissions_of(member.kind, row["role"]) <= member.permissions:
                raise Problem(STAFF_ROLE_INVALID, "you may not remove this member")
            if row["role"] == top:
                await self._keep_an_owner(tx.conn, row)
            await store.update_member(tx.conn, staff_id, status="removed")
            await store.revoke_sessions(tx.conn, staff_id)
            await self._audit_member(
                tx.conn, member, "staff.removed", staff_id, {"status": row["status"]}, {"status": "removed"}
            )
            fresh = await store.get_member(tx.conn, staff_id)
        return member_view(fresh)

    async def _keep_an_owner(self, conn: AsyncConnection, row: Any) -> None:
        if (
            row["merchant_id"] is not None
            and await store.count_active_with_role(conn, merchant_id=row["merchant_id"], role="owner") <= 1
        ):
            raise Problem(STAFF_LAST_OWNER, "the last owner cannot be removed or demoted")

    # ---- audit log -------------------------------------------------------------------------------------------
    async def _audit(
        self, conn: AsyncConnection, actor: Any, ip: str | None, action: str, target: str, before: Any, after: Any
    ) -> None:
        await store.insert_audit(
            conn,
            audit_id=new_id("aud"),
            platform_id=actor["platform_id"],
            merchant_id=actor["merchant_id"],
            actor_staff_id=actor["staff_id"],
            actor_email=actor["email"],
            action=action,
            target=target,
            before=_audit_value(before),
            after=_audit_value(after),
            ip=ip or "",
        )

    async def _audit_member(
        self, conn: AsyncConnection, member: Member, action: str, target: str, before: Any, after: Any
    ) -> None:
        actor = {
            "platform_id": member.platform_id,
            "merchant_id": member.merchant_id,
            "staff_id": member.staff_id,
            "email": member.email,
        }
        await self._audit(conn, actor, member.ip, action, target, before, after)

    async def record(self, member: Member, *, action: str, target: str, before: Any, after: Any) -> None:
        """An entry for a write the web process made through the public API on the member's behalf (a refund, a
        payout): the actor, merchant and address come from the session, never from the request body."""
        async with self.uow.begin() as tx:
            await self._audit_member(tx.conn, member, action, target, before, after)

    async def audit_page(
        self, member: Member, *, before_id: str | None, limit: int, merchant_id: str | None
    ) -> dict[str, Any]:
        if member.kind == "merchant":
            member.require("audit.read")
            scope, everything = member.merchant_id, False
        else:
            member.require("platform.audit.read")
            scope, everything = merchant_id, merchant_id is None
        async with self.uow.read() as conn:
            rows = await store.list_audit(
                conn, merchant_id=scope, all_merchants=everything, before_id=before_id, limit=limit + 1
            )
        items = [dict(r) for r in rows[:limit]]
        return {
            "data": items,
            "has_more": len(rows) > limit,
            "next_cursor": items[-1]["audit_id"] if len(rows) > limit else None,
        }

    # ---- API keys from the console ------------------------------------------------------------------------------
    def _platform(self, member: Member) -> Principal:
        return Principal("platform", f"staff:{member.staff_id}", member.platform_id)

    async def api_keys(self, member: Member) -> list[dict[str, Any]]:
        member.require("api_keys.read")
        assert member.merchant_id is not None
        keys: list[dict[str, Any]] = (await self.identities.merchant(self._platform(member), member.merchant_id))[
            "keys"
        ]
        return keys

    async def _own_key(self, member: Member, key_id: str) -> None:
        async with self.uow.read() as conn:
            row = await identity_store.get_api_key(conn, key_id)
        if row is None or row["owner_kind"] != "merchant" or row["owner_id"] != member.merchant_id:
            raise Problem(API_KEY_NOT_FOUND, f"key {key_id} does not exist")

    async def create_api_key(self, member: Member) -> dict[str, Any]:
        member.require("api_keys.manage")
        assert member.merchant_id is not None
        key = await self.identities.create_merchant_key(
            self._platform(member), member.merchant_id, rsa_public_key_pem=None
        )
        await self.record(
            member, action="api_key.created", target=key["key_id"], before=None, after={"key_id": key["key_id"]}
        )
        return key

    async def rotate_api_key(self, member: Member, key_id: str, overlap_seconds: int) -> dict[str, Any]:
        member.require("api_keys.manage")
        await self._own_key(member, key_id)
        rotated = await self.identities.rotate_key(
            self._platform(member), key_id, overlap_seconds=overlap_seconds, rsa_public_key_pem=None
        )
        after = {"new_key_id": rotated["new_key"]["key_id"], "old_key_expires_at": rotated["old_key"]["expires_at"]}
        await self.record(member, action="api_key.rotated", target=key_id, before={"status": "active"}, after=after)
        return rotated

    async def revoke_api_key(self, member: Member, key_id: str) -> dict[str, Any]:
        member.require("api_keys.manage")
        await self._own_key(member, key_id)
        revoked = await self.identities.revoke_key(self._platform(member), key_id)
        await self.record(
            member,
            action="api_key.revoked",
            target=key_id,
            before={"status": "active"},
            after={"status": revoked["status"]},
        )
        return revoked

    # ---- maker-checker refunds ----------------------------------------------------------------------------------
    async def settings_of(self, member: Member) -> dict[str, Any]:
        member.require("dashboard.read")
        assert member.merchant_id is not None
        async with self.uow.read() as conn:
            threshold = await store.refund_threshold(conn, member.merchant_id)
        return {
            "refund_approval_threshold_minor": self.settings.staff_refund_approval_threshold_minor
            if threshold is None
            else threshold
        }

    async def set_refund_threshold(self, member: Member, threshold_minor: int) -> dict[str, Any]:
        member.require("settings.manage")
        assert member.merchant_id is not None
        before = await self.settings_of(member)
        async with self.uow.begin() as tx:
            await store.set_refund_threshold(tx.conn, member.merchant_id, threshold_minor)
            after = {"refund_approval_threshold_minor": threshold_minor}
            await self._audit_member(
                tx.conn, member, "settings.refund_threshold_changed", member.merchant_id, before, after
            )
        return after

    async def request_refund(
        self, member: Member, *, payment_id: str, amount_minor: int, currency: str, reason: str
    ) -> dict[str, Any]:
        """Below the merchant's threshold the request is approved at once (the web process then refunds); at or
        above it, it waits for another member with `refunds.approve`."""
        member.require("refunds.create")
        assert member.merchant_id is not None
        threshold = (await self.settings_of(member))["refund_approval_threshold_minor"]
        approved = amount_minor < threshold
        async with self.uow.begin() as tx:
            row = await store.insert_refund_request(
                tx.conn,
                request_id=new_id("crq"),
                merchant_id=member.merchant_id,
                payment_id=payment_id,
                amount_minor=amount_minor,
                currency=currency,
                reason=reason[:500],
                status="approved" if approved else "pending",
                requested_by=member.staff_id,
                requested_by_email=member.email,
                decided_by=member.staff_id if approved else None,
            )
            await self._audit_member(tx.conn, member, "refund.requested", row["request_id"], None, dict(row))
        return dict(row)

    async def decide_refund(self, member: Member, request_id: str, *, approve: bool) -> dict[str, Any]:
        member.require("refunds.approve")
        assert member.merchant_id is not None
        async with self.uow.begin() as tx:
            row = await store.get_refund_request(tx.conn, request_id, member.merchant_id)
            if row is None:
                raise Problem(REFUND_REQUEST_NOT_FOUND, f"no refund request {request_id}")
            if row["requested_by"] == member.staff_id:
                raise Problem(REFUND_SELF_APPROVAL, "another member must approve your own refund request")
            decided = await store.decide_refund_request(
                tx.conn,
                request_id,
                member.merchant_id,
                old="pending",
                new="approved" if approve else "rejected",
                decided_by=member.staff_id,
                decided_at=datetime.now(UTC),
            )
            if decided is None:
                raise Problem(REFUND_REQUEST_STATE, f"refund request {request_id} is {row['status']}")
            action = "refund.approved" if approve else "refund.rejected"
            await self._audit_member(
                tx.conn, member, action, request_id, {"status": "pending"}, {"status": decided["status"]}
            )
        return dict(decided)

    async def refund_executed(self, member: Member, request_id: str, refund_id: str) -> dict[str, Any]:
        """The web process made the approved refund (cashier, idempotent by the request id): record its id."""
        member.require("refunds.create")
        assert member.merchant_id is not None
        async with self.uow.begin() as tx:
            done = await store.decide_refund_request(
                tx.conn, request_id, member.merchant_id, old="approved", new="executed", refund_id=refund_id
            )
            if done is None:
                row = await store.get_refund_request(tx.conn, request_id, member.merchant_id)
                if row is None:
                    raise Problem(REFUND_REQUEST_NOT_FOUND, f"no refund request {request_id}")
                if row["status"] == "executed" and row["refund_id"] == refund_id:
                    return dict(row)
                raise Problem(REFUND_REQUEST_STATE, f"refund request {request_id} is {row['status']}")
            await self._audit_member(
                tx.conn,
                member,
                "refund.executed",
                request_id,
                {"status": "approved"},
                {"status": "executed", "refund_id": refund_id},
            )
        return dict(done)

    async def refund_request(self, member: Member, request_id: str) -> dict[str, Any]:
        member.require("payments.read")
        assert member.merchant_id is not None
        async with self.uow.read() as conn:
            row = await store.get_refund_request(conn, request_id, member.merchant_id)
        if row is None:
            raise Problem(REFUND_REQUEST_NOT_FOUND, f"no refund request {request_id}")
        return dict(row)

    async def refund_requests(
        self, member: Member, *, status: str | None, before_id: str | None, limit: int
    ) -> dict[str, Any]:
        member.require("payments.read")
        assert member.merchant_id is not None
        async with self.uow.read() as conn:
            rows = await store.list_refund_requests(
                conn, member.merchant_id, status=status, before_id=before_id, limit=limit + 1
            )
        items = [dict(r) for r in rows[:limit]]
        return {
            "data": items,
            "has_more": len(rows) > limit,
            "next_cursor": items[-1]["request_id"] if len(rows) > limit else None,
        }


async def seed_demo_owner(database_url: str, *, merchant_id: str, email: str, password: str) -> dict[str, str]:
    """The demo merchant's owner, signed in with a printed password (the launcher's demo only; idempotent: an
    existing member keeps their password). Returns what the launcher prints, or {} when the merchant is missing."""
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            merchant = await identity_store.get_merchant(conn, merchant_id)
            if merchant is None:
                return {}
            if await store.get_member_by_email(conn, _normalize_email(email)) is None:
                password_hash = await asyncio.to_thread(rules.hash_password, password)
                await store.insert_member(
                    conn,
                    staff_id=new_id("stf"),
                    platform_id=merchant["platform_id"],
                    merchant_id=merchant_id,
                    kind="merchant",
                    email=_normalize_email(email),
                    name="Demo owner",
                    role="owner",
                    status="active",
                    password_hash=password_hash,
                )
    finally:
        await engine.dispose()
    return {"console_email": email, "console_password": password}
